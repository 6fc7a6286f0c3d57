"""Route 53 per client cell: IP-based routing (a CIDR collection) for the cells whose networks are known.

    <service>                       A     IP-based: a record per chosen cell's location -> alias <cell>.cell.<zone>
                                          and the default location '*'                   -> alias world.geo.<zone>
    world.geo.<zone>                A     geolocation per continent: the country tree of route53_compile, moved here
    <cell>.cell.<zone>              A     the cell's failover chain, as <cc>.cc's: <N>.f.<cell>.cell.<zone> its levels,
    <center>.p.<cell>.cell.<zone>   A     weighted: the cell's answer edges, their address for that center
    <location>._cidr.<zone>         CIDR  the collection's location and its blocks (a pseudo-record: records.CIDR_TYPE)

Why this shape (AWS Route 53 Developer Guide, checked 2026-11-26):
- IP-based and geolocation records cannot share a name and type; the documented way to combine them
  ("Moving geolocation routing to IP-based routing") recreates the geolocation tree under a new name and points
  the IP-based default ('*') record at it. A client whose network no location holds gets the country tree, as
  before, and fails closed as before (no default record anywhere in it).
- All IP-based records of one name and type reference one collection; blocks are IPv4 /1-/24 and IPv6 /1-/48,
  and a query prefix longer than a block matches it (a /24 block holds its /32 clients).
- At most 100 records of one name and type: 99 cells beside the default.
AWS documents no quota for collections, locations or blocks; the stack's `route53` block bounds them
(globalaccel.settings.Route53Settings).

Which cells: not a country's principal cell (the country tree already answers for it), not in a country whose
rule never serves it; by demand times distance from the principal cell (what the country's answer costs
them grows with both) per block they take, while their blocks fit the collection. The choice depends only on the
topology and the network database, never on the routing table: the collection changes when they do, not
every cycle.

Residency: a cell's location holds only the networks both the city database and the country dataset place in
the cell's country. A network where the country dataset also names another country is left to the default
(the geolocation tree, Route 53's own placement, as before): no location answers it with a path one of its
countries may not take. A chosen cell without an answer (its centers lost, a rule that refuses every center
left) has its record alias the geolocation tree, as the default does: its country's record there fails
closed the same way. Route 53 documents no answer for a location with no record, so every location has one:
a publish removes a location's blocks before its record, and adds a new location's blocks just before the
request that writes its record (a record may only name a location that exists, and a location holds at
least one block). Between those two requests its clients get what Route 53 gives a location without a
record: the default (the country tree) or no answer, both lawful.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from globalaccel.answers import Answers, Served
from globalaccel.dns.records import CIDR_SUFFIX, CIDR_TYPE, Cidr, Record
from globalaccel.geo import great_circle_km
from globalaccel.locate import NetworkMap, locator_for
from globalaccel.topology import Topology

LOCATION_NAME = re.compile(r"[0-9A-Za-z_\-]{1,16}")
MAX_BLOCK_PREFIX = {4: 24, 6: 48}
CIDR_LOCATION_LIMIT = 99  # records of one name and type beside the default


def location_name(cell_id: str) -> str:
    """The cell's location in the collection: its id when that is a valid name (1-16 of [0-9A-Za-z_-]), else
    a stable digest of it."""
    if LOCATION_NAME.fullmatch(cell_id):
        return cell_id
    return "h" + hashlib.sha256(cell_id.encode()).hexdigest()[:15]


def collection_name(topology: Topology) -> str:
    return topology.route53.collection or f"globalaccel-{topology.stack}"


@dataclass(frozen=True)
class CidrSelection:
    """The cells Route 53 answers by network, and the collection's content."""

    collection: str  # the collection's name (the backend maps it to the id the zone's records hold)
    cells: tuple[str, ...]  # cell ids, most valuable per block first
    blocks: Mapping[str, tuple[str, ...]]  # cell id -> its blocks (CIDR text), in address order
    considered: int  # cells that could have been chosen
    blocks_left_out: int  # single-country networks of considered cells not chosen (no room)
    shared_networks_left_out: int  # networks two countries' datasets disagree on: always left to the default

    def location(self, cell_id: str) -> str:
        return location_name(cell_id)

    @property
    def block_count(self) -> int:
        return sum(len(b) for b in self.blocks.values())


def select_cidr_cells(topology: Topology, networks: NetworkMap) -> CidrSelection:
    settings = topology.route53
    principal = topology.principal_cell
    cells = topology.cell_by_id
    served_somewhere = {code for code in topology.countries
                        if not topology.residency.eligibility(code, set(topology.center_ids), topology.center_ids).fail_closed}
    own: dict[str, list[ipaddress.IPv4Network | ipaddress.IPv6Network]] = {}
    shared = 0
    for family in (4, 6):
        for text, location in networks.ranges(family):
            if location.cell is None or location.cell not in cells:
                continue
            if location.countries != (cells[location.cell].country,):
                shared += 1  # the datasets disagree: left to the default, never answered as one country's
                continue
            network = ipaddress.ip_network(text)
            if network.prefixlen > MAX_BLOCK_PREFIX[family]:
                continue  # Route 53 takes no longer block: a longer network matches the default, as before
            own.setdefault(location.cell, []).append(network)
    candidates: list[tuple[float, str, tuple[str, ...]]] = []
    for cell_id, nets in own.items():
        cell = cells[cell_id]
        home = cells[principal[cell.country]]
        if cell_id == home.id or cell.country not in served_somewhere:
            continue
        v4 = [n for n in nets if n.version == 4]
        v6 = [n for n in nets if n.version == 6]
        collapsed = [*ipaddress.collapse_addresses(v4), *ipaddress.collapse_addresses(v6)]
        value = cell.demand * great_circle_km(cell.lat, cell.lon, home.lat, home.lon)
        candidates.append((value, cell_id, tuple(str(n) for n in collapsed)))
    candidates.sort(key=lambda c: (-c[0] / max(1, len(c[2])), c[1]))
    chosen: list[str] = []
    blocks: dict[str, tuple[str, ...]] = {}
    used = left_out = 0
    limit = min(settings.cidr_cells, CIDR_LOCATION_LIMIT)
    for value, cell_id, cell_blocks in candidates:
        if value <= 0 or len(chosen) >= limit or used + len(cell_blocks) > settings.cidr_blocks:
            left_out += len(cell_blocks)
            continue
        chosen.append(cell_id)
        blocks[cell_id] = cell_blocks
        used += len(cell_blocks)
    return CidrSelection(collection_name(topology), tuple(chosen), blocks, len(candidates), left_out, shared)


_SELECTIONS: dict[str, CidrSelection] = {}


def routes_by_network(topology: Topology) -> bool:
    """Whether the stack's Route 53 zone routes cells by network (and needs its CIDR collection)."""
    return topology.route53.cidr_cells > 0 and topology.client_networks is not None


def cidr_selection(topology: Topology) -> CidrSelection | None:
    """The stack's selection, or None when its zone routes by geolocation alone (`route53.cidrCells: 0`, or no
    network database to know cells' networks by). Reading the database takes seconds and the loop, the audit
    and `plan` all ask: kept in memory, and on disk under a key of everything it depends on (the database's
    bytes, the country dataset's version, the cells, the settings, the rules' fail-closed countries, this
    module's code), so a change to any of them computes it afresh."""
    if not routes_by_network(topology) or topology.client_networks is None:
        return None
    key = _selection_key(topology, topology.client_networks)
    if key in _SELECTIONS:
        return _SELECTIONS[key]
    cached = _cache_dir() / f"cidr-selection-{key}.json"
    selection: CidrSelection | None = None
    if cached.is_file():
        try:
            data = json.loads(cached.read_text(encoding="utf-8"))
            selection = CidrSelection(data["collection"], tuple(data["cells"]), {k: tuple(v) for k, v in data["blocks"].items()},
                                      data["considered"], data["blocks_left_out"], data["shared_networks_left_out"])
        except (OSError, ValueError, KeyError, TypeError):
            selection = None  # an unreadable cache entry is recomputed (and rewritten) below, never trusted
    if selection is None:
        networks = locator_for(topology)
        assert isinstance(networks, NetworkMap)
        selection = select_cidr_cells(topology, networks)
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            partial = cached.with_suffix(f".{os.getpid()}.tmp")
            partial.write_text(json.dumps({**asdict(selection), "blocks": dict(selection.blocks)}), encoding="utf-8")
            partial.replace(cached)
        except OSError:
            pass  # a read-only home: computed again next time, same result
    _SELECTIONS[key] = selection
    return selection


def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "globalaccel"


def _selection_key(topology: Topology, database: Path) -> str:
    digest = hashlib.sha256()
    try:
        digest.update(hashlib.sha256(database.read_bytes()).digest())
    except OSError:
        digest.update(str(database).encode())  # missing: locator_for names it when the selection is computed
    digest.update(Path(__file__).read_bytes())
    digest.update(_iptocc_version().encode())
    fail_closed = sorted(code for code in topology.countries
                         if topology.residency.eligibility(code, set(topology.center_ids), topology.center_ids).fail_closed)
    digest.update(json.dumps([topology.stack, asdict(topology.route53), fail_closed, sorted(topology.principal_cell.items()),
                              [(c.id, c.country, c.lat, c.lon, c.demand) for c in topology.cells]]).encode())
    return digest.hexdigest()[:32]


def _iptocc_version() -> str:
    from importlib.metadata import version

    return version("iptocc")


def location_label(location: str) -> str:
    """A location's label among the pseudo-records: its name in lower case (records' names are DNS names), and,
    when the name has capitals (never one the compiler writes), a digest of the exact name after it. Route 53's
    location names are case-sensitive: two differing only in case stay two records, never one hiding the other."""
    low = location.lower()
    return low if location == low else f"{low}.{hashlib.sha256(location.encode()).hexdigest()[:8]}"


def location_pseudo_name(location: str, zone: str) -> str:
    return f"{location_label(location)}.{CIDR_SUFFIX}.{zone}"


def pseudo_label(name: str) -> str:
    """The location label of a pseudo-record's name (location_label)."""
    return name.split(f".{CIDR_SUFFIX}.", 1)[0]


def location_records(selection: CidrSelection, zone: str) -> list[Record]:
    """The collection's content as pseudo-records (records.CIDR_TYPE), one per location."""
    return [Record(location_pseudo_name(selection.location(c), zone), CIDR_TYPE, tuple(sorted(selection.blocks[c])), None)
            for c in selection.cells]


def service_records(selection: CidrSelection, answers: Answers, service: str, cell_head: Mapping[str, str],
                    geo_root: str) -> list[Record]:
    """The IP-based records at the service name: each chosen cell's location to its chain (or to the
    geolocation tree when it has no answer or no chain), the default to the geolocation tree."""
    out = [Record(service, "A", (), None, set_id="cidr-default", alias=geo_root, cidr=Cidr(selection.collection, "*"))]
    for cell_id in selection.cells:
        head = cell_head.get(cell_id) if isinstance(answers.cell(cell_id), Served) else None
        out.append(Record(service, "A", (), None, set_id=f"cidr-{cell_id}", alias=head or geo_root,
                          cidr=Cidr(selection.collection, selection.location(cell_id))))
    return out
