"""Compile Answers into a Route 53 record tree that stays within quota, fails over in the data plane
without the controller, and fails closed.

    <service>                   A  geolocation, one record per continent -> alias <continent>.geo.<zone>
    <continent>.geo.<zone>      A  geolocation, one record per country   -> alias <cc>.cc.<zone>
    <cc>.cc.<zone>              A  failover: PRIMARY  -> alias <cc>-<center 1>.cc  (health check of center 1)
                                             SECONDARY -> alias <cc>-fallback-1.cc
    <cc>-fallback-1.cc.<zone>   A  failover: PRIMARY  -> alias <cc>-<center 2>.cc  (health check of center 2)
                                             SECONDARY -> ... the last two centers of the chain side by side
    <cc>-<center>.cc.<zone>     A  weighted, one record per answer edge: its address *for that center*

~250 countries do not fit under one name (100 records with the same name and type), hence the tree;
every name stays far below 100 (the largest continent has 58 countries).

Static stability (the controller is not needed to survive a center loss). A country's chain lists the
center the controller chose, then every other center its rule allows (routing.fallback), each with the
center's Route 53 health check. The answer edges stay the same; their address for a center makes them
forward there, so the whole path follows the failover. Route 53's documented failover behaviour
(ResourceRecordSet.Failover): a healthy PRIMARY answers; an unhealthy PRIMARY gives way to a healthy
SECONDARY; an unhealthy SECONDARY gives the PRIMARY back regardless of its health (its fail-open). Every
record of every chain leads to an allowed center, so under any combination of health the answer is a
lawful path, or a path to a dead center (which the edge refuses: fail closed), never another one.

Failing closed: there is **no** default (`*`) record at any level, and the geolocation records do not
evaluate target health, so a country's record is never "unhealthy" and Route 53 never falls back from it
to a continent or default record. A client Route 53 cannot locate, or whose country has no record
(fail-closed and no-path countries), gets "no answer".

Set identifiers are unique across the zone (`DE-eu-central-1-de-berlin-1`, `EU-DE`, `EU`), not just per
name as Route 53 requires: they name what they select, and moto deletes by set identifier alone.
Compiled records name a center in `health_check`; the backend maps it to the center's check id.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from globalaccel.answers import Answers, FallbackPath, Served
from globalaccel.dns.ownership import ZoneOwnership
from globalaccel.dns.records import CIDR_SUFFIX, CIDR_TYPE, RECORD_TTL, Geo, Record, fqdn
from globalaccel.dns.route53_cells import CidrSelection, location_records, service_records
from globalaccel.dns.route53_validate import MAX_SAME_NAME_TYPE, ROUTE53_UNSUPPORTED_COUNTRIES, US_STATES
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
MAX_CHAIN = 16  # centers in one failover chain: far above any stack (4), bounds the depth order
RESERVED_RECORDS = 4  # the zone's SOA and NS, the ownership claim, the decision log's anchor


@dataclass(frozen=True)
class Route53Layout(ZoneOwnership):
    def continent_name(self, continent: str) -> str:
        return f"{continent.lower()}.geo.{self.zone}"

    @property
    def geo_root(self) -> str:
        """Where the continent records live when the service name routes by network (route53_cells)."""
        return f"world.geo.{self.zone}"

    def country_name(self, country: str) -> str:
        return f"{country.lower()}.cc.{self.zone}"

    def fallback_name(self, country: str, level: int) -> str:
        return f"{country.lower()}-fallback-{level}.cc.{self.zone}"

    def path_name(self, country: str, center: str) -> str:
        return f"{country.lower()}-{center.lower()}.cc.{self.zone}"

    def cell_name(self, cell_id: str) -> str:
        return f"{cell_id.lower()}.cell.{self.zone}"

    def cell_fallback_name(self, cell_id: str, level: int) -> str:
        return f"{level}.f.{cell_id.lower()}.cell.{self.zone}"

    def cell_path_name(self, cell_id: str, center: str) -> str:
        return f"{center.lower()}.p.{cell_id.lower()}.cell.{self.zone}"

    def owns(self, record: Record) -> bool:
        """The controller owns the service name, the geo/cc/cell subtrees, the CIDR collection's locations
        (pseudo-records) and its registry TXT record."""
        if record.name == self.owner_name:
            return record.type == "TXT"
        if record.type == CIDR_TYPE:
            return record.name.endswith(f".{CIDR_SUFFIX}.{self.zone}")
        if record.type != "A":
            return False
        return record.name == self.service or any(record.name.endswith(f".{sub}.{self.zone}") for sub in ("geo", "cc", "cell"))

    def depth(self, name: str) -> int:
        """Distance from the leaves: aliases must be created after, and deleted before, their targets. The
        ownership claim comes after everything: written in the last batch of a seed, it marks the seed done."""
        if name == self.owner_name:
            return MAX_CHAIN + 5
        for sub in ("cc", "cell"):
            if name.endswith(f".{sub}.{self.zone}"):
                return _chain_depth(name[: -len(f".{sub}.{self.zone}")], cell=sub == "cell")
        if name == self.geo_root:
            return MAX_CHAIN + 3
        if name.endswith(".geo." + self.zone):
            return MAX_CHAIN + 2
        return MAX_CHAIN + 4


def _chain_depth(label: str, cell: bool) -> int:
    """Weighted paths first, then the chain's levels deepest first (<cc>-fallback-3 before -2), its head last."""
    if cell:
        parts = label.split(".")
        if len(parts) == 3 and parts[1] == "p":
            return 0
        if len(parts) == 3 and parts[1] == "f":
            return 1 + MAX_CHAIN - int(parts[0])
        return MAX_CHAIN + 1
    if "-fallback-" in label:
        return 1 + MAX_CHAIN - int(label.rsplit("-", 1)[1])
    return MAX_CHAIN + 1 if "-" not in label else 0


def layout_for(topology: Topology) -> Route53Layout:
    return Route53Layout(fqdn(topology.zone), fqdn(topology.service_name), topology.stack)


def weights_to_route53(weights: list[float]) -> list[int]:
    """Table weights (shares summing to 1) -> Route 53 integer weights 1..255, proportional.
    Zero is never used: weight 0 means 'only if all are 0' in Route 53."""
    top = max(weights)
    return [max(1, min(MAX_WEIGHT, round(w / top * MAX_WEIGHT))) for w in weights]


def compile_route53(topology: Topology, answers: Answers, ttl: int = RECORD_TTL,
                    cells: CidrSelection | None = None) -> list[Record]:
    """The record tree for `answers` (the ownership claim is the registry's: globalaccel.dns.backend). With
    `cells` (route53_cells), the service name routes those cells by network and everyone else to the
    country tree, which then lives under world.geo. Each US state whose largest cell is not the country's
    principal gets that cell's chain by geolocation subdivision (the only subdivisions Route 53 supports)."""
    layout = layout_for(topology)
    records: list[Record] = []
    continents_used: set[str] = set()
    for code, served in answers.served_countries():
        # Fail-closed and no-path countries get no record, and there is no default anywhere to fall back to.
        if code in ROUTE53_UNSUPPORTED_COUNTRIES:
            continue  # Route 53 cannot place a client there: no record can exist, so it gets "no answer"
        records += _chain(served, code, layout.country_name(code), partial(layout.path_name, code),
                          partial(layout.fallback_name, code), ttl)
        for continent in TRANSCONTINENTAL.get(code, (topology.countries[code].continent,)):
            continents_used.add(continent)
            records.append(Record(layout.continent_name(continent), "A", (), None, set_id=f"{continent}-{code}",
                                  geo=Geo(country=code), alias=layout.country_name(code)))
    if not continents_used:
        return records  # nothing served anywhere: every client fails closed
    # The zone's quota: the country tree first; then the IP-based records, one per location and the default
    # (all or none: when they do not fit, the zone answers by geolocation alone and the collection empties);
    # then cells' chains while they fit, US states (each a whole state's clients) before the cells answered by
    # network. A state without a chain is answered by its country's record; a location without one leads to
    # the country tree, as the default does.
    room = topology.route53.max_records - RESERVED_RECORDS - len(records) - len(continents_used)
    locations = len(cells.cells) + 1 if cells is not None and cells.cells else 0
    by_network = 0 < locations <= room
    room -= locations if by_network else 0
    root = layout.geo_root if by_network else layout.service
    for continent in sorted(continents_used):
        records.append(Record(root, "A", (), None, set_id=continent, geo=Geo(continent=continent),
                              alias=layout.continent_name(continent)))
    heads: dict[str, str] = {}

    def add_chain(cell_id: str, extra: int = 0) -> bool:
        """The cell's chain (unless it is in already) and `extra` records more, when they fit the room left."""
        nonlocal room
        chain: list[Record] = []
        if cell_id not in heads:
            decision = answers.cell(cell_id)
            if not isinstance(decision, Served):
                return False
            chain = _chain(decision, cell_id, layout.cell_name(cell_id), partial(layout.cell_path_name, cell_id),
                           partial(layout.cell_fallback_name, cell_id), ttl)
        if len(chain) + extra > room:
            return False
        room -= len(chain) + extra
        records.extend(chain)
        heads[cell_id] = layout.cell_name(cell_id)
        return True

    us = topology.countries.get("US")
    if us is not None and isinstance(answers.country("US"), Served):
        # The states share their continent's name with its countries: at most 100 records of one name and type.
        free = MAX_SAME_NAME_TYPE - sum(1 for r in records if r.name == layout.continent_name(us.continent))
        for state, cell_id in state_cells(topology).items():
            if free > 0 and add_chain(cell_id, 1):
                free -= 1
                records.append(Record(layout.continent_name(us.continent), "A", (), None, set_id=f"{us.continent}-US-{state}",
                                      geo=Geo(country="US", subdivision=state), alias=layout.cell_name(cell_id)))
    if not by_network:
        return records
    assert cells is not None
    for cell_id in cells.cells:
        add_chain(cell_id)
    return [*records, *service_records(cells, answers, layout.service, heads, layout.geo_root), *location_records(cells, layout.zone)]


def state_cells(topology: Topology) -> dict[str, str]:
    """US state (USPS code) -> its cell with the most demand, for the states whose cell is not the country's
    principal cell (whose answer the country record already gives), most demand first."""
    principal = topology.principal_cell.get("US")
    largest: dict[str, tuple[float, str]] = {}
    for cell in topology.cells:
        if cell.country == "US" and cell.subdivision in US_STATES:
            best = largest.get(cell.subdivision)
            if best is None or cell.demand > best[0]:
                largest[cell.subdivision] = (cell.demand, cell.id)
    ranked = sorted(largest.items(), key=lambda kv: (-kv[1][0], kv[0]))
    return {state: cell_id for state, (_, cell_id) in ranked if cell_id != principal}


def _weighted(name: str, code: str, path: FallbackPath, ttl: int) -> list[Record]:
    weights = weights_to_route53([a.weight for a in path.answers])
    return [Record(name, "A", (a.address,), ttl, set_id=f"{code}-{path.center}-{a.edge_id}", weight=w)
            for a, w in zip(path.answers, weights, strict=True)]


def _chain(served: Served, code: str, head: str, path_name: Callable[[str], str], fallback_name: Callable[[int], str],
           ttl: int) -> list[Record]:
    """A chain under `head` (a country's or a cell's): one path per allowed center, failover records on the
    centers' checks. `code` prefixes the set identifiers, unique across the zone."""
    paths = served.paths
    if len(paths) == 1:  # the rule allows one center: nothing to fail over to, its path is the answer
        return _weighted(head, code, paths[0], ttl)
    if len(paths) > MAX_CHAIN:
        raise ValueError(f"{code}: {len(paths)} centers in one failover chain (at most {MAX_CHAIN})")
    out: list[Record] = []
    for path in paths:
        out += _weighted(path_name(path.center), code, path, ttl)

    def leg(name: str, role: str, level: int, target: str, check: str | None) -> Record:
        # Route 53 requires EvaluateTargetHealth on failover aliases; the targets hold no checks of their own
        # (weighted paths, always healthy; or the next level), so a leg's health is its center's check.
        return Record(name, "A", (), None, set_id=f"{code}-{level}-{role}", alias=target, health_check=check,
                      evaluate_target_health=True, failover=role)

    for level in range(len(paths) - 1):
        name = head if level == 0 else fallback_name(level)
        here = paths[level]
        out.append(leg(name, "PRIMARY", level, path_name(here.center), here.center))
        if level == len(paths) - 2:  # the last two centers stand side by side
            last = paths[-1]
            out.append(leg(name, "SECONDARY", level, path_name(last.center), last.center))
        else:  # the rest of the chain: healthy while any center below is (ETH), so no check of its own
            out.append(leg(name, "SECONDARY", level, fallback_name(level + 1), None))
    return out
