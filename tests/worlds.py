"""In-memory worlds for property tests: random centers, edges, countries and rules."""

from __future__ import annotations

import datetime as dt

from hypothesis import strategies as st

from globalaccel.cells import Cell
from globalaccel.residency import Mode, ResidencyPolicy, Role, Rule
from globalaccel.settings import HysteresisSettings, LatencySettings, RoutingSettings
from globalaccel.topology import Center, Country, Edge, Topology

REVIEWED = dt.date(2026, 11, 25)
lat_st = st.floats(min_value=-85, max_value=85, allow_nan=False)
lon_st = st.floats(min_value=-180, max_value=180, allow_nan=False)


def make_topology(
    centers: list[tuple[float, float]],
    edges: list[tuple[float, float, float, int]],  # lat, lon, capacity, country index
    countries: list[tuple[float, float, int]],  # lat, lon, population
    rules: list[tuple[Mode, tuple[int, ...]]],  # per country: mode and allowed center indices
    answers: int = 4,
    max_answers: int = 8,
    headroom: float = 1.25,
    hysteresis: HysteresisSettings | None = None,
    paths: list[tuple[frozenset[int] | None, frozenset[int]]] | None = None,  # per country: terminate_in, never_transit (country indices)
    transit_edges: frozenset[int] = frozenset(),  # edge indices whose role is transit
    center_countries: list[int] | None = None,  # per center: the country index it stands in (jurisdiction)
) -> Topology:
    """A world in memory. Without `paths` every rule lets any edge on the path, as before edges had
    jurisdictions in the model."""
    codes = [f"{chr(65 + i // 26)}{chr(65 + i % 26)}" for i in range(len(countries))]
    center_objs = tuple(Center(f"c{i}", f"center {i}", f"region-{i}", lat, lon, f"10.0.0.{i + 1}",
                               codes[center_countries[i] % len(codes)] if center_countries else "")
                        for i, (lat, lon) in enumerate(centers))
    country_objs = {code: Country(code, code, "EU", lat, lon, pop) for code, (lat, lon, pop) in zip(codes, countries, strict=True)}
    edge_objs = tuple(
        Edge(f"e{i}", f"city {i}", codes[ci % len(codes)], lat, lon, cap, f"10.1.{i // 250}.{i % 250 + 1}",
             role=Role.TRANSIT if i in transit_edges else Role.TERMINATING,
             center_addresses=tuple((f"c{j}", f"10.{2 + j}.{i // 250}.{i % 250 + 1}") for j in range(len(centers))))
        for i, (lat, lon, cap, ci) in enumerate(edges)
    )
    def rule(n: int, mode: Mode, allowed: tuple[int, ...]) -> Rule:
        terminate, never = paths[n] if paths else (None, frozenset())
        return Rule(f"rule-{codes[n]}", mode, tuple(f"c{j}" for j in allowed), "test", "test", REVIEWED,
                    None if terminate is None else frozenset(codes[k % len(codes)] for k in terminate),
                    frozenset(codes[k % len(codes)] for k in never))

    rule_map = {code: rule(n, mode, allowed) for n, (code, (mode, allowed)) in enumerate(zip(codes, rules, strict=True))}
    jurisdictions = {c.id: c.country for c in center_objs if c.country}
    policy = ResidencyPolicy(rule_map, Rule("default", Mode.OPEN, (), "test", "test", REVIEWED), "", jurisdictions)
    cells = tuple(Cell(code, code, c.lat, c.lon, float(max(c.population, 1))) for code, c in sorted(country_objs.items()))
    return Topology(
        stack="test", zone="example.net", service_name="edge.example.net", centers=center_objs, edges=edge_objs,
        countries=country_objs, cells=cells, residency=policy,
        routing=RoutingSettings(answers, max_answers, headroom, hysteresis or HysteresisSettings()),
        latency=LatencySettings(), source_files=(), raw_config={},
    )


@st.composite
def worlds(draw: st.DrawFn, max_edges: int = 60) -> Topology:
    n_centers = draw(st.integers(1, 4))
    n_countries = draw(st.integers(1, 12))
    centers = [(draw(lat_st), draw(lon_st)) for _ in range(n_centers)]
    countries = [(draw(lat_st), draw(lon_st), draw(st.integers(0, 10_000_000))) for _ in range(n_countries)]
    n_edges = draw(st.integers(1, max_edges))
    edges = [(draw(lat_st), draw(lon_st), draw(st.sampled_from([10.0, 100.0, 400.0])), draw(st.integers(0, n_countries - 1)))
             for _ in range(n_edges)]
    rules = []
    for _ in range(n_countries):
        mode = draw(st.sampled_from(list(Mode)))
        allowed = tuple(sorted(draw(st.sets(st.integers(0, n_centers - 1), min_size=1 if mode is Mode.PREFERRED else 0))))
        rules.append((mode, allowed))
    answers = draw(st.integers(1, 4))
    # Whole-path residency: each rule may restrict where traffic is terminated and forbid jurisdictions
    # on the path; some edges only relay; centers stand in countries of the world.
    country_idx = st.integers(0, n_countries - 1)
    paths = [(draw(st.none() | st.frozensets(country_idx)), draw(st.frozensets(country_idx, max_size=2))) for _ in range(n_countries)]
    transit = draw(st.frozensets(st.integers(0, n_edges - 1)))
    center_countries = [draw(country_idx) for _ in range(n_centers)]
    return make_topology(centers, edges, countries, rules, answers=answers, max_answers=answers + draw(st.integers(0, 4)),
                         paths=paths, transit_edges=transit, center_countries=center_countries)
