"""Evaluate Route 53's answer for a client, offline: our `TestDNSAnswer` for tests and the auditor.

Semantics modelled, each from Route 53's documentation (Developer Guide "How Amazon Route 53 chooses
records when health checking is configured", "How health checks work in complex configurations", and
the API reference of ResourceRecordSet.Failover / AliasTarget.EvaluateTargetHealth / MultiValueAnswer):
- health of a record: its health check, if it has one, is not failing; and for an alias with
  EvaluateTargetHealth, the target name has a healthy record (for the client). A record without either
  is always healthy. A calculated check is failing when fewer than its threshold of children are healthy;
- geolocation: the most specific matching record wins (subdivision, country, continent, then '*'); an
  unhealthy record gives way to the next less specific one; with no matching record the answer is
  empty ("no answer"), which is how we fail closed. A client Route 53 cannot locate (`country` None)
  matches only the default '*' record;
- failover: a healthy PRIMARY answers; an unhealthy PRIMARY gives way to a healthy SECONDARY; when the
  SECONDARY is unhealthy the PRIMARY answers regardless of its health (fail-open); a SECONDARY without a
  health check (and not evaluating its target) is always healthy; a PRIMARY alone answers regardless;
- weighted: one record per response, chosen with probability weight / total among healthy records;
  if none is healthy Route 53 **fails open** and treats all as healthy; all weights 0 = equal;
- multivalue: up to eight healthy records, or up to eight unhealthy ones when none is healthy;
- latency (client latency unknown here): each healthy record equally, all of them when none is;
- alias: evaluated at the target name with the same client;
- IP-based (Developer Guide "IP-based routing"): the record of the location whose block holds the client's
  network, else the default ('*') location's. With `cidr_countries` (location -> the countries whose clients
  its live blocks may hold) a country's client may match any location holding its networks, and the default
  always (its networks outside every block); in the current-answer mode it takes its own location's record
  (`Client.location`), else the default. A record of a location `cidr_countries` does not know (another
  collection) may answer anyone;
- simple: all values.

With `every_possible` (the audit's mode) the question is not "what is answered now" but "what could be
answered under some health and some resolver location": every record of a weighted (weight 0 included),
failover, multivalue or latency group, and a geolocation record's less specific fallbacks where the more
specific one can become unhealthy.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from globalaccel.dns.records import Record, fqdn


class AliasChainTooDeep(Exception):
    """A chain of aliases/CNAMEs longer than Route 53 would follow: the zone is broken there."""


@dataclass(frozen=True)
class Client:
    country: str | None  # None: Route 53 cannot locate the resolver or the ECS network
    continent: str | None
    location: str | None = None  # the CIDR location whose block holds the client's network, when one does
    subdivision: str | None = None  # the client's US state, when Route 53 knows it (None: only its country)


@dataclass
class Resolution:
    addresses: dict[str, float] = field(default_factory=dict)  # address -> probability it is answered
    path: list[str] = field(default_factory=list)  # records evaluated, for evidence
    failed_open: bool = False  # some step answered only because every candidate was unhealthy

    @property
    def empty(self) -> bool:
        return not self.addresses


class Route53Simulator:
    def __init__(self, records: Iterable[Record], failing_checks: Iterable[str] = (), every_possible: bool = False,
                 calculated: Mapping[str, tuple[int, tuple[str, ...]]] | None = None,
                 cidr_countries: Mapping[tuple[str, str], frozenset[str]] | None = None) -> None:
        self.by_name: dict[tuple[str, str], list[Record]] = defaultdict(list)
        for r in records:
            self.by_name[(r.name, r.type)].append(r)
        self.failing = set(failing_checks)
        self.every_possible = every_possible
        self.calculated = dict(calculated or {})  # check id -> (healthy children needed, children)
        self.cidr_countries = dict(cidr_countries or {})  # (collection, location) -> countries its blocks may hold

    def check_healthy(self, check: str, depth: int = 0) -> bool:
        if check in self.failing:
            return False
        spec = self.calculated.get(check)
        if spec is None or depth > 8:
            return True
        needed, children = spec
        return sum(self.check_healthy(c, depth + 1) for c in children) >= needed

    def healthy(self, record: Record, client: Client | None = None, depth: int = 0) -> bool:
        if record.health_check is not None and not self.check_healthy(record.health_check):
            return False
        if record.alias is not None and record.evaluate_target_health:
            return self._target_healthy(record.alias, record.type, client, depth + 1)
        return True

    def _target_healthy(self, name: str, rtype: str, client: Client | None, depth: int) -> bool:
        """An alias evaluating target health is healthy while the target name has a healthy record (for a
        geolocation group: one the client matches). A name with no records is not healthy."""
        if depth > 8:
            raise AliasChainTooDeep(f"alias chain deeper than 8 at {name}")
        group = self.by_name.get((name, rtype), [])
        if group and group[0].policy == "geolocation" and client is not None:
            group = self._matching([r for r in group if r.policy == "geolocation"], client)
        elif group and group[0].policy == "ip-based" and client is not None:
            group = self._ip_based([r for r in group if r.policy == "ip-based"], client)
        return any(self.healthy(r, client, depth) for r in group)

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
        policies = sorted({r.policy for r in group})
        if len(policies) > 1 and group[0].type != "CNAME":
            # Route 53 refuses two routing policies under one name and type; a zone read from elsewhere (moto accepts
            # anything) may still hold them. Every possible answer is each policy's; the current one, the first's.
            for p in policies if self.every_possible else [group[0].policy]:
                self._resolve_group([r for r in group if r.policy == p], rtype, client, weight, out, depth)
            return
        self._resolve_group(group, rtype, client, weight, out, depth)

    def _resolve_group(self, group: list[Record], rtype: str, client: Client, weight: float, out: Resolution, depth: int) -> None:
        policy = group[0].policy
        if group[0].type == "CNAME":
            picks = [(group[0], 1.0)]
        elif policy == "ip-based":
            picks = [(r, 1.0) for r in self._ip_based(group, client)]
        elif self.every_possible and policy != "geolocation":
            # Weighted (weight 0 too), failover, multivalue, latency, and policies we do not model (CIDR,
            # geoproximity read as plain sets): every record can be an answer.
            picks = [(r, 1.0 / len(group)) for r in group]
        elif self.every_possible and policy == "geolocation":
            picks = [(r, 1.0) for r in self._geolocation_possible(group, client, out)]
        elif policy == "geolocation":
            chosen = self._geolocation(group, client, out, depth)
            picks = [(chosen, 1.0)] if chosen is not None else []
        elif policy == "weighted":
            picks = self._weighted(group, client, out, depth)
        elif policy == "failover":
            picks = [(self._failover(group, client, out, depth), 1.0)]
        elif policy in ("multivalue", "latency"):
            healthy = [r for r in group if self.healthy(r, client, depth)]
            if not healthy:
                out.failed_open = True
            pool = (healthy or list(group))[:8] if policy == "multivalue" else (healthy or list(group))
            picks = [(r, 1.0 if policy == "multivalue" else 1.0 / len(pool)) for r in pool]
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

    def _failover(self, group: list[Record], client: Client, out: Resolution, depth: int) -> Record:
        primary = next((r for r in group if r.failover == "PRIMARY"), None)
        secondary = next((r for r in group if r.failover == "SECONDARY"), None)
        if primary is None:  # Route 53 refuses a SECONDARY alone; a live zone read back could still hold one
            assert secondary is not None
            return secondary
        if secondary is None or self.healthy(primary, client, depth):
            if secondary is None and not self.healthy(primary, client, depth):
                out.failed_open = True
            return primary
        if self.healthy(secondary, client, depth):
            return secondary
        out.failed_open = True  # both unhealthy: Route 53 answers with the primary regardless of its health
        return primary

    def _ip_based(self, group: list[Record], client: Client) -> list[Record]:
        default = [r for r in group if r.cidr is not None and r.cidr.is_default]
        if not self.every_possible:
            mine = [r for r in group if r.cidr is not None and client.location is not None and r.cidr.location == client.location]
            return (mine or default)[:1]

        def may_match(r: Record) -> bool:
            assert r.cidr is not None
            held = self.cidr_countries.get((r.cidr.collection, r.cidr.location))
            return held is None or (client.country is not None and client.country in held)

        return default + [r for r in group if r.cidr is not None and not r.cidr.is_default and may_match(r)]

    def _matching(self, group: list[Record], client: Client) -> list[Record]:
        """The geolocation records a client matches, most specific first (subdivision, country, continent, '*')."""
        possible = self.every_possible

        def specificity(r: Record) -> int | None:
            assert r.geo is not None
            if r.geo.subdivision is not None:
                # A subdivision record matches a client of its state, the most specific; a client whose state is
                # not given may be in any state of its country when every possible answer is asked.
                same_country = client.country is not None and r.geo.country == client.country
                in_state = client.subdivision == r.geo.subdivision if client.subdivision is not None else possible
                return -1 if same_country and in_state else None
            if client.country is not None and r.geo.country == client.country:
                return 0
            if client.continent is not None and r.geo.continent == client.continent:
                return 1
            if r.geo.is_default or r.geo.country == "*":
                return 2
            return None

        matching = sorted((s, r.set_id or "", r) for r in group if (s := specificity(r)) is not None)
        return [r for _, _, r in matching]

    def _geolocation(self, group: list[Record], client: Client, out: Resolution, depth: int) -> Record | None:
        candidates = self._matching(group, client)
        for record in candidates:
            if self.healthy(record, client, depth):
                return record
        if candidates:
            out.failed_open = True  # every matching record unhealthy: Route 53 answers anyway
            return candidates[0]
        return None

    def _geolocation_possible(self, group: list[Record], client: Client, out: Resolution) -> list[Record]:
        """The record the client matches, and each less specific one it falls back to while the one before
        can become unhealthy (it has a health check, or evaluates its target's): any of them can answer."""
        picks: list[Record] = []
        for record in self._matching(group, client):
            picks.append(record)
            can_fail = record.health_check is not None or (record.alias is not None and record.evaluate_target_health)
            if not can_fail and (record.geo is None or record.geo.subdivision is None):
                break  # always healthy, and matches every client of its location: nothing less specific answers
        return picks

    def _weighted(self, group: list[Record], client: Client, out: Resolution, depth: int) -> list[tuple[Record, float]]:
        pool = [r for r in group if self.healthy(r, client, depth)]
        if not pool:
            out.failed_open = True
            pool = list(group)
        total = sum(r.weight or 0 for r in pool)
        if total == 0:
            return [(r, 1.0 / len(pool)) for r in pool]
        return [(r, (r.weight or 0) / total) for r in pool if r.weight]
