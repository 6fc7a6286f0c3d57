"""Load `residency.yaml`: jurisdiction groups, rules with their periods, and the default.

Every problem is reported with file, line and field, all at once; nothing is half-loaded.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from globalaccel.errors import ProblemCollector
from globalaccel.residency import ANY, Group, Mode, ResidencyPolicy, Rule
from globalaccel.sourcefile import Located, load_yaml

_REQUIRED = ("mode", "centers", "terminate_in", "never_transit", "basis", "source", "url", "reviewed")
_OPTIONAL = ("effective_from", "effective_until")
_GROUP_NAME = re.compile(r"^[a-z][a-z0-9-]{2,40}$|^[A-Z]{3,8}$")  # 'eu-adequate', 'EEA': never a 2-letter code


class _Reader:
    """State shared while reading one file: where problems go and what names are known."""

    def __init__(self, file: Path, centers: Mapping[str, str], countries: set[str], today: dt.date) -> None:
        self.file, self.centers, self.countries, self.today = file, centers, countries, today
        self.problems = ProblemCollector()
        self.groups: dict[str, Group] = {}
        self.broken_groups: set[str] = set()  # declared but invalid: their own problems are reported once

    def add(self, node: Located | None, fld: str, message: str, line: int | None = None) -> None:
        self.problems.add(self.file, node.line if node is not None else line, fld, message)

    def text(self, node: Located, fld: str) -> str | None:
        if not isinstance(node.value, str) or not node.value.strip():
            self.add(node, fld, "must be non-empty text")
            return None
        return " ".join(node.value.split())

    def urls(self, node: Located, fld: str) -> tuple[str, ...] | None:
        """One link or a list of links to the sources as read."""
        items = node.value if isinstance(node.value, list) else [node]
        out: list[str] = []
        for i, item in enumerate(items):
            where = f"{fld}[{i}]" if isinstance(node.value, list) else fld
            text = item.value.strip() if isinstance(item.value, str) else None
            if text is None or not re.match(r"^https?://[^\s/]+\.[^\s]+$", text):
                self.add(item, where, f"must be a link (https://...) to the source as read; got {item.value!r}")
                return None
            out.append(text)
        if not out:
            self.add(node, fld, "must give at least one link")
            return None
        return tuple(out)

    def date(self, node: Located, fld: str, *, past: bool = False) -> dt.date | None:
        value = node.value
        if past and value is None:
            return None  # `reviewed: null`: not re-checked; the caller records that, plan and audit list it
        if isinstance(value, dt.datetime) or not isinstance(value, dt.date):
            self.add(node, fld, f"must be a date (YYYY-MM-DD); got {value!r}")
            return None
        if past and value > self.today:
            self.add(node, fld, f"{value} is in the future: a review date is the day the source was actually read")
            return None
        return value

    def country(self, node: Located, fld: str) -> str | None:
        code = node.value
        if isinstance(code, bool):
            # YAML 1.1 reads NO (Norway) and a few others as booleans.
            self.add(node, fld, f"read as boolean {code!r}; quote country codes such as \"NO\"")
        elif not isinstance(code, str) or code not in self.countries:
            self.add(node, fld, f"unknown country code {code!r}")
        else:
            return code
        return None

    def jurisdictions(self, node: Located, fld: str, *, allow_any: bool) -> tuple[frozenset[str] | None, tuple[str, ...]] | None:
        """A list of group names and ISO codes -> the set of codes (None = any) and the names as written."""
        if allow_any and node.value == ANY:
            return None, (ANY,)
        if not isinstance(node.value, list):
            self.add(node, fld, "must be a list of jurisdiction group names or ISO country codes" + (f", or '{ANY}'" if allow_any else ""))
            return None
        names: list[str] = []
        codes: set[str] = set()
        ok = True
        for i, item in enumerate(node.value):
            name = item.value
            if allow_any and name == ANY:
                if len(node.value) != 1:
                    self.add(item, f"{fld}[{i}]", f"'{ANY}' stands alone")
                    ok = False
                names.append(ANY)
            elif isinstance(name, str) and name in self.groups:
                codes |= self.groups[name].countries
                names.append(name)
            elif isinstance(name, str) and name in self.broken_groups:
                ok = False  # the group's own problems are reported where it is declared
            elif isinstance(name, str) and re.fullmatch(r"[A-Z]{2}", name):
                if self.country(item, f"{fld}[{i}]") is None:
                    ok = False
                else:
                    codes.add(name)
                    names.append(name)
            elif isinstance(name, bool):
                self.country(item, f"{fld}[{i}]")
                ok = False
            else:
                known = ", ".join(sorted(self.groups)) or "none"
                self.add(item, f"{fld}[{i}]", f"unknown jurisdiction group {name!r}; groups: {known}"
                         + (f"; or '{ANY}'" if allow_any else ""))
                ok = False
        if not ok:
            return None
        return (None if ANY in names else frozenset(codes)), tuple(names)


def _read_groups(node: Located | None, r: _Reader) -> None:
    if node is None:
        return
    if not isinstance(node.value, dict):
        r.add(node, "groups", "must map group names to {countries, source, url, reviewed}")
        return
    for name, body in node.value.items():
        path = f"groups.{name}"
        r.broken_groups.add(name)  # until it validates
        if not _GROUP_NAME.match(name) or name == ANY:
            r.add(body, path, "a group name is 3-8 capitals (EEA) or lowercase words with '-' (eu-adequate), never a country code")
            continue
        if not isinstance(body.value, dict):
            r.add(body, path, "must be a mapping with countries, source, url, reviewed")
            continue
        for key in sorted(set(body.value) - {"countries", "source", "url", "reviewed"}):
            r.add(body.value[key], f"{path}.{key}", "unknown field")
        missing = [k for k in ("countries", "source", "url", "reviewed") if body.get(k) is None]
        for key in missing:
            r.add(body, f"{path}.{key}", "is required")
        if missing:
            continue
        codes_node = body.value["countries"]
        if not isinstance(codes_node.value, list) or not codes_node.value:
            r.add(codes_node, f"{path}.countries", "must be a non-empty list of ISO 3166-1 alpha-2 codes")
            continue
        codes = [r.country(c, f"{path}.countries[{i}]") for i, c in enumerate(codes_node.value)]
        source = r.text(body.value["source"], f"{path}.source")
        urls = r.urls(body.value["url"], f"{path}.url")
        reviewed_node = body.value["reviewed"]
        reviewed = r.date(reviewed_node, f"{path}.reviewed", past=True)
        if reviewed_node.value is None:
            r.add(reviewed_node, f"{path}.reviewed", "a group is data the rules rely on: give the day its source was read")
        if None in codes or source is None or urls is None or reviewed is None:
            continue
        r.groups[name] = Group(name, frozenset(c for c in codes if c), source, urls, reviewed)
        r.broken_groups.discard(name)


def _read_rule(node: Located, name: str, path: str, r: _Reader) -> Rule | None:
    if not isinstance(node.value, dict):
        r.add(node, path, "must be a mapping")
        return None
    ok = True
    for key in _REQUIRED:
        if node.get(key) is None:
            r.add(node, f"{path}.{key}", "is required")
            ok = False
    for key in sorted(set(node.value) - set(_REQUIRED) - set(_OPTIONAL) - {"countries", "name"}):
        r.add(node.value[key], f"{path}.{key}", "unknown field")
        ok = False
    if not ok:
        return None
    v = node.value
    try:
        mode: Mode | None = Mode(v["mode"].value)
    except ValueError:
        r.add(v["mode"], f"{path}.mode", f"must be one of strict, preferred, open; got {v['mode'].value!r}")
        mode = None
    centers = _read_centers(v["centers"], f"{path}.centers", r)
    terminate = r.jurisdictions(v["terminate_in"], f"{path}.terminate_in", allow_any=True)
    never = r.jurisdictions(v["never_transit"], f"{path}.never_transit", allow_any=False)
    basis, source = r.text(v["basis"], f"{path}.basis"), r.text(v["source"], f"{path}.source")
    urls = r.urls(v["url"], f"{path}.url")
    reviewed = r.date(v["reviewed"], f"{path}.reviewed", past=True)
    reviewed_ok = reviewed is not None or v["reviewed"].value is None
    start = r.date(v["effective_from"], f"{path}.effective_from") if "effective_from" in v else None
    end = r.date(v["effective_until"], f"{path}.effective_until") if "effective_until" in v else None
    if start is not None and end is not None and end <= start:
        r.add(v["effective_until"], f"{path}.effective_until", f"{end} is not after effective_from {start}")
        return None
    if (mode is None or centers is None or terminate is None or never is None or None in (basis, source, urls) or not reviewed_ok
            or ("effective_from" in v and start is None) or ("effective_until" in v and end is None)):
        return None
    if mode is Mode.PREFERRED and not centers:
        r.add(v["centers"], f"{path}.centers", "a preferred rule needs at least one center")
        return None
    rule = Rule(name, mode, centers, basis, source, reviewed, terminate[0], never[0], urls, start, end,  # type: ignore[arg-type]
                terminate[1], never[1])
    countries_node = v.get("countries")
    homes = [c.value for c in countries_node.value if isinstance(c.value, str)] \
        if countries_node is not None and isinstance(countries_node.value, list) else [None]
    for i, center in enumerate(centers):
        where = r.centers[center]
        refused = [h or "any country" for h in homes if not rule.may_terminate_in(where, h)]
        if refused:
            r.add(v["centers"].value[i], f"{path}.centers[{i}]", f"center {center} is in {where}, which the rule's own "
                  f"terminate_in/never_transit exclude for {', '.join(refused[:5])}")
            ok = False
    return rule if ok else None


def _read_centers(node: Located, fld: str, r: _Reader) -> tuple[str, ...] | None:
    if not isinstance(node.value, list):
        r.add(node, fld, "must be a list of center ids")
        return None
    centers: list[str] = []
    ok = True
    for i, item in enumerate(node.value):
        if not isinstance(item.value, str) or item.value not in r.centers:
            r.add(item, f"{fld}[{i}]", f"unknown center {item.value!r}; known: {', '.join(sorted(r.centers))}")
            ok = False
        elif item.value in centers:
            r.add(item, f"{fld}[{i}]", f"center {item.value!r} listed twice")
            ok = False
        else:
            centers.append(item.value)
    return tuple(centers) if ok else None


def _overlap(a: Rule, b: Rule) -> bool:
    a_end, b_end = a.effective_until or dt.date.max, b.effective_until or dt.date.max
    a_start, b_start = a.effective_from or dt.date.min, b.effective_from or dt.date.min
    return a_start < b_end and b_start < a_end


def load_residency(file: Path, centers: Mapping[str, str] | Iterable[str], country_codes: Iterable[str],
                   today: dt.date | None = None) -> ResidencyPolicy:
    """Load and validate `residency.yaml`, resolved for `today` (UTC date by default).

    `centers` maps center id -> jurisdiction (ISO code); a plain list of ids means jurisdictions are
    unknown, and only the modes apply to centers. Raises ConfigError naming file, line and field."""
    today = today or dt.datetime.now(dt.UTC).date()
    center_map = dict(centers) if isinstance(centers, Mapping) else {c: "" for c in centers}
    r = _Reader(file, center_map, set(country_codes), today)
    root = load_yaml(file)
    if not isinstance(root.value, dict):
        r.add(root, "document", "must be a mapping with 'groups', 'default' and 'rules'")
        r.problems.raise_if_any()
    for key in sorted(set(root.value) - {"groups", "default", "rules"}):
        r.add(root.value[key], key, "unknown field; expected groups, default, rules")
    _read_groups(root.get("groups"), r)
    default_node, rules_node = root.get("default"), root.get("rules")
    default: Rule | None = None
    if default_node is None:
        r.add(root, "default", "is required: the rule for countries no other rule names")
    else:
        default = _read_rule(default_node, "default", "default", r)
        if default is not None and (default.effective_from or default.effective_until):
            r.add(default_node, "default", "the default rule has no effective dates")
    schedule: dict[str, list[Rule]] = {}
    if rules_node is None or not isinstance(rules_node.value, list):
        r.add(rules_node or root, "rules", "must be a list of rules")
    else:
        names: dict[str, int] = {}
        for i, rule_node in enumerate(rules_node.value):
            path = f"rules[{i}]"
            name_node = rule_node.get("name")
            name = name_node.value if name_node is not None and isinstance(name_node.value, str) else path
            if name_node is None or not isinstance(name_node.value, str) or not name_node.value.strip():
                r.add(rule_node, f"{path}.name", "is required: reviewers, the audit and `rules diff` name rules by it")
            elif name in names and name != "default":
                r.add(name_node, f"{path}.name", f"rule name {name!r} already used by rules[{names[name]}]")
            elif name == "default":
                r.add(name_node, f"{path}.name", "'default' is the name of the default rule")
            else:
                names[name] = i
            rule = _read_rule(rule_node, name, path, r)
            countries_node = rule_node.get("countries")
            if countries_node is None or not isinstance(countries_node.value, list) or not countries_node.value:
                r.add(rule_node, f"{path}.countries", "must be a non-empty list of ISO 3166-1 alpha-2 codes")
                continue
            for j, code_node in enumerate(countries_node.value):
                code = r.country(code_node, f"{path}.countries[{j}]")
                if code is None or rule is None:
                    continue
                clash = next((other for other in schedule.get(code, []) if _overlap(other, rule)), None)
                if clash is not None:
                    r.add(code_node, f"{path}.countries[{j}]", f"country {code} already has rule {clash.name!r} for an overlapping period")
                    continue
                schedule.setdefault(code, []).append(rule)
    r.problems.raise_if_any()
    assert default is not None  # guaranteed once no problems were found
    frozen = {code: tuple(sorted(rules, key=lambda x: x.effective_from or dt.date.min)) for code, rules in schedule.items()}
    jurisdictions = {c: j for c, j in center_map.items() if j}
    return ResidencyPolicy({}, default, str(file), jurisdictions, dict(r.groups), frozen).on(today)
