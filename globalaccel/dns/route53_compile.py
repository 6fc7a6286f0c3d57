"""Compile Answers into a Route 53 record tree that stays within quota and fails closed.

    <service>                 A  geolocation, one record per continent      -> alias <continent>.geo.<zone>
    <continent>.geo.<zone>    A  geolocation, one record per country         -> alias <cc>.cc.<zone>
    <cc>.cc.<zone>            A  weighted, one record per answer edge (its IP, weight = capacity split)

~250 countries do not fit under one name (100 records with the same name and type), hence the tree;
every name stays far below 100 (the largest continent has 58 countries).

Set identifiers are unique across the zone (`DE-de-berlin-1`, `EU-DE`, `EU`), not just per name as
Route 53 requires: they name what they select, and moto deletes by set identifier alone.

Failing closed on Route 53: there is **no** default (`*`) record at any level and no health check on
any record. A client whose country has no record therefore gets Route 53's "no answer" for an
unmatched location, never another region's edge, and nothing can "fail open" because nothing is
health-checked. Strict countries that fail closed simply have no country record.
"""

from __future__ import annotations

from dataclasses import dataclass

from globalaccel.answers import Answers
from globalaccel.dns.ownership import ZoneOwnership
from globalaccel.dns.records import RECORD_TTL, Geo, Record, fqdn
from globalaccel.dns.route53_validate import ROUTE53_UNSUPPORTED_COUNTRIES
from globalaccel.topology import Topology

# Countries whose continent Route 53 may assign differently from GeoNames: their record is placed
# under every plausible continent name, so a mismatch cannot strand them. (Unused placements are
# harmless: a continent name is only reached by clients located on that continent.)
TRANSCONTINENTAL = {
    "RU": ("EU", "AS"), "TR": ("AS", "EU"), "KZ": ("AS", "EU"), "AZ": ("AS", "EU"), "GE": ("AS", "EU"),
    "AM": ("AS", "EU"), "CY": ("EU", "AS"), "EG": ("AF", "AS"), "PA": ("NA", "SA"), "TT": ("NA", "SA"),
    "AW": ("NA", "SA"), "CW": ("NA", "SA"), "BQ": ("NA", "SA"), "UM": ("OC", "NA"), "IO": ("AS", "AF"),
}
MAX_WEIGHT = 255


@dataclass(frozen=True)
class Route53Layout(ZoneOwnership):
    def continent_name(self, continent: str) -> str:
        return f"{continent.lower()}.geo.{self.zone}"

    def country_name(self, country: str) -> str:
        return f"{country.lower()}.cc.{self.zone}"

    def owns(self, record: Record) -> bool:
        """The controller owns the service name, the geo/cc subtrees and its registry TXT record."""
        if record.name == self.owner_name:
            return record.type == "TXT"
        if record.type != "A":
            return False
        return record.name == self.service or record.name.endswith(".geo." + self.zone) or record.name.endswith(".cc." + self.zone)

    def depth(self, name: str) -> int:
        """Distance from the leaves: aliases must be created after, and deleted before, their targets. The
        ownership claim comes after everything: written in the last batch of a seed, it marks the seed done."""
        if name == self.owner_name:
            return 3
        if name.endswith(".cc." + self.zone):
            return 0
        if name.endswith(".geo." + self.zone):
            return 1
        return 2


def layout_for(topology: Topology) -> Route53Layout:
    return Route53Layout(fqdn(topology.zone), fqdn(topology.service_name), topology.stack)


def weights_to_route53(weights: list[float]) -> list[int]:
    """Table weights (shares summing to 1) -> Route 53 integer weights 1..255, proportional.
    Zero is never used: weight 0 means 'only if all are 0' in Route 53."""
    top = max(weights)
    return [max(1, min(MAX_WEIGHT, round(w / top * MAX_WEIGHT))) for w in weights]


def compile_route53(topology: Topology, answers: Answers, ttl: int = RECORD_TTL) -> list[Record]:
    """The record tree for `answers` (the ownership claim is the registry's: globalaccel.dns.backend)."""
    layout = layout_for(topology)
    records: list[Record] = []
    continents_used: set[str] = set()
    for code, served in answers.served_countries():
        # Fail-closed and no-path countries get no record, and there is no default anywhere to fall back to.
        if code in ROUTE53_UNSUPPORTED_COUNTRIES:
            continue  # Route 53 cannot place a client there: no record can exist, so it gets "no answer"
        leaf = layout.country_name(code)
        for answer, weight in zip(served.answers, weights_to_route53([a.weight for a in served.answers]), strict=True):
            records.append(Record(leaf, "A", (answer.address,), ttl, set_id=f"{code}-{answer.edge_id}", weight=weight))
        for continent in TRANSCONTINENTAL.get(code, (topology.countries[code].continent,)):
            continents_used.add(continent)
            records.append(Record(layout.continent_name(continent), "A", (), None, set_id=f"{continent}-{code}",
                                  geo=Geo(country=code), alias=leaf))
    for continent in sorted(continents_used):
        records.append(Record(layout.service, "A", (), None, set_id=continent, geo=Geo(continent=continent),
                              alias=layout.continent_name(continent)))
    return records
