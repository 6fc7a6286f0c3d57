"""Reject what AWS Route 53 would reject, because moto (our test double) accepts almost anything."""

from __future__ import annotations

import ipaddress
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from globalaccel.dns.plan import Change
from globalaccel.dns.records import CIDR_TYPE, Record
from globalaccel.dns.route53_cells import location_label, pseudo_label
from globalaccel.errors import GlobalaccelError
from globalaccel.topology import CONTINENTS

MAX_SAME_NAME_TYPE = 100  # geolocation, latency, weighted, multivalue, IP-based (30 for geoproximity)
MAX_RECORDS_PER_ZONE = 10_000
MAX_BATCH_VALUES = 1_000  # UPSERT counts twice
MAX_BATCH_CHARS = 32_000  # UPSERT counts twice
# IP-based routing (Developer Guide "IP-based routing", API reference CidrRoutingConfig / ChangeCidrCollection,
# checked 2026-11-26): location names, block lengths, blocks per request (and per location in CloudFormation).
LOCATION_NAME = re.compile(r"[0-9A-Za-z_\-]{1,16}")
MAX_CIDR_PREFIX = {4: 24, 6: 48}
MAX_BLOCKS_PER_LOCATION = 1_000
# Geolocation subdivisions: "the two-letter code for a state of the United States. Route 53 doesn't support any other
# values for SubdivisionCode ... you must also specify US for CountryCode" (API reference, GeoLocation; checked
# 2026-11-26). The USPS codes of the 50 states and the District of Columbia.
_USPS = ("AK AL AR AZ CA CO CT DC DE FL GA HI IA ID IL IN KS KY LA MA MD ME MI MN MO MS MT NC ND NE NH NJ NM NV NY OH OK OR PA RI "
         "SC SD TN TX UT VA VT WA WI WV WY")
US_STATES = frozenset(_USPS.split())
ROUTE53_EXTRA_COUNTRIES = {"UA", "XK"}  # Route 53 also accepts subdivisions under UA and US; countries are ISO, and Kosovo
# ISO 3166-1 codes Route 53's ListGeoLocations does not return: a change batch naming one is rejected whole
# (shared/DESIGN.md, from AWS's geolocation routing documentation). Clients there match no country record.
ROUTE53_UNSUPPORTED_COUNTRIES = frozenset({"BV", "CX", "EH", "HM"})


@dataclass(frozen=True)
class RecordProblem:
    key: tuple[str, str, str]
    message: str

    def __str__(self) -> str:
        name, rtype, set_id = self.key
        return f"{name} {rtype}{' [' + set_id + ']' if set_id else ''}: {self.message}"


class Route53ValidationError(GlobalaccelError, ValueError):
    def __init__(self, problems: list[RecordProblem]) -> None:
        self.problems = problems
        super().__init__("Route 53 would reject these records:\n" + "\n".join(str(p) for p in problems[:50]))


def validate_records(records: Iterable[Record], zone: str, countries: Iterable[str],
                     max_records: int = MAX_RECORDS_PER_ZONE, max_blocks: int | None = None) -> None:
    every = list(records)
    locations = [r for r in every if r.type == CIDR_TYPE]  # the CIDR collection's content, not DNS records
    records = [r for r in every if r.type != CIDR_TYPE]
    known_countries = set(countries) | ROUTE53_EXTRA_COUNTRIES
    problems: list[RecordProblem] = []
    seen: set[tuple[str, str, str]] = set()
    by_name_type: dict[tuple[str, str], list[Record]] = defaultdict(list)
    names_types: dict[str, set[str]] = defaultdict(set)
    for r in records:

        def add(message: str, r: Record = r) -> None:
            problems.append(RecordProblem(r.key, message))

        if r.key in seen:
            add("duplicate (name, type, set identifier)")
        seen.add(r.key)
        by_name_type[(r.name, r.type)].append(r)
        names_types[r.name].add(r.type)
        if not (r.name == zone or r.name.endswith("." + zone)):
            add(f"outside the zone {zone}")
        if r.type == "CNAME" and r.name == zone:
            add("CNAME at the zone apex")
        if (r.weight is not None or r.geo is not None or r.failover is not None or r.cidr is not None) and not r.set_id:
            add("a routing policy needs a SetIdentifier")
        if r.failover is not None and r.failover not in ("PRIMARY", "SECONDARY"):
            add(f"Failover must be PRIMARY or SECONDARY, got {r.failover!r}")
        if r.failover is not None and r.alias is not None and not r.evaluate_target_health:
            add("a failover alias record must set EvaluateTargetHealth to true")
        if r.evaluate_target_health and r.alias is None:
            add("EvaluateTargetHealth applies to alias records only")
        if r.set_id is not None and not 1 <= len(r.set_id) <= 128:
            add("SetIdentifier must be 1-128 characters")
        if r.set_id and r.weight is None and r.geo is None and r.failover is None and r.cidr is None:
            add("SetIdentifier without a routing policy")
        if r.weight is not None and r.geo is not None:
            add("weighted and geolocation on one record")
        if r.weight is not None and not (isinstance(r.weight, int) and 0 <= r.weight <= 255):
            add(f"weight must be an integer 0-255, got {r.weight!r}")
        if r.geo is not None:
            if r.geo.continent is not None and r.geo.country is not None:
                add("geolocation names both a continent and a country")
            if r.geo.continent is not None and r.geo.continent not in CONTINENTS:
                add(f"unknown continent code {r.geo.continent!r}")
            if r.geo.country is not None and r.geo.country != "*" and r.geo.country not in known_countries:
                add(f"unknown country code {r.geo.country!r}")
            elif r.geo.country in ROUTE53_UNSUPPORTED_COUNTRIES:
                add(f"Route 53 has no geolocation {r.geo.country!r}: AWS rejects the whole change batch")
            if r.geo.subdivision is not None and (r.geo.country != "US" or r.geo.subdivision not in US_STATES):
                add(f"subdivision {r.geo.country}-{r.geo.subdivision}: Route 53 supports US states only")
        if r.alias is not None:
            if r.values or r.ttl is not None:
                add("an alias record has neither values nor TTL")
        else:
            if not r.values:
                add("a record needs at least one value")
            if r.ttl is None or not 0 <= r.ttl <= 2_147_483_647:
                add(f"TTL must be 0-2147483647, got {r.ttl!r}")
        if r.type == "A":
            for v in r.values:
                try:
                    ipaddress.IPv4Address(v)
                except ValueError:
                    add(f"not an IPv4 address: {v!r}")
        if r.cidr is not None:
            if not r.set_id:
                add("IP-based routing needs a SetIdentifier")
            if r.weight is not None or r.geo is not None or r.failover is not None:
                add("IP-based routing beside another routing policy on one record")
            if r.cidr.location != "*" and not LOCATION_NAME.fullmatch(r.cidr.location):
                add(f"CIDR location name {r.cidr.location!r} is not 1-16 of [0-9A-Za-z_-]")
        if r.health_check is not None and r.failover is None:
            add("only failover records carry health checks: a checked weighted or geolocation record fails open or "
                "falls back out of the country (probes are the edges' health checks)")
    keys = {(r.name, r.type) for r in records}
    for r in records:
        if r.alias is not None and (r.alias, r.type) not in keys:
            problems.append(RecordProblem(r.key, f"alias target {r.alias} {r.type} does not exist in the zone"))
    for (name, rtype), group in by_name_type.items():
        policies = {r.policy for r in group}
        if len(policies) > 1:
            problems.append(RecordProblem((name, rtype, ""), f"mixed routing policies under one name: {sorted(policies)}"))
        if "simple" in policies and len(group) > 1:
            problems.append(RecordProblem((name, rtype, ""), "more than one simple record set"))
        if "failover" in policies:
            roles = sorted(r.failover or "" for r in group)
            if roles not in (["PRIMARY"], ["PRIMARY", "SECONDARY"]):
                problems.append(RecordProblem((name, rtype, ""), f"a failover group needs one PRIMARY and at most one "
                                              f"SECONDARY, got {roles}"))
        if "ip-based" in policies:
            collections = {r.cidr.collection for r in group if r.cidr is not None}
            if len(collections) > 1:
                problems.append(RecordProblem((name, rtype, ""), f"IP-based records of one name and type reference "
                                              f"{len(collections)} collections (Route 53 requires one)"))
            named = [r.cidr.location for r in group if r.cidr is not None]
            for loc in sorted({x for x in named if named.count(x) > 1}):
                problems.append(RecordProblem((name, rtype, ""), f"CIDR location {loc!r} has more than one record"))
        if len(group) > MAX_SAME_NAME_TYPE:
            message = f"{len(group)} records with the same name and type (max {MAX_SAME_NAME_TYPE})"
            problems.append(RecordProblem((name, rtype, ""), message))
    for name, types in names_types.items():
        if "CNAME" in types and len(types) > 1:
            problems.append(RecordProblem((name, "CNAME", ""), "CNAME beside other record types"))
    problems += _location_problems(locations, records, max_blocks)
    if len(records) > max_records:
        problems.append(RecordProblem((zone, "*", ""), f"{len(records)} records exceed the zone quota of {max_records}"))
    if problems:
        raise Route53ValidationError(problems)


def _location_problems(locations: list[Record], records: list[Record], max_blocks: int | None) -> list[RecordProblem]:
    """The collection's locations (pseudo-records): valid blocks, no block twice, within the quotas, and every
    location answered by a record (Route 53 documents no answer for a location without one) and back."""
    problems: list[RecordProblem] = []
    owner: dict[str, str] = {}
    total = 0
    for loc in locations:
        label = pseudo_label(loc.name)
        if not LOCATION_NAME.fullmatch(label):
            problems.append(RecordProblem(loc.key, f"CIDR location name {label!r} is not 1-16 of [0-9A-Za-z_-]"))
        if not 1 <= len(loc.values) <= MAX_BLOCKS_PER_LOCATION:
            problems.append(RecordProblem(loc.key, f"{len(loc.values)} blocks (a location holds 1-{MAX_BLOCKS_PER_LOCATION})"))
        total += len(loc.values)
        for block in loc.values:
            try:
                network = ipaddress.ip_network(block)
            except ValueError:
                problems.append(RecordProblem(loc.key, f"not a CIDR block (or host bits set): {block!r}"))
                continue
            if not 1 <= network.prefixlen <= MAX_CIDR_PREFIX[network.version]:
                problems.append(RecordProblem(loc.key, f"{block}: IPv{network.version} blocks are /1-/{MAX_CIDR_PREFIX[network.version]}"))
            if block in owner:
                problems.append(RecordProblem(loc.key, f"{block} is also in location {owner[block]!r}"))
            owner[block] = label
    if max_blocks is not None and total > max_blocks:
        problems.append(RecordProblem(("collection", CIDR_TYPE, ""), f"{total} blocks exceed the stack's quota of {max_blocks}"))
    listed = {pseudo_label(loc.name) for loc in locations}
    referenced = {location_label(r.cidr.location) for r in records if r.cidr is not None and not r.cidr.is_default}
    for missing in sorted(referenced - listed):
        problems.append(RecordProblem(("collection", CIDR_TYPE, missing), "an IP-based record names a location the collection lacks"))
    for unanswered in sorted(listed - referenced):
        problems.append(RecordProblem(("collection", CIDR_TYPE, unanswered), "a location no IP-based record answers"))
    return problems


def validate_batch(batch: Iterable[Change]) -> None:
    batch = list(batch)
    values = sum(c.values for c in batch)
    chars = sum(c.chars for c in batch)
    problems = []
    if values > MAX_BATCH_VALUES:
        problems.append(RecordProblem(("batch", "", ""), f"{values} values (UPSERT counted twice) exceed {MAX_BATCH_VALUES}"))
    if chars > MAX_BATCH_CHARS:
        problems.append(RecordProblem(("batch", "", ""), f"{chars} characters exceed {MAX_BATCH_CHARS}"))
    if problems:
        raise Route53ValidationError(problems)
