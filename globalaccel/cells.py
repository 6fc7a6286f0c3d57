"""Client cells: metro-level groups of clients, clustered from populated places within each country.

A cell never spans two countries (a country's residency rule is the cell's), nor two first-level
subdivisions (so a backend that routes by subdivision can still be given whole cells). Clustering is
greedy and deterministic: places in order of population each join the first cell whose seed lies within
`radiusKm`, or seed a new cell. A cell's demand is its places' population, scaled so that a country's
cells together carry the country's population (the rural share follows the towns). Countries with no
place keep one cell at their centroid, so every country is routed.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from globalaccel.errors import ProblemCollector
from globalaccel.geo import EARTH_RADIUS_KM, unit_vectors
from globalaccel.settings import CellSettings
from globalaccel.sourcefile import read_csv

if TYPE_CHECKING:
    from globalaccel.topology import Country


@dataclass(frozen=True)
class Cell:
    """A group of clients routed alike: a metro (or a whole country), never across a country border."""

    id: str
    country: str
    lat: float
    lon: float
    demand: float  # weight of traffic from this cell (population)
    name: str = ""
    subdivision: str = ""  # first-level subdivision (GeoNames admin1 code) where cells are split by it


@dataclass(frozen=True)
class Place:
    geonameid: int
    name: str
    country: str
    admin1: str
    lat: float
    lon: float
    population: int


def principal_cells(cells: Iterable[Cell]) -> dict[str, str]:
    """Country -> its principal cell: the one with the most demand (ties by id). Its answer stands for the
    whole country wherever clients are located only by country."""
    best: dict[str, Cell] = {}
    for cell in cells:
        held = best.get(cell.country)
        if held is None or (-cell.demand, cell.id) < (-held.demand, held.id):
            best[cell.country] = cell
    return {code: cell.id for code, cell in best.items()}


def load_places(file: Path, countries: Mapping[str, Country], problems: ProblemCollector) -> list[Place]:
    places: list[Place] = []
    seen: dict[int, int] = {}
    for row in read_csv(file, ("geonameid", "name", "country", "admin1", "lat", "lon", "population")):
        f = row.fields
        try:
            gid = int(f["geonameid"])
            lat, lon, pop = float(f["lat"]), float(f["lon"]), int(f["population"])
        except ValueError as exc:
            problems.add(file, row.line, "row", f"not a number: {exc}")
            continue
        if f["country"] not in countries:
            problems.add(file, row.line, "country", f"not a country of the stack: {f['country']!r}")
            continue
        if not (-90 <= lat <= 90 and -180 <= lon <= 180) or pop < 0:
            problems.add(file, row.line, "lat/lon/population", f"out of range: {lat}, {lon}, {pop}")
            continue
        if gid in seen:
            problems.add(file, row.line, "geonameid", f"duplicate of line {seen[gid]}")
            continue
        seen[gid] = row.line
        places.append(Place(gid, f["name"], f["country"], f["admin1"], lat, lon, pop))
    return places


def country_cells(countries: Mapping[str, Country]) -> tuple[Cell, ...]:
    """One cell per country at its population centroid (the coarsest granularity)."""
    return tuple(Cell(c.code, c.code, c.lat, c.lon, float(max(c.population, 1)), name=c.name)
                 for c in sorted(countries.values(), key=lambda c: c.code))


def cluster_cells(places: list[Place], countries: Mapping[str, Country], settings: CellSettings) -> tuple[Cell, ...]:
    """Metro cells: see the module docstring. Output order: country, then cell id."""
    # The seed test compares chords, not great circles: same order, no trigonometry per pair.
    max_chord = 2 * math.sin(settings.radius_km / EARTH_RADIUS_KM / 2)
    groups: dict[tuple[str, str], list[Place]] = defaultdict(list)
    for p in places:
        groups[(p.country, p.admin1 if settings.split_subdivisions else "")].append(p)
    members_by_country: dict[str, list[tuple[Place, list[Place]]]] = defaultdict(list)
    for (cc, _), group in sorted(groups.items()):
        group.sort(key=lambda p: (-p.population, p.geonameid))
        seeds: list[tuple[Place, tuple[float, float, float], list[Place]]] = []
        for place in group:
            v = _unit(place.lat, place.lon)
            for _seed, sv, members in seeds:
                if math.dist(sv, v) <= max_chord:
                    members.append(place)
                    break
            else:
                seeds.append((place, v, [place]))
        members_by_country[cc].extend((seed, members) for seed, _, members in seeds)
    cells: list[Cell] = []
    for code in sorted(countries):
        country = countries[code]
        clusters = members_by_country.get(code)
        if not clusters:
            cells.append(Cell(code, code, country.lat, country.lon, float(max(country.population, 1)), name=country.name))
            continue
        urban = sum(max(p.population, 1) for _, ms in clusters for p in ms)
        scale = max(country.population, 1) / urban  # GeoNames towns may count more or fewer people than the country
        for seed, ms in sorted(clusters, key=lambda c: c[0].geonameid):
            lat, lon = _centroid(ms)
            demand = scale * sum(max(p.population, 1) for p in ms)
            cells.append(Cell(f"{code.lower()}-{seed.geonameid}", code, lat, lon, demand, name=seed.name, subdivision=seed.admin1))
    return tuple(cells)


def _unit(lat: float, lon: float) -> tuple[float, float, float]:
    la, lo = math.radians(lat), math.radians(lon)
    return (math.cos(la) * math.cos(lo), math.cos(la) * math.sin(lo), math.sin(la))


def _centroid(places: list[Place]) -> tuple[float, float]:
    """Population-weighted centroid on the sphere (3-D mean: harmless across the antimeridian)."""
    weights = np.array([max(p.population, 1) for p in places], dtype=float)
    v = (unit_vectors(np.array([p.lat for p in places]), np.array([p.lon for p in places])) * weights[:, None]).sum(axis=0)
    return round(math.degrees(math.atan2(v[2], math.hypot(v[0], v[1]))), 4), round(math.degrees(math.atan2(v[1], v[0])), 4)
