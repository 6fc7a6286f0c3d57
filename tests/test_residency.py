"""Residency semantics, and the shipped rules' coverage and provenance."""

from __future__ import annotations

import datetime as dt

from globalaccel.residency import Mode, ResidencyPolicy, Rule
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
        assert rule.basis and rule.source and rule.reviewed >= dt.date(2026, 1, 1)
    for code in ("DE", "FR", "NO", "GB", "CH", "RU", "CN", "IN", "SA", "AE", "QA", "ID", "VN", "TR", "NG", "KE", "BR", "JP", "KR"):
        assert code in policy.rules, f"{code} should have an explicit rule"
    assert policy.rule_for("RU").mode is Mode.STRICT and policy.rule_for("RU").centers == ()
    assert "242-FZ" in policy.rule_for("RU").source
    assert policy.rule_for("DE").centers[0] == "eu-central-1"
    assert policy.rule_for("SA").centers == ("me-central-1",)
