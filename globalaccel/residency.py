"""Data-residency rules over the whole path: where a country's users' traffic may be terminated (by an
edge that decrypts it, or by a center), which jurisdictions it may never cross, and which centers may
process and store its data.

This is the single implementation of residency logic. The router, `verify`, the DNS compiler, the
auditor and the Pulumi policy pack all ask this module; none of them re-derive it.

Modes (which centers):
- strict:    only the listed centers; when none is healthy the country fails closed (no answer).
- preferred: listed centers first; any other center only when no listed one is healthy.
- open:      any center, chosen on latency alone.
Whatever the mode, a center or edge may only terminate the traffic in a jurisdiction the rule's
`terminate_in` names or in the users' own country (decrypting at home is no transfer), and no element
of the path (transit edge, terminating edge, center) may stand in a jurisdiction its `never_transit`
names.

Rules carry effective dates: a country may have several rules with disjoint periods, and the policy
resolves the one in force on a given day (`on(date)`), so a law that changes on a known day applies
itself that day.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
from numpy.typing import NDArray

ANY = "any"  # terminate_in: any jurisdiction


class Mode(StrEnum):
    STRICT = "strict"
    PREFERRED = "preferred"
    OPEN = "open"


class Role(StrEnum):
    """What an edge does with a client's traffic."""

    TRANSIT = "transit"  # forwards the encrypted stream (L4); sees no content
    TERMINATING = "terminating"  # decrypts (TLS) and processes the traffic where it stands


@dataclass(frozen=True)
class Group:
    """A named set of jurisdictions (EEA, an adequacy list, ...), with its source."""

    name: str
    countries: frozenset[str]
    source: str
    urls: tuple[str, ...]
    reviewed: dt.date


@dataclass(frozen=True)
class Rule:
    """A residency rule for one or more countries, with its legal provenance."""

    name: str
    mode: Mode
    centers: tuple[str, ...]
    basis: str
    source: str
    reviewed: dt.date | None  # the day its source was actually read; None: not re-checked (listed by plan and audit)
    terminate_in: frozenset[str] | None = None  # jurisdictions (ISO codes); None = any
    never_transit: frozenset[str] = frozenset()
    urls: tuple[str, ...] = ()  # the sources as read
    effective_from: dt.date | None = None
    effective_until: dt.date | None = None  # exclusive: the first day the rule no longer applies
    terminate_in_names: tuple[str, ...] = (ANY,)  # as written (group names and codes), for reports
    never_transit_names: tuple[str, ...] = ()

    def in_force(self, day: dt.date) -> bool:
        return (self.effective_from is None or self.effective_from <= day) and (self.effective_until is None or day < self.effective_until)

    def may_terminate_in(self, jurisdiction: str, home: str | None = None) -> bool:
        """May traffic of users in `home` be decrypted in `jurisdiction`? At home always (that is no
        transfer), unless home itself is on the never-transit list; elsewhere only inside terminate_in."""
        if jurisdiction in self.never_transit:
            return False
        return self.terminate_in is None or jurisdiction in self.terminate_in or jurisdiction == home

    def may_cross(self, jurisdiction: str) -> bool:
        return jurisdiction not in self.never_transit

    def edge_allowed(self, jurisdiction: str, role: Role, home: str | None = None) -> bool:
        """May an edge in `jurisdiction` with `role` stand on the path of this rule's users in `home`?"""
        return self.may_terminate_in(jurisdiction, home) if role is Role.TERMINATING else self.may_cross(jurisdiction)

    def edge_mask(self, jurisdictions: NDArray[np.str_], relays: NDArray[np.bool_], home: str | None = None) -> NDArray[np.bool_]:
        """edge_allowed over a whole fleet at once (jurisdiction and transit role per edge), for `home`'s users."""
        crossable = ~np.isin(jurisdictions, list(self.never_transit))
        if self.terminate_in is None:
            return crossable
        decrypts = np.isin(jurisdictions, list(self.terminate_in))
        if home is not None and home not in self.never_transit:
            decrypts |= jurisdictions == home  # decrypting at home is no transfer
        mask: NDArray[np.bool_] = crossable & (relays | decrypts)
        return mask

    def canonical(self) -> dict[str, object]:
        """Everything that decides routing or is shown to a reviewer, in a stable form for hashing."""
        return {
            "name": self.name, "mode": self.mode.value, "centers": list(self.centers), "basis": self.basis, "source": self.source,
            "urls": list(self.urls), "reviewed": self.reviewed.isoformat() if self.reviewed else None,
            "terminate_in": None if self.terminate_in is None else sorted(self.terminate_in),
            "never_transit": sorted(self.never_transit),
            "effective_from": self.effective_from.isoformat() if self.effective_from else None,
            "effective_until": self.effective_until.isoformat() if self.effective_until else None,
        }


@dataclass(frozen=True)
class Eligibility:
    """What a rule permits given current center health, in priority tiers."""

    tiers: tuple[tuple[str, ...], ...]  # first non-empty tier wins; centers in each tier tie on priority
    # True when the rule refuses service now: strict and no allowed center healthy, or every healthy
    # center stands where the rule forbids termination. A lawful refusal, never a loss of service.
    fail_closed: bool

    @property
    def centers(self) -> tuple[str, ...]:
        for tier in self.tiers:
            if tier:
                return tier
        return ()


@dataclass(frozen=True)
class ResidencyPolicy:
    """Country code -> rule in force on `as_of`, plus the explicit default for countries not listed.

    `schedule` keeps every rule of every country, so the policy can be re-resolved on another day
    (`on`) and report what changes (`upcoming`)."""

    rules: Mapping[str, Rule]
    default: Rule
    source_file: str = ""
    center_jurisdiction: Mapping[str, str] = field(default_factory=dict)  # center id -> ISO code
    groups: Mapping[str, Group] = field(default_factory=dict)
    schedule: Mapping[str, tuple[Rule, ...]] = field(default_factory=dict)
    as_of: dt.date | None = None

    # -- resolution --------------------------------------------------------------------------------
    def rule_for(self, country: str) -> Rule:
        return self.rules.get(country, self.default)

    def on(self, day: dt.date) -> ResidencyPolicy:
        """The same rule set resolved for `day`."""
        rules = {code: rule for code, options in self.schedule.items() for rule in options if rule.in_force(day)}
        return ResidencyPolicy(rules, self.default, self.source_file, self.center_jurisdiction, self.groups, self.schedule, day)

    def upcoming(self, after: dt.date, countries: Iterable[str]) -> list[tuple[dt.date, str, str, str]]:
        """(day, country, rule before, rule after) for every change of rule after `after`, in order."""
        days = sorted({d for options in self.schedule.values() for r in options
                       for d in (r.effective_from, r.effective_until) if d is not None and d > after})
        out: list[tuple[dt.date, str, str, str]] = []
        current = self.on(after)
        for day in days:
            nxt = self.on(day)
            out.extend((day, c, current.rule_for(c).name, nxt.rule_for(c).name)
                       for c in sorted(countries) if current.rule_for(c) != nxt.rule_for(c))
            current = nxt
        return out

    def unreviewed_rules(self) -> list[str]:
        """Rules whose sources were not re-checked (`reviewed: null`): plan and audit list them."""
        return sorted({r.name for r in self.all_rules() if r.reviewed is None})

    def default_countries(self, countries: Iterable[str]) -> list[str]:
        """Every country that falls to the default rule: listed in plan and audit, never silent."""
        return sorted(c for c in countries if c not in self.rules)

    # -- centers -----------------------------------------------------------------------------------
    def _center_ok(self, rule: Rule, center: str, country: str) -> bool:
        where = self.center_jurisdiction.get(center)
        # A center whose jurisdiction is unknown (an in-memory world without one) is judged by mode alone.
        return where is None or rule.may_terminate_in(where, country)

    def allows(self, country: str, center: str) -> bool:
        """May `center` process and store data of users in `country`? Health plays no part."""
        rule = self.rule_for(country)
        return (rule.mode is not Mode.STRICT or center in rule.centers) and self._center_ok(rule, center, country)

    def permitted_centers(self, country: str, all_centers: Iterable[str]) -> tuple[str, ...]:
        """Every center that may ever serve `country`, in a stable order."""
        rule = self.rule_for(country)
        known = set(all_centers)
        pool = [c for c in rule.centers if c in known] if rule.mode is Mode.STRICT else sorted(known)
        return tuple(c for c in pool if self._center_ok(rule, c, country))

    def eligibility(self, country: str, healthy_centers: Iterable[str], all_centers: Iterable[str]) -> Eligibility:
        """Which healthy centers may serve `country` now, in priority tiers."""
        rule = self.rule_for(country)
        up = set(healthy_centers)
        healthy = {c for c in up if self._center_ok(rule, c, country)}
        refused = bool(up - healthy)  # some healthy center stands where this rule forbids termination
        if rule.mode is Mode.STRICT:
            tier = tuple(c for c in rule.centers if c in healthy)
            return Eligibility((tier,), fail_closed=not tier)
        if rule.mode is Mode.PREFERRED:
            listed = tuple(c for c in rule.centers if c in healthy)
            others = tuple(sorted(c for c in set(all_centers) if c in healthy and c not in rule.centers))
            return Eligibility((listed, others), fail_closed=not (listed or others) and refused)
        tier = tuple(sorted(c for c in set(all_centers) if c in healthy))
        return Eligibility((tier,), fail_closed=not tier and refused)

    def strict_countries(self, countries: Iterable[str]) -> list[str]:
        return sorted(c for c in countries if self.rule_for(c).mode is Mode.STRICT)

    # -- edges -------------------------------------------------------------------------------------
    def edge_allowed(self, country: str, edge_jurisdiction: str, role: Role) -> bool:
        """May an edge in `edge_jurisdiction` with `role` carry traffic of users in `country`?"""
        return self.rule_for(country).edge_allowed(edge_jurisdiction, role, country)

    def path_violation(self, country: str, edge_jurisdiction: str, role: Role, center: str) -> str | None:
        """Why a whole answered path (an edge, and the center that edge forwards to) may not carry
        `country`'s traffic, or None when it may: the one check every reader of live answers uses."""
        if not self.allows(country, center):
            return f"{center} is not allowed by rule {self.rule_for(country).name!r}"
        return self.edge_violation(country, edge_jurisdiction, role)

    def edge_violation(self, country: str, edge_jurisdiction: str, role: Role) -> str | None:
        """Why the edge may not carry `country`'s traffic, or None when it may."""
        rule = self.rule_for(country)
        if edge_jurisdiction in rule.never_transit:
            return f"edge in {edge_jurisdiction}, which rule {rule.name!r} forbids on the path (never_transit)"
        if role is Role.TERMINATING and not rule.may_terminate_in(edge_jurisdiction, country):
            return f"terminating edge in {edge_jurisdiction}, outside rule {rule.name!r}'s terminate_in"
        return None

    # -- provenance --------------------------------------------------------------------------------
    @property
    def rules_hash(self) -> str:
        """Content hash of the whole rule set (every period, groups, default): what a reviewer signs."""
        doc = {
            "default": self.default.canonical(),
            "rules": {code: [r.canonical() for r in options] for code, options in sorted(self.schedule.items())},
            "groups": {name: {"countries": sorted(g.countries), "source": g.source, "urls": list(g.urls),
                              "reviewed": g.reviewed.isoformat()} for name, g in sorted(self.groups.items())},
            "centers": dict(sorted(self.center_jurisdiction.items())),
        }
        return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]

    def describe(self, countries: Iterable[str]) -> dict[str, object]:
        """The rule set as a reviewer or auditor reads it: hash, every rule with its basis, sources,
        review date and countries, the groups, and the countries that fall to the default."""
        codes = sorted(countries)
        members: dict[tuple[str, str | None], list[str]] = {}
        for code, options in self.schedule.items():
            for rule in options:
                members.setdefault((rule.name, str(rule.effective_from) if rule.effective_from else None), []).append(code)
        return {
            "hash": self.rules_hash, "as_of": str(self.as_of), "file": self.source_file,
            "default_countries": self.default_countries(codes), "unreviewed": self.unreviewed_rules(),
            "upcoming": [{"date": str(d), "country": c, "from": a, "to": b} for d, c, a, b in self.upcoming(self.as_of, codes)]
            if self.as_of else [],
            "rules": [{**r.canonical(), "terminate_in": list(r.terminate_in_names), "never_transit": list(r.never_transit_names),
                       "countries": sorted(members.get((r.name, str(r.effective_from) if r.effective_from else None), []))
                       if r is not self.default else ["(default)"]} for r in self.all_rules()],
            "groups": {g.name: {"countries": sorted(g.countries), "source": g.source, "urls": list(g.urls), "reviewed": str(g.reviewed)}
                       for g in self.groups.values()},
        }

    def all_rules(self) -> list[Rule]:
        """Every distinct rule (all periods) and the default, by name."""
        seen: dict[tuple[str, dt.date | None], Rule] = {(self.default.name, None): self.default}
        for options in self.schedule.values():
            for rule in options:
                seen.setdefault((rule.name, rule.effective_from), rule)
        return sorted(seen.values(), key=lambda r: (r.name, r.effective_from or dt.date.min))
