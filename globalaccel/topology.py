"""The world globalaccel models, loaded from `stacks/` and validated all-or-nothing.

A stack file is a Pulumi stack config (`stacks/Pulumi.<stack>.yaml`); our keys live under the
`global-accel:` namespace so the same file drives `pulumi up`, the control loop and the auditor.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from globalaccel.cells import Cell, cluster_cells, country_cells, load_places, principal_cells
from globalaccel.errors import ConfigError, ProblemCollector
from globalaccel.iso3166 import COUNTRY_CODES
from globalaccel.residency import ResidencyPolicy, Role
from globalaccel.residency_file import load_residency
from globalaccel.settings import (
    CellSettings,
    IacSettings,
    LatencySettings,
    LoopSettings,
    ProbeSettings,
    Route53Settings,
    RoutingSettings,
    from_stack,
)
from globalaccel.sourcefile import Located, load_yaml, read_csv

NAMESPACE = "global-accel"
BUILTIN_PLACES = "builtin"  # cells.places: the GeoNames places shipped in the package
CONTINENTS = ("AF", "AN", "AS", "EU", "NA", "OC", "SA")
_ID = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_HOSTNAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


@dataclass(frozen=True)
class Center:
    """A regional center node: where traffic ends and data is processed and stored."""

    id: str
    name: str
    region: str  # cloud region (AWS region name)
    lat: float
    lon: float
    address: str
    country: str = ""  # jurisdiction (ISO 3166-1 alpha-2) where it processes and stores data
    capacity: float | None = None  # demand (people served) it may carry; None: unlimited


@dataclass(frozen=True)
class Edge:
    """An acceleration edge point. It forwards a client's traffic to a center; it stores nothing.

    Its jurisdiction is `country`. A `terminating` edge decrypts the traffic where it stands; a
    `transit` edge forwards the encrypted stream. The edge answers on one address per center: the
    address a DNS answer names decides the center the edge forwards to, so one answer fixes the whole
    path (client -> edge -> center), readable from live DNS and kept by any DNS fallback."""

    id: str
    city: str
    country: str
    lat: float
    lon: float
    capacity: float  # relative capacity units (Gbit/s in the shipped catalogs)
    address: str  # the edge's own address: probes and management
    role: Role = Role.TERMINATING
    center_addresses: tuple[tuple[str, str], ...] = ()  # (center id, address clients use to reach that center)

    @cached_property
    def _address_by_center(self) -> dict[str, str]:  # address_for runs for every answer of every cell and center
        return dict(self.center_addresses)

    def address_for(self, center: str) -> str:
        """The address a client uses to reach `center` through this edge (KeyError: none for that center)."""
        return self._address_by_center[center]


@dataclass(frozen=True)
class Country:
    code: str  # ISO 3166-1 alpha-2
    name: str
    continent: str  # Route 53 continent code
    lat: float  # population-weighted centroid
    lon: float
    population: int


@dataclass(frozen=True)
class Topology:
    stack: str
    zone: str  # DNS zone the controller owns
    service_name: str  # the FQDN users resolve
    centers: tuple[Center, ...]
    edges: tuple[Edge, ...]
    countries: Mapping[str, Country]
    cells: tuple[Cell, ...]
    residency: ResidencyPolicy
    routing: RoutingSettings
    latency: LatencySettings
    source_files: tuple[str, ...]
    raw_config: Mapping[str, Any]  # every stack config key, plain, for the IaC program
    probe: ProbeSettings = field(default_factory=ProbeSettings)
    loop: LoopSettings = field(default_factory=LoopSettings)  # the control loop's settings from the stack file
    iac: IacSettings = field(default_factory=IacSettings)  # what `pulumi up` needs beyond the world
    client_networks: Path | None = None  # the city-level network database (MaxMind DB format), when the stack names one
    route53: Route53Settings = field(default_factory=Route53Settings)  # how the Route 53 zone locates clients

    @cached_property
    def center_by_id(self) -> dict[str, Center]:
        return {c.id: c for c in self.centers}

    @cached_property
    def cell_by_id(self) -> dict[str, Cell]:
        return {c.id: c for c in self.cells}

    @cached_property
    def principal_cell(self) -> dict[str, str]:
        """Country -> the cell whose answer stands for it where clients are located only by country."""
        return principal_cells(self.cells)

    @cached_property
    def edge_by_id(self) -> dict[str, Edge]:
        return {e.id: e for e in self.edges}

    @property
    def center_ids(self) -> tuple[str, ...]:
        return tuple(c.id for c in self.centers)

    @cached_property
    def path_by_address(self) -> dict[str, tuple[Edge, str]]:
        """Answer address -> (edge, center it forwards to): how live DNS is read back into paths."""
        return {address: (e, center) for e in self.edges for center, address in e.center_addresses}


_COLLECTION_NAME = re.compile(r"[0-9A-Za-z_\-]{1,64}")


def stack_file(stacks_dir: Path, stack: str) -> Path:
    return stacks_dir / f"Pulumi.{stack}.yaml"


def _number(
    node: Located | None, file: Path, fld: str, problems: ProblemCollector, *, lo: float, hi: float, default: float | None = None,
    integer: bool = False,
) -> float | None:
    if node is None:
        if default is None:
            problems.add(file, None, fld, "is required")
        return default
    value = node.value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        problems.add(file, node.line, fld, f"must be {'an integer' if integer else 'a number'}; got {value!r}")
        return None
    if not lo <= value <= hi:
        problems.add(file, node.line, fld, f"must be between {lo:g} and {hi:g}; got {value!r}")
        return None
    return float(value)


def _text(node: Located | None, file: Path, fld: str, problems: ProblemCollector, line: int | None) -> str | None:
    if node is None:
        problems.add(file, line, fld, "is required")
        return None
    if not isinstance(node.value, str) or not node.value.strip():
        problems.add(file, node.line, fld, f"must be non-empty text; got {node.value!r}")
        return None
    return node.value.strip()


def _address(text: str, file: Path, line: int | None, fld: str, problems: ProblemCollector) -> str | None:
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        problems.add(file, line, fld, f"not an IP address: {text!r}")
        return None


def _parse_centers(node: Located | None, file: Path, problems: ProblemCollector) -> list[Center]:
    key = f"config.{NAMESPACE}:centers"
    if node is None or not isinstance(node.value, list) or len(node.value) < 2:
        # A center's health is judged by a quorum of the *other* centers' probers.
        problems.add(file, None if node is None else node.line, key, "must list at least two centers (each is judged by the others)")
        return []
    centers: list[Center] = []
    for i, item in enumerate(node.value):
        path = f"{key}[{i}]"
        if not isinstance(item.value, dict):
            problems.add(file, item.line, path, "must be a mapping")
            continue
        cid = _text(item.get("id"), file, f"{path}.id", problems, item.line)
        name = _text(item.get("name"), file, f"{path}.name", problems, item.line)
        region = _text(item.get("region"), file, f"{path}.region", problems, item.line)
        lat = _number(item.get("lat"), file, f"{path}.lat", problems, lo=-90, hi=90)
        lon = _number(item.get("lon"), file, f"{path}.lon", problems, lo=-180, hi=180)
        country = _text(item.get("country"), file, f"{path}.country", problems, item.line)
        if country is not None and not re.fullmatch(r"[A-Z]{2}", country):
            problems.add(file, item.get("country").line, f"{path}.country",
                         f"the center's jurisdiction must be an ISO 3166-1 alpha-2 code; got {country!r}")
            country = None
        addr_text = _text(item.get("address"), file, f"{path}.address", problems, item.line)
        addr_node = item.get("address")
        address = _address(addr_text, file, addr_node.line if addr_node else None, f"{path}.address", problems) if addr_text else None
        if cid is not None and not _ID.match(cid):
            problems.add(file, item.line, f"{path}.id", f"must be lowercase letters, digits and '-'; got {cid!r}")
            cid = None
        if cid and any(c.id == cid for c in centers):
            problems.add(file, item.line, f"{path}.id", f"duplicate center id {cid!r}")
            cid = None
        twin = next((c for c in centers if address is not None and c.address == address), None)
        if twin is not None:
            problems.add(file, addr_node.line if addr_node else item.line, f"{path}.address",
                         f"{address} is already center {twin.id}'s address: each center is probed at its own")
            address = None
        capacity = _number(item.get("capacity"), file, f"{path}.capacity", problems, lo=1, hi=1e12, default=float("inf"))
        if None not in (cid, name, region, lat, lon, address, country, capacity):
            centers.append(Center(cid, name, region, lat, lon, address, country,  # type: ignore[arg-type]
                                  None if capacity == float("inf") else capacity))
    return centers


def load_countries(file: Path, problems: ProblemCollector) -> dict[str, Country]:
    countries: dict[str, Country] = {}
    for row in read_csv(file, ("code", "name", "continent", "lat", "lon", "population")):
        f = row.fields
        code = f["code"].strip()
        if code not in COUNTRY_CODES:
            problems.add(file, row.line, "code", f"not an ISO 3166-1 alpha-2 code: {code!r}")
            continue
        if code in countries:
            problems.add(file, row.line, "code", f"duplicate country {code}")
            continue
        if f["continent"] not in CONTINENTS:
            problems.add(file, row.line, "continent", f"unknown continent {f['continent']!r}")
            continue
        lat = _csv_float(f["lat"], file, row.line, "lat", problems, -90, 90)
        lon = _csv_float(f["lon"], file, row.line, "lon", problems, -180, 180)
        pop = _csv_float(f["population"], file, row.line, "population", problems, 0, 1e10)
        if lat is None or lon is None or pop is None:
            continue
        countries[code] = Country(code, f["name"], f["continent"], lat, lon, int(pop))
    return countries


def _csv_float(text: str, file: Path, line: int, fld: str, problems: ProblemCollector, lo: float, hi: float) -> float | None:
    try:
        value = float(text)
    except ValueError:
        problems.add(file, line, fld, f"not a number: {text!r}")
        return None
    if not lo <= value <= hi or value != value:
        problems.add(file, line, fld, f"out of range [{lo:g}, {hi:g}]: {text}")
        return None
    return value


def _holder(address: str, seen: Mapping[str, int], holders: Mapping[str, str] | None = None) -> str:
    line = seen[address]
    if line == 0:
        return f"it is {(holders or {}).get(address, 'a center')}'s address"
    return f"first on line {line}"


def _center_addresses(text: str, centers: tuple[str, ...], file: Path, line: int, problems: ProblemCollector,
                      seen: dict[str, int], holders: Mapping[str, str]) -> tuple[tuple[str, str], ...] | None:
    """`us-east-1=198.18.0.2 eu-central-1=198.18.0.3 ...`: one address per center of the stack."""
    pairs: dict[str, str] = {}
    ok = True
    for item in text.split():
        center, sep, addr_text = item.partition("=")
        if not sep or center not in centers:
            problems.add(file, line, "addresses", f"{item!r}: expected CENTER=ADDRESS with a center of the stack ({', '.join(centers)})")
            ok = False
            continue
        if center in pairs:
            problems.add(file, line, "addresses", f"center {center} given twice")
            ok = False
            continue
        address = _address(addr_text, file, line, "addresses", problems)
        if address is not None and ":" in address:
            # Answers are A records (Route 53 weighted A, PowerDNS, the embedded server); AAAA is not served yet.
            problems.add(file, line, "addresses", f"{center}={address}: client addresses are IPv4 (answers are A records)")
            ok = False
        elif address is None:
            ok = False
        elif address in seen:
            problems.add(file, line, "addresses", f"duplicate address {address} ({_holder(address, seen, holders)})")
            ok = False
        else:
            seen[address] = line
            pairs[center] = address
    missing = [c for c in centers if c not in pairs]
    if ok and missing:
        problems.add(file, line, "addresses", f"no address for center {', '.join(missing)}: each edge needs one address per center")
        ok = False
    return tuple((c, pairs[c]) for c in centers) if ok else None


def load_edges(file: Path, countries: Mapping[str, Country], problems: ProblemCollector,
               centers: tuple[str, ...] = (), reserved: Mapping[str, str] = {}) -> list[Edge]:
    """The edge catalog. With `centers`, each row must give one client address per center. `reserved`
    maps addresses already taken (the centers') to who holds them: an edge may not reuse one."""
    edges: list[Edge] = []
    seen_ids: dict[str, int] = {}
    seen_addresses: dict[str, int] = dict.fromkeys(reserved, 0)  # line 0: not a catalog line; the message names the holder
    holders = dict(reserved)
    required = ("id", "city", "country", "lat", "lon", "capacity", "address") + (("role", "addresses") if centers else ())
    for row in read_csv(file, required):
        f = row.fields
        eid = f["id"].strip()
        ok = True
        if not _ID.match(eid):
            problems.add(file, row.line, "id", f"must be lowercase letters, digits and '-' (max 63); got {eid!r}")
            ok = False
        elif eid in seen_ids:
            problems.add(file, row.line, "id", f"duplicate edge id {eid!r} (first on line {seen_ids[eid]})")
            ok = False
        else:
            seen_ids[eid] = row.line
        country = f["country"].strip()
        if not country:
            problems.add(file, row.line, "country", "is empty: every edge needs its jurisdiction (ISO 3166-1 alpha-2)")
            ok = False
        elif countries and country not in countries:
            problems.add(file, row.line, "country", f"unknown country code {country!r}")
            ok = False
        lat = _csv_float(f["lat"], file, row.line, "lat", problems, -90, 90)
        lon = _csv_float(f["lon"], file, row.line, "lon", problems, -180, 180)
        capacity = _csv_float(f["capacity"], file, row.line, "capacity", problems, 1e-9, 1e9)
        address = _address(f["address"], file, row.line, "address", problems)
        if address is not None:
            if address in seen_addresses:
                problems.add(file, row.line, "address", f"duplicate address {address} ({_holder(address, seen_addresses, holders)})")
                ok = False
            else:
                seen_addresses[address] = row.line
        if not f["city"].strip():
            problems.add(file, row.line, "city", "is empty")
            ok = False
        role = Role.TERMINATING
        per_center: tuple[tuple[str, str], ...] | None = ()
        if centers:
            try:
                role = Role(f["role"].strip())
            except ValueError:
                problems.add(file, row.line, "role", f"must be transit or terminating; got {f['role']!r}")
                ok = False
            per_center = _center_addresses(f["addresses"], centers, file, row.line, problems, seen_addresses, holders)
        if ok and per_center is not None and None not in (lat, lon, capacity, address):
            edges.append(Edge(eid, f["city"].strip(), country, lat, lon, capacity, address, role, per_center))  # type: ignore[arg-type]
    if not edges and not problems.problems:
        problems.add(file, None, "rows", "the catalog has no edges")
    return edges


def _parse_routing(node: Located | None, file: Path, problems: ProblemCollector) -> RoutingSettings:
    key = f"config.{NAMESPACE}:routing"
    settings = from_stack(RoutingSettings, node, file, key, problems)
    if settings.max_answers < settings.answers and node is not None:
        problems.add(file, node.line, f"{key}.maxAnswers", f"must be at least answers ({settings.answers})")
    return settings


def _reject_unknown(node: Located, allowed: set[str], file: Path, key: str, problems: ProblemCollector) -> None:
    for name in sorted(set(node.value) - allowed):
        problems.add(file, node.value[name].line, f"{key}.{name}", f"unknown field; expected one of {', '.join(sorted(allowed))}")


def load_stack(stack: str, stacks_dir: Path = Path("stacks")) -> Topology:
    """Load `stacks/Pulumi.<stack>.yaml` and every file it names. Raises ConfigError naming file,
    line and field for every problem found; never returns a partially valid topology."""
    file = stack_file(stacks_dir, stack)
    if not file.exists():
        available = sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in stacks_dir.glob("Pulumi.*.yaml"))
        raise ConfigError.single(file, None, "stack", f"no such stack {stack!r}; available: {', '.join(available) or 'none'}")
    root = load_yaml(file)
    problems = ProblemCollector()
    config = root.get("config")
    if config is None or not isinstance(config.value, dict):
        raise ConfigError.single(file, root.line, "config", "a stack file needs a 'config' mapping")

    def key(name: str) -> Located | None:
        return config.get(f"{NAMESPACE}:{name}")

    zone = _text(key("zone"), file, f"config.{NAMESPACE}:zone", problems, config.line)
    service = _text(key("serviceName"), file, f"config.{NAMESPACE}:serviceName", problems, config.line)
    for fld, value, node in (("zone", zone, key("zone")), ("serviceName", service, key("serviceName"))):
        if value is not None and not _HOSTNAME.match(value.rstrip(".").lower()):
            problems.add(file, node.line if node else None, f"config.{NAMESPACE}:{fld}", f"not a DNS name: {value!r}")
    if zone and service and not (service.rstrip(".").lower() + ".").endswith("." + zone.rstrip(".").lower() + "."):
        problems.add(file, key("serviceName").line, f"config.{NAMESPACE}:serviceName",  # type: ignore[union-attr]
                     f"{service!r} is not inside the zone {zone!r} the controller owns")
    centers = _parse_centers(key("centers"), file, problems)
    routing = _parse_routing(key("routing"), file, problems)
    latency = from_stack(LatencySettings, key("latency"), file, f"config.{NAMESPACE}:latency", problems)
    if routing.hysteresis.steady_samples > latency.window:  # a median of more samples than a path keeps would be capped unseen
        hysteresis = key("routing").get("hysteresis") if key("routing") is not None else None  # type: ignore[union-attr]
        steady = hysteresis.get("steadySamples") if hysteresis is not None else None
        problems.add(file, steady.line if steady is not None else None, f"config.{NAMESPACE}:routing.hysteresis.steadySamples",
                     f"must be at most latency.window ({latency.window}): a path keeps no more samples; got "
                     f"{routing.hysteresis.steady_samples}")
    probe = from_stack(ProbeSettings, key("probe"), file, f"config.{NAMESPACE}:probe", problems)
    loop = from_stack(LoopSettings, key("loop"), file, f"config.{NAMESPACE}:loop", problems)
    iac = from_stack(IacSettings, key("iac"), file, f"config.{NAMESPACE}:iac", problems)
    route53 = from_stack(Route53Settings, key("route53"), file, f"config.{NAMESPACE}:route53", problems)
    if route53.collection is not None and not _COLLECTION_NAME.fullmatch(route53.collection):  # CreateCidrCollection's Name
        problems.add(file, key("route53").get("collection").line, f"config.{NAMESPACE}:route53.collection",  # type: ignore[union-attr]
                     f"{route53.collection!r} is not 1-64 of [0-9A-Za-z_-] (a Route 53 CIDR collection name)")
    cell_settings = from_stack(CellSettings, key("cells"), file, f"config.{NAMESPACE}:cells", problems)
    center_ids = {c.id for c in centers}
    for item in loop.peers:
        peer = item.partition("=")[0]
        if peer not in center_ids:
            problems.add(file, key("loop").line if key("loop") else None, f"config.{NAMESPACE}:loop.peers",  # type: ignore[union-attr]
                         f"{peer!r} is not a center of the stack")
    if iac.control_center is not None and iac.control_center not in {c.id for c in centers}:
        problems.add(file, key("iac").line if key("iac") else None, f"config.{NAMESPACE}:iac.controlCenter",  # type: ignore[union-attr]
                     f"unknown center {iac.control_center!r}")
    paths: dict[str, Path] = {}
    for name in ("countries", "edgeCatalog", "residency"):
        text = _text(key(name), file, f"config.{NAMESPACE}:{name}", problems, config.line)
        if text is not None:
            paths[name] = (stacks_dir / text).resolve()
    places_file: Path | None = None
    if cell_settings.places == BUILTIN_PLACES:
        places_file = Path(__file__).resolve().parent / "data" / "places.csv"  # package data: versioned with the code
    elif cell_settings.places is not None:
        paths["places"] = places_file = (stacks_dir / cell_settings.places).resolve()
        if not places_file.is_file():
            problems.add(file, key("cells").line, f"config.{NAMESPACE}:cells.places", f"no such file: {places_file}")  # type: ignore[union-attr]
    # The network database is data, not configuration: read by the self-hosted servers when they start
    # (globalaccel.locate.locator_for, which names this field if it is missing), never shipped in the stack's ConfigMap.
    networks_file = (stacks_dir / cell_settings.networks).resolve() if cell_settings.networks is not None else None
    problems.raise_if_any()

    countries = load_countries(paths["countries"], problems)
    problems.raise_if_any()
    for i, center in enumerate(centers):
        if center.country not in countries:
            problems.add(file, key("centers").value[i].get("country").line,  # type: ignore[union-attr]
                         f"config.{NAMESPACE}:centers[{i}].country", f"unknown country code {center.country!r}")
    edges = load_edges(paths["edgeCatalog"], countries, problems, tuple(c.id for c in centers),
                       {c.address: f"center {c.id}" for c in centers})
    problems.raise_if_any()
    residency = load_residency(paths["residency"], {c.id: c.country for c in centers}, countries)
    if places_file is not None:
        places = load_places(places_file, countries, problems)
        problems.raise_if_any()
        cells = cluster_cells(places, countries, cell_settings)
    else:
        cells = country_cells(countries)
    return Topology(
        stack=stack,
        zone=zone.rstrip(".").lower(),  # type: ignore[union-attr]
        service_name=service.rstrip(".").lower(),  # type: ignore[union-attr]
        centers=tuple(centers),
        edges=tuple(edges),
        countries=countries,
        cells=cells,
        residency=residency,
        routing=routing,
        latency=latency,
        source_files=(str(file), *(str(p) for p in paths.values())),
        raw_config=config.plain(),
        probe=probe,
        loop=loop,
        iac=iac,
        client_networks=networks_file,
        route53=route53,
    )
