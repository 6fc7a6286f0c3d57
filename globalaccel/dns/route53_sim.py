"""Evaluate Route 53's answer for a client, offline: our `TestDNSAnswer` for tests and the auditor.

Semantics modelled (from Route 53's documentation):
- geolocation: the most specific matching record wins (country, then continent, then '*'); an
  unhealthy record gives way to the next less specific one; with no matching record the answer is
  empty ("no answer"), which is how we fail closed;
- weighted: one record per response, chosen with probability weight / total among healthy records;
  if none is healthy Route 53 **fails open** and treats all as healthy; all weights 0 = equal;
- alias: evaluated at the target name with the same client;
- simple: all values.
Health: a record is unhealthy when its health check is in `failing_checks`.

With `every_possible` (the audit's mode) the question is not "what is answered now" but "what could be
answered under some health and some resolver location": every record of a weighted (weight 0 included),
failover, multivalue or latency group, and a geolocation record's less specific fallbacks where the more
specific one can become unhealthy.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from globalaccel.dns.records import Record, fqdn


class AliasChainTooDeep(Exception):
    """A chain of aliases/CNAMEs longer than Route 53 would follow: the zone is broken there."""


@dataclass(frozen=True)
class Client:
    country: str
    continent: str


@dataclass
class Resolution:
    addresses: dict[str, float] = field(default_factory=dict)  # address -> probability it is answered
    path: list[str] = field(default_factory=list)  # records evaluated, for evidence
    failed_open: bool = False  # some step answered only because every candidate was unhealthy

    @property
    def empty(self) -> bool:
        return not self.addresses


class Route53Simulator:
    def __init__(self, records: Iterable[Record], failing_checks: Iterable[str] = (), every_possible: bool = False) -> None:
        self.by_name: dict[tuple[str, str], list[Record]] = defaultdict(list)
        for r in records:
            self.by_name[(r.name, r.type)].append(r)
        self.failing = set(failing_checks)
        self.every_possible = every_possible

    def healthy(self, record: Record) -> bool:
        return record.health_check is None or record.health_check not in self.failing

    def resolve(self, name: str, client: Client, rtype: str = "A") -> Resolution:
        out = Resolution()
        self._resolve(fqdn(name), rtype, client, 1.0, out, depth=0)
        return out

    def _resolve(self, name: str, rtype: str, client: Client, weight: float, out: Resolution, depth: int) -> None:
        if depth > 8:
            raise AliasChainTooDeep(f"alias chain deeper than 8 at {name}")
        group = self.by_name.get((name, rtype), [])
        if not group and self.by_name.get((name, "CNAME")):
            group = self.by_name[(name, "CNAME")]  # a CNAME answers for every type: follow it like an alias
        if not group:
            if self.every_possible and depth > 0 and not any(n == name for n, _ in self.by_name):
                # An alias or CNAME to a name this zone does not hold: whatever it answers is outside what we can
                # read, so it is reported as an answer of its own, never as "no answer".
                out.addresses[f"external:{name}"] = out.addresses.get(f"external:{name}", 0.0) + weight
            return
        policy = group[0].policy
        if group[0].type == "CNAME":
            picks = [(group[0], 1.0)]
        elif self.every_possible and policy != "geolocation":
            # Weighted (weight 0 too), failover, multivalue, latency, and policies we do not model (CIDR,
            # geoproximity read as plain sets): every record can be an answer.
            picks = [(r, 1.0 / len(group)) for r in group]
        elif self.every_possible and policy == "geolocation":
            picks = [(r, 1.0) for r in self._geolocation_possible(group, client, out)]
        elif policy == "geolocation":
            chosen = self._geolocation(group, client, out)
            picks = [(chosen, 1.0)] if chosen is not None else []
        elif policy == "weighted":
            picks = self._weighted(group, out)
        else:
            picks = [(group[0], 1.0)]
        for record, p in picks:
            out.path.append(f"{record.name} {record.type} {record.set_id or ''}".strip())
            if record.alias is not None:
                self._resolve(record.alias, rtype, client, weight * p, out, depth + 1)
            elif record.type == "CNAME":
                for target in record.values:
                    self._resolve(fqdn(target), rtype, client, weight * p, out, depth + 1)
            else:
                for value in record.values:
                    out.addresses[value] = out.addresses.get(value, 0.0) + weight * p

    @staticmethod
    def _matching(group: list[Record], client: Client) -> list[Record]:
        """The geolocation records a client matches, most specific first (country, continent, '*')."""
        def specificity(r: Record) -> int | None:
            assert r.geo is not None
            if r.geo.subdivision is not None:
                # Our clients are placed by country only; a subdivision record of the client's country may
                # match it (the most specific), so it counts as a possible answer.
                return -1 if r.geo.country == client.country else None
            if r.geo.country == client.country:
                return 0
            if r.geo.continent == client.continent:
                return 1
            if r.geo.is_default or r.geo.country == "*":
                return 2
            return None

        matching = sorted((s, r.set_id or "", r) for r in group if (s := specificity(r)) is not None)
        return [r for _, _, r in matching]

    def _geolocation(self, group: list[Record], client: Client, out: Resolution) -> Record | None:
        candidates = self._matching(group, client)
        for record in candidates:
            if self.healthy(record):
                return record
        if candidates:
            out.failed_open = True  # every matching record unhealthy: Route 53 answers anyway
            return candidates[0]
        return None

    def _geolocation_possible(self, group: list[Record], client: Client, out: Resolution) -> list[Record]:
        """The record the client matches, and each less specific one it falls back to while the one before
        can become unhealthy (it has a health check): any of them can answer."""
        picks: list[Record] = []
        for record in self._matching(group, client):
            picks.append(record)
            if record.health_check is None and (record.geo is None or record.geo.subdivision is None):
                break  # always healthy, and matches every client of its location: nothing less specific answers
        return picks

    def _weighted(self, group: list[Record], out: Resolution) -> list[tuple[Record, float]]:
        pool = [r for r in group if self.healthy(r)]
        if not pool:
            out.failed_open = True
            pool = list(group)
        total = sum(r.weight or 0 for r in pool)
        if total == 0:
            return [(r, 1.0 / len(pool)) for r in pool]
        return [(r, (r.weight or 0) / total) for r in pool if r.weight]
