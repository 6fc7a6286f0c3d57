"""Residency semantics, and the shipped rules' coverage and provenance."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from globalaccel.errors import ConfigError
from globalaccel.residency import Mode, ResidencyPolicy, Role, Rule
from globalaccel.residency_file import load_residency
from globalaccel.topology import load_stack
from tests.conftest import STACKS

D = dt.date(2026, 1, 1)
ALL = ("a", "b", "c")
POLICY = ResidencyPolicy(
    {
        "ST": Rule("strict", Mode.STRICT, ("b", "a"), "x", "y", D),
        "NO": Rule("never", Mode.STRICT, (), "x", "y", D),
        "PR": Rule("pref", Mode.PREFERRED, ("c",), "x", "y", D),
    },
    Rule("default", Mode.OPEN, (), "x", "y", D),
)


def test_strict_only_listed_and_fails_closed() -> None:
    assert POLICY.eligibility("ST", ALL, ALL).centers == ("b", "a")
    assert POLICY.eligibility("ST", {"a", "c"}, ALL).centers == ("a",)
    down = POLICY.eligibility("ST", {"c"}, ALL)
    assert down.centers == () and down.fail_closed
    assert POLICY.allows("ST", "a") and not POLICY.allows("ST", "c")


def test_strict_with_no_center_is_always_closed() -> None:
    assert POLICY.eligibility("NO", ALL, ALL).fail_closed
    assert POLICY.permitted_centers("NO", ALL) == ()


def test_preferred_falls_back_only_when_listed_down() -> None:
    assert POLICY.eligibility("PR", ALL, ALL).centers == ("c",)
    fallback = POLICY.eligibility("PR", {"a", "b"}, ALL)
    assert fallback.centers == ("a", "b") and not fallback.fail_closed
    assert POLICY.allows("PR", "a")


def test_open_default() -> None:
    assert POLICY.eligibility("ZZ", {"b", "c"}, ALL).centers == ("b", "c")
    assert POLICY.eligibility("ZZ", set(), ALL).centers == ()
    assert not POLICY.eligibility("ZZ", set(), ALL).fail_closed


def test_shipped_rules_have_provenance_and_cover_the_regimes() -> None:
    topo = load_stack("prod", STACKS)
    policy = topo.residency
    for code in topo.countries:
        rule = policy.rule_for(code)
        assert rule.basis and rule.source and rule.urls and all(u.startswith("http") for u in rule.urls)
        # reviewed is the day the source was read, or None when it was not re-checked (plan lists those)
        assert rule.reviewed is None or dt.date(2026, 11, 1) <= rule.reviewed <= dt.date.today()
    for code in ("DE", "FR", "NO", "GB", "CH", "RU", "CN", "IN", "SA", "AE", "QA", "ID", "VN", "TR", "NG", "KE", "BR", "JP", "KR"):
        assert code in policy.rules, f"{code} should have an explicit rule"
    assert policy.rule_for("RU").mode is Mode.STRICT and policy.rule_for("RU").centers == ()
    assert "23-FZ" in policy.rule_for("RU").source  # Art. 18(5) as rewritten in 2025, in force 1 Jul 2025
    assert policy.rule_for("DE").centers[0] == "eu-central-1"
    assert policy.rule_for("SA").centers == ("me-central-1",) and policy.rule_for("SA").mode is Mode.PREFERRED
    for code in ("MC", "SM", "VA", "GI"):  # not on the EU adequacy list: not in the adequate-Europe rule
        assert code not in policy.groups["eu-adequate"].countries
    for code in ("UZ", "BY", "RW"):  # transfer-authorisation or localisation regimes: never the silent default
        assert code in policy.rules, code


# ---- whole-path rules, effective dates, bad input -------------------------------------------------

RULES_HEAD = """
groups:
  inner:
    countries: [AA, BB]
    source: "test group"
    url: https://example.org/group
    reviewed: 2026-11-20
default:
  mode: open
  centers: []
  terminate_in: any
  never_transit: [CC]
  basis: test
  source: test
  url: https://example.org/default
  reviewed: null
rules:
"""


def _load(tmp_path: Path, rules: str, today: dt.date = dt.date(2026, 11, 25)) -> ResidencyPolicy:
    file = tmp_path / "residency.yaml"
    file.write_text(RULES_HEAD + rules)
    return load_residency(file, {"a": "AA", "b": "BB", "c": "CC"}, ["AA", "BB", "CC", "DD"], today)


def _problems(tmp_path: Path, rules: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, rules)
    return [f"{p.line}: {p.field}: {p.message}" for p in info.value.problems]


RULE = """  - name: {name}
    countries: [{countries}]
    mode: strict
    centers: [a]
    terminate_in: [{terminate}]
    never_transit: [{never}]
    basis: test
    source: test
    url: https://example.org/r
    reviewed: {reviewed}
{extra}"""


def rule(name: str = "r", countries: str = "AA", terminate: str = "inner", never: str = "CC", reviewed: str = "2026-11-25",
         extra: str = "") -> str:
    return RULE.format(name=name, countries=countries, terminate=terminate, never=never, reviewed=reviewed, extra=extra)


def test_edges_judged_by_jurisdiction_and_role(tmp_path: Path) -> None:
    policy = _load(tmp_path, rule())
    assert policy.edge_allowed("AA", "BB", Role.TERMINATING)  # inside terminate_in
    assert not policy.edge_allowed("AA", "DD", Role.TERMINATING)  # decrypts outside terminate_in
    assert policy.edge_allowed("AA", "DD", Role.TRANSIT)  # only relays the encrypted stream: allowed
    assert not policy.edge_allowed("AA", "CC", Role.TRANSIT)  # never_transit: not even a relay
    assert "never_transit" in str(policy.edge_violation("AA", "CC", Role.TRANSIT))
    assert not policy.allows("DD", "c")  # the default forbids CC on the path: center c stands there
    assert policy.permitted_centers("DD", ["a", "b", "c"]) == ("a", "b")


def test_preferred_rule_refusing_every_healthy_center_fails_closed(tmp_path: Path) -> None:
    policy = _load(tmp_path, rule(extra="").replace("mode: strict", "mode: preferred"))
    elig = policy.eligibility("AA", {"c"}, ["a", "b", "c"])  # a, b down; c stands in CC, which the rule forbids
    assert elig.centers == () and elig.fail_closed  # a lawful refusal, not a loss of service


def test_effective_dates_apply_themselves_and_plan_lists_them(tmp_path: Path) -> None:
    text = rule("old", extra="    effective_until: 2026-12-01\n") + rule("new", terminate="any", extra="    effective_from: 2026-12-01\n")
    policy = _load(tmp_path, text)
    assert policy.rule_for("AA").name == "old"
    assert policy.on(dt.date(2026, 12, 1)).rule_for("AA").name == "new"
    assert policy.upcoming(dt.date(2026, 11, 25), ["AA", "BB"]) == [(dt.date(2026, 12, 1), "AA", "old", "new")]
    assert policy.rules_hash == policy.on(dt.date(2027, 1, 1)).rules_hash  # the hash covers every period
    assert policy.default_countries(["AA", "BB", "DD"]) == ["BB", "DD"]
    assert policy.unreviewed_rules() == ["default"]


def test_bad_rules_each_named_with_line_and_field(tmp_path: Path) -> None:
    problems = _problems(tmp_path, rule("g", terminate="nowhere-land")
                         + rule("d", countries="BB", extra="    effective_from: 2026-13-01\n")
                         + rule("f", countries="DD", reviewed="2027-01-01")
                         + rule("o", countries="AA, QQ")
                         + rule("c", countries="CC", terminate="BB"))
    text = "\n".join(problems)
    assert re.search(r"rules\[0\]\.terminate_in\[0\]: unknown jurisdiction group 'nowhere-land'; groups: inner", text), text
    assert re.search(r"rules\[1\]\.effective_from: must be a date \(YYYY-MM-DD\); got '2026-13-01'", text), text
    assert re.search(r"rules\[2\]\.reviewed: 2027-01-01 is in the future", text), text
    assert re.search(r"rules\[3\]\.countries\[1\]: unknown country code 'QQ'", text), text
    assert re.search(r"rules\[4\]\.centers\[0\]: center a is in AA, which the rule's own terminate_in/never_transit exclude", text), text
    assert all(re.match(r"\d+: ", p) for p in problems)  # every problem has its line


def test_shipped_rules_hash_and_rule_diff_on_a_real_edit(tmp_path: Path) -> None:
    """Dropping us-east-1 from the EEA rule (what annulment of the EU-US DPF would require) moves
    exactly the EEA countries' allowed centers, and the diff says so with the demand that moves."""
    from globalaccel.rules_diff import diff_rules, read_rules

    topo = load_stack("prod", STACKS)
    edited = tmp_path / "residency.yaml"
    text = (STACKS / "residency.yaml").read_text()
    start = text.index("  - name: eu-eea-gdpr")
    block_end = text.index("  - name:", start + 10)
    block = text[start:block_end].replace("centers: [eu-central-1, us-east-1]", "centers: [eu-central-1]").replace(
        "terminate_in: [EEA, eu-adequate]", "terminate_in: [EEA]")
    edited.write_text(text[:start] + block + text[block_end:])
    new, label = read_rules(str(edited), topo)
    assert new.rules_hash != topo.residency.rules_hash
    diff = diff_rules(topo, topo.residency, new, ("current", label))
    changed = {c["country"]: c for c in diff["changes"]}
    eea = topo.residency.groups["EEA"].countries
    assert {code for code, c in changed.items() if c["rule"] == ["eu-eea-gdpr", "eu-eea-gdpr"]} == eea
    assert all(changed[code]["centers_removed"] == ["us-east-1"] and changed[code]["edges_removed"] > 0 for code in eea)
    # Others appear only because shared edges' capacity moved their route: same rule, same allowed sets.
    assert all(c["centers_added"] == c["centers_removed"] == [] and c["edges_added"] == c["edges_removed"] == 0
               for code, c in changed.items() if code not in eea)
    assert changed["GP"]["demand_moving"] > 0  # Guadeloupe was served from us-east-1: it moves
    assert 0 < diff["demand_share_moving"] < 0.01


def test_rule_names_are_required_and_unique_and_a_bad_group_is_reported_once(tmp_path: Path) -> None:
    unnamed = rule("x", countries="DD").replace("  - name: x\n    countries", "  - countries")
    problems = _problems(tmp_path, rule("same") + rule("same", countries="BB") + unnamed)
    text = "\n".join(problems)
    assert re.search(r"rules\[1\]\.name: rule name 'same' already used by rules\[0\]", text), text
    assert re.search(r"rules\[2\]\.name: is required", text), text
    file = tmp_path / "residency.yaml"
    file.write_text((RULES_HEAD + rule()).replace("    reviewed: 2026-11-20\n", "    reviewed: null\n", 1))
    with pytest.raises(ConfigError) as info:
        load_residency(file, {"a": "AA", "b": "BB", "c": "CC"}, ["AA", "BB", "CC", "DD"], dt.date(2026, 11, 25))
    assert [p.field for p in info.value.problems] == ["groups.inner.reviewed"]  # not also "unknown group 'inner'" per use


def test_users_traffic_may_always_be_decrypted_at_home(tmp_path: Path) -> None:
    """Decrypting in the users' own country is no transfer: a rule's terminate_in need not list it, unless
    the country is itself on the never-transit list."""
    policy = _load(tmp_path, rule(countries="AA, DD", terminate="BB").replace("centers: [a]", "centers: [b]"))
    assert policy.edge_allowed("DD", "DD", Role.TERMINATING) and not policy.edge_allowed("AA", "DD", Role.TERMINATING)
    closed = _load(tmp_path, rule(countries="CC", terminate="BB").replace("centers: [a]", "centers: []"))
    assert not closed.edge_allowed("CC", "CC", Role.TERMINATING)  # CC is in the rule's never_transit
