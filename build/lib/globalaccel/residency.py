"""Data-residency rules: which centers may process and store a country's users' data.

This is the single implementation of residency logic. The router, the DNS compiler, the auditor
and the Pulumi policy pack all ask this module; none of them re-derive it.

Modes:
- strict:    only the listed centers; when none is healthy the country fails closed (no answer).
- preferred: listed centers first; any other center only when no listed one is healthy.
- open:      any center, chosen on latency alone.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from globalaccel.errors import ProblemCollector
from globalaccel.sourcefile import Located, load_yaml


class Mode(StrEnum):
    STRICT = "strict"
    PREFERRED = "preferred"
    OPEN = "open"


@dataclass(frozen=True)
class Rule:
    """A residency rule for one or more countries, with its legal provenance."""

    name: str
    mode: Mode
    centers: tuple[str, ...]
    basis: str
    source: str
    reviewed: dt.date

    def allows(self, center: str) -> bool:
        return self.mode is not Mode.STRICT or center in self.centers


@dataclass(frozen=True)
class Eligibility:
    """What a rule permits given current center health, in priority tiers."""

    tiers: tuple[tuple[str, ...], ...]  # first non-empty tier wins; centers in each tier tie on priority
    fail_closed: bool  # True when the rule is strict and no allowed center is healthy

    @property
    def centers(self) -> tuple[str, ...]:
        for tier in self.tiers:
            if tier:
                return tier
        return ()


@dataclass(frozen=True)
class ResidencyPolicy:
    """Country code -> rule, plus the explicit default for countries not listed."""

    rules: Mapping[str, Rule]
    default: Rule
    source_file: str = ""

    def rule_for(self, country: str) -> Rule:
        return self.rules.get(country, self.default)

    def allows(self, country: str, center: str) -> bool:
        """May `center` process and store data of users in `country`? Health plays no part."""
        return self.rule_for(country).allows(center)

    def permitted_centers(self, country: str, all_centers: Iterable[str]) -> tuple[str, ...]:
        """Every center that may ever serve `country`, in a stable order."""
        rule = self.rule_for(country)
        if rule.mode is Mode.STRICT:
            known = set(all_centers)
            return tuple(c for c in rule.centers if c in known)
        return tuple(sorted(all_centers))

    def eligibility(self, country: str, healthy_centers: Iterable[str], all_centers: Iterable[str]) -> Eligibility:
        """Which healthy centers may serve `country` now, in priority tiers."""
        rule = self.rule_for(country)
        healthy = set(healthy_centers)
        if rule.mode is Mode.STRICT:
            tier = tuple(c for c in rule.centers if c in healthy)
            return Eligibility((tier,), fail_closed=not tier)
        if rule.mode is Mode.PREFERRED:
            listed = tuple(c for c in rule.centers if c in healthy)
            others = tuple(sorted(c for c in set(all_centers) if c in healthy and c not in rule.centers))
            return Eligibility((listed, others), fail_closed=False)
        return Eligibility((tuple(sorted(c for c in set(all_centers) if c in healthy)),), fail_closed=False)

    def strict_countries(self, countries: Iterable[str]) -> list[str]:
        return sorted(c for c in countries if self.rule_for(c).mode is Mode.STRICT)


_RULE_FIELDS = ("mode", "centers", "basis", "source", "reviewed")


def _parse_rule(
    node: Located, name: str, path: str, file: Path, center_ids: set[str], problems: ProblemCollector
) -> Rule | None:
    if not isinstance(node.value, dict):
        problems.add(file, node.line, path, "must be a mapping")
        return None
    ok = True
    for key in _RULE_FIELDS:
        if node.get(key) is None:
            problems.add(file, node.line, f"{path}.{key}", "is required")
            ok = False
    unknown = set(node.value) - set(_RULE_FIELDS) - {"countries", "name"}
    for key in sorted(unknown):
        problems.add(file, node.value[key].line, f"{path}.{key}", "unknown field")
        ok = False
    if not ok:
        return None
    mode_node, centers_node = node.value["mode"], node.value["centers"]
    try:
        mode = Mode(mode_node.value)
    except ValueError:
        problems.add(file, mode_node.line, f"{path}.mode", f"must be one of strict, preferred, open; got {mode_node.value!r}")
        return None
    if not isinstance(centers_node.value, list):
        problems.add(file, centers_node.line, f"{path}.centers", "must be a list of center ids")
        return None
    centers: list[str] = []
    for i, item in enumerate(centers_node.value):
        if not isinstance(item.value, str) or item.value not in center_ids:
            problems.add(file, item.line, f"{path}.centers[{i}]", f"unknown center {item.value!r}; known: {', '.join(sorted(center_ids))}")
            ok = False
        elif item.value in centers:
            problems.add(file, item.line, f"{path}.centers[{i}]", f"center {item.value!r} listed twice")
            ok = False
        else:
            centers.append(item.value)
    if mode is Mode.PREFERRED and not centers:
        problems.add(file, centers_node.line, f"{path}.centers", "a preferred rule needs at least one center")
        ok = False
    for key in ("basis", "source"):
        text = node.value[key]
        if not isinstance(text.value, str) or not text.value.strip():
            problems.add(file, text.line, f"{path}.{key}", "must be non-empty text")
            ok = False
    reviewed = node.value["reviewed"]
    if not isinstance(reviewed.value, dt.date):
        problems.add(file, reviewed.line, f"{path}.reviewed", f"must be a date (YYYY-MM-DD); got {reviewed.value!r}")
        ok = False
    if not ok:
        return None
    return Rule(name, mode, tuple(centers), node.value["basis"].value.strip(), node.value["source"].value.strip(), reviewed.value)


def load_residency(file: Path, center_ids: Iterable[str], country_codes: Iterable[str]) -> ResidencyPolicy:
    """Load and validate `residency.yaml`. Raises ConfigError naming file, line and field."""
    centers = set(center_ids)
    countries = set(country_codes)
    root = load_yaml(file)
    problems = ProblemCollector()
    if not isinstance(root.value, dict):
        problems.add(file, root.line, "document", "must be a mapping with 'default' and 'rules'")
        problems.raise_if_any()
    default_node = root.get("default")
    rules_node = root.get("rules")
    default: Rule | None = None
    if default_node is None:
        problems.add(file, root.line, "default", "is required: the rule for countries no other rule names")
    else:
        default = _parse_rule(default_node, "default", "default", file, centers, problems)
    by_country: dict[str, Rule] = {}
    first_seen: dict[str, str] = {}
    if rules_node is None or not isinstance(rules_node.value, list):
        problems.add(file, root.line if rules_node is None else rules_node.line, "rules", "must be a list of rules")
    else:
        for i, rule_node in enumerate(rules_node.value):
            path = f"rules[{i}]"
            name_node = rule_node.get("name")
            name = name_node.value if name_node is not None and isinstance(name_node.value, str) else path
            rule = _parse_rule(rule_node, name, path, file, centers, problems)
            countries_node = rule_node.get("countries")
            if countries_node is None or not isinstance(countries_node.value, list) or not countries_node.value:
                problems.add(file, rule_node.line, f"{path}.countries", "must be a non-empty list of ISO 3166-1 alpha-2 codes")
                continue
            for j, code_node in enumerate(countries_node.value):
                code = code_node.value
                field = f"{path}.countries[{j}]"
                if isinstance(code, bool):
                    # YAML 1.1 reads NO (Norway) and a few others as booleans.
                    problems.add(file, code_node.line, field, f"read as boolean {code!r}; quote country codes such as \"NO\"")
                elif not isinstance(code, str) or code not in countries:
                    problems.add(file, code_node.line, field, f"unknown country code {code!r}")
                elif code in first_seen:
                    problems.add(file, code_node.line, field, f"country {code} already has rule {first_seen[code]!r}")
                else:
                    first_seen[code] = name
                    if rule is not None:
                        by_country[code] = rule
    problems.raise_if_any()
    assert default is not None  # guaranteed once no problems were found
    return ResidencyPolicy(by_country, default, str(file))
