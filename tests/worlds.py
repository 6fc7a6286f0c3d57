"""In-memory worlds for property tests: random centers, edges, countries and rules."""

from __future__ import annotations

import datetime as dt

from hypothesis import strategies as st

from globalaccel.residency import Mode, ResidencyPolicy, Rule
from globalaccel.settings import HysteresisSettings, LatencySettings, RoutingSettings
from globalaccel.topology import Cell, Center, Country, Edge, Topology

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
) -> Topology:
    center_objs = tuple(Center(f"c{i}", f"center {i}", f"region-{i}", lat, lon, f"10.0.0.{i + 1}") for i, (lat, lon) in enumerate(centers))
    codes = [f"{chr(65 + i // 26)}{chr(65 + i % 26)}" for i in range(len(countries))]
    country_objs = {code: Country(code, code, "EU", lat, lon, pop) for code, (lat, lon, pop) in zip(codes, countries, strict=True)}
    edge_objs = tuple(
        Edge(f"e{i}", f"city {i}", codes[ci % len(codes)], lat, lon, cap, f"10.1.{i // 250}.{i % 250 + 1}")
        for i, (lat, lon, cap, ci) in enumerate(edges)
    )
    rule_map = {
        code: Rule(f"rule-{code}", mode, tuple(f"c{j}" for j in allowed), "test", "test", REVIEWED)
        for code, (mode, allowed) in zip(codes, rules, strict=True)
    }
    policy = ResidencyPolicy(rule_map, Rule("default", Mode.OPEN, (), "test", "test", REVIEWED))
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
    return make_topology(centers, edges, countries, rules, answers=answers, max_answers=answers + draw(st.integers(0, 4)))
