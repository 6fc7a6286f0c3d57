"""Costs of many routes at once: each answer's client -> edge -> center RTT, a route's weighted cost and its
measured noise, as arrays over cells (one row per route, answers padded to `max_answers`).

The router costs every cell's current and fresh route each cycle; one numpy pass over all of them replaces a
Python call per route and answer (prod: about 50 ms of a 0.3 s cycle, measured with cProfile).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from globalaccel.cells import Cell
from globalaccel.geo import EARTH_RADIUS_KM
from globalaccel.latency import PhysicsModel
from globalaccel.routing.compiled import kernel
from globalaccel.routing.table import CellState
from globalaccel.topology import Topology

LEG_CACHE_ENTRIES = 20_000_000  # (cell, edge) client legs kept, 16 bytes each; beyond it the cache starts over


class RouteColumns:
    """Routes as arrays: center position (R,), edge positions (R, M) padded with -1, weights (R, M) padded
    with 0, and the cells they belong to (R,)."""

    def __init__(self, cells: NDArray[np.intp], center: NDArray[np.intp], edges: NDArray[np.intp],
                 weights: NDArray[np.float64]) -> None:
        self.cells, self.center, self.edges, self.weights = cells, center, edges, weights

    def take(self, rows: NDArray[np.intp]) -> RouteColumns:
        """These rows only, in this order."""
        return RouteColumns(self.cells[rows], self.center[rows], self.edges[rows], self.weights[rows])

    @staticmethod
    def pick(first: RouteColumns, second: RouteColumns, use_second: NDArray[np.bool_]) -> RouteColumns:
        """Row by row, the route of `first` or of `second`, padded to the wider."""
        width = max(first.edges.shape[1], second.edges.shape[1])

        def widen(cols: RouteColumns) -> tuple[NDArray[np.intp], NDArray[np.float64]]:
            extra = width - cols.edges.shape[1]
            return (np.pad(cols.edges, ((0, 0), (0, extra)), constant_values=-1),
                    np.pad(cols.weights, ((0, 0), (0, extra)), constant_values=0.0))

        (edges_a, weights_a), (edges_b, weights_b) = widen(first), widen(second)
        take = use_second[:, None]
        return RouteColumns(np.where(use_second, second.cells, first.cells), np.where(use_second, second.center, first.center),
                            np.where(take, edges_b, edges_a), np.where(take, weights_b, weights_a))


class RouteCosts:
    """Per topology and cells: costs routes in bulk. Geometry is kept; latencies come with each call."""

    def __init__(self, topology: Topology, cells: Sequence[Cell]) -> None:
        self._center_pos = {c: i for i, c in enumerate(topology.center_ids)}
        self._edge_pos = {e.id: i for i, e in enumerate(topology.edges)}
        self._cell_ids = [c.id for c in cells]
        self._cell_lat, self._cell_lon = np.array([c.lat for c in cells], dtype=float), np.array([c.lon for c in cells], dtype=float)
        self._edge_lat = np.array([e.lat for e in topology.edges], dtype=float)
        self._edge_lon = np.array([e.lon for e in topology.edges], dtype=float)
        self._edge_count = len(topology.edges)
        self.width = max(1, topology.routing.max_answers)
        # Client legs computed so far: (cell position * edges + edge position), sorted, and each one's RTT.
        self._leg_physics: PhysicsModel | None = None
        self._leg_keys: NDArray[np.int64] = np.empty(0, dtype=np.int64)
        self._leg_values: NDArray[np.float64] = np.empty(0)

    def columns(self, cells: Sequence[int], routes: Sequence[CellState]) -> RouteColumns:
        """The routes (each with a center) of `cells`, as arrays."""
        width = max([self.width, *(len(r.edges) for r in routes)])
        edge_pos, center_pos = self._edge_pos, self._center_pos
        pad, zero = [-1] * width, [0.0] * width
        flat_edges: list[int] = []
        flat_weights: list[float] = []
        for cell, route in zip(cells, routes, strict=True):  # one flat list each, converted once: cheaper per row
            n = len(route.edges)
            if len(route.weights) != n:
                raise ValueError(f"cell {self._cell_ids[cell]}: {n} edges but {len(route.weights)} weights in its route")
            flat_edges += [edge_pos[e] for e in route.edges]
            flat_edges += pad[: width - n]
            flat_weights += route.weights
            flat_weights += zero[: width - n]
        edges = np.array(flat_edges, dtype=np.intp).reshape(len(routes), width)
        weights = np.array(flat_weights, dtype=np.float64).reshape(len(routes), width)
        center = np.array([center_pos[r.center] for r in routes if r.center is not None], dtype=np.intp)
        if center.size != len(routes):
            raise ValueError("every route costed must have a center")
        return RouteColumns(np.asarray(cells, dtype=np.intp), center, edges, weights)

    def client_leg(self, cells: NDArray[np.intp], edges: NDArray[np.intp], physics: PhysicsModel) -> NDArray[np.float64]:
        """(R, M) physics RTT from each cell to each of its edges, 0 where padded: PhysicsModel.rtt_ms itself,
        to the last bit (numpy's sin and cos are not libm's, and a last bit can tip a decision sitting exactly
        at the hysteresis margin). Each (cell, edge) pair is computed once and kept, sorted, for lookup in
        bulk: geometry never changes, and routes reuse the same pairs cycle after cycle."""
        if physics != self._leg_physics or self._leg_keys.size > LEG_CACHE_ENTRIES:
            self._leg_physics = physics
            self._leg_keys, self._leg_values = np.empty(0, dtype=np.int64), np.empty(0)
        used = edges >= 0
        wanted = (cells.astype(np.int64)[:, None] * self._edge_count + edges)[used]
        at = self._find(wanted)
        if (at < 0).any():
            new = np.unique(wanted[at < 0])
            cells_of, edges_of = new // self._edge_count, new % self._edge_count
            values = np.empty(new.size)
            physics_rtts(self._cell_lat[cells_of], self._cell_lon[cells_of], self._edge_lat[edges_of], self._edge_lon[edges_of],
                         EARTH_RADIUS_KM, physics.ms_per_km, physics.settings.overhead_ms, 2.0, values)
            keys = np.concatenate([self._leg_keys, new])
            order = np.argsort(keys, kind="stable")
            self._leg_keys, self._leg_values = keys[order], np.concatenate([self._leg_values, values])[order]
            at = self._find(wanted)
        out = np.zeros(edges.shape)
        out[used] = self._leg_values[at]
        return out

    def _find(self, keys: NDArray[np.int64]) -> NDArray[np.intp]:
        """Where each key is among the kept pairs; -1 where it is not kept."""
        at = np.searchsorted(self._leg_keys, keys)
        inside = at < self._leg_keys.size
        hit = np.zeros(keys.size, dtype=bool)
        hit[inside] = self._leg_keys[at[inside]] == keys[inside]
        return np.where(hit, at, -1)

    def per_answer(self, routes: RouteColumns, lookup: NDArray[np.float64], physics: PhysicsModel) -> NDArray[np.float64]:
        """(R, M) each answer's client -> edge -> center RTT, with `lookup` (C, E) as the edge's leg plus its
        own delay and `physics` for the client leg (the latency model's); 0 where padded."""
        legs = lookup[routes.center[:, None], np.where(routes.edges >= 0, routes.edges, 0)]
        return np.where(routes.edges >= 0, self.client_leg(routes.cells, routes.edges, physics) + legs, 0.0)

    def weighted(self, routes: RouteColumns, lookup: NDArray[np.float64], physics: PhysicsModel) -> NDArray[np.float64]:
        """(R,) each route's cost: its answers' RTTs weighted by their shares."""
        return _sum_in_order(routes.weights * self.per_answer(routes, lookup, physics))

    def noise(self, routes: RouteColumns, band: NDArray[np.float64]) -> NDArray[np.float64]:
        """(R,) each route's measured spread: its edge legs' noise bands (C, E), weighted like its cost."""
        bands = band[routes.center[:, None], np.where(routes.edges >= 0, routes.edges, 0)]
        return _sum_in_order(routes.weights * np.where(routes.edges >= 0, bands, 0.0))


@kernel
def physics_rtts(lat1: NDArray[np.float64], lon1: NDArray[np.float64], lat2: NDArray[np.float64], lon2: NDArray[np.float64],
                 radius_km: float, ms_per_km: float, overhead_ms: float, square: float, out: NDArray[np.float64]) -> None:
    """PhysicsModel.rtt_ms (geo.great_circle_km's haversine) for many pairs, compiled: the same operations in the same
    order, and the C library's sin, cos, asin, sqrt and pow as Python's math module and `**` call them, so each figure
    is the same to the last bit for coordinates within range, as topology and cells validate them
    (tests/test_route_costs.py). `square` must be 2.0: given at run time, so that the compiler cannot turn pow(x, 2)
    into x * x, which differs from the C library's pow in the last bit about once in a thousand (measured). In Python
    this was 0.25 s of an evaluation of 100,000 cells whose routes moved."""
    for i in range(out.size):
        p1, p2 = math.radians(lat1[i]), math.radians(lat2[i])
        dp = p2 - p1
        dl = math.radians(lon2[i] - lon1[i])
        h = math.pow(math.sin(dp / 2), square) + math.cos(p1) * math.cos(p2) * math.pow(math.sin(dl / 2), square)
        out[i] = 2 * radius_km * math.asin(min(1.0, math.sqrt(h))) * ms_per_km + overhead_ms


def _sum_in_order(terms: NDArray[np.float64]) -> NDArray[np.float64]:
    """Each row's sum, first column to last, as Python's sum() adds a route's answers (numpy's own reduction
    adds in another order: a last-bit difference that can tip a decision sitting exactly at the margin)."""
    out = np.zeros(terms.shape[0])
    for column in terms.T:
        out = out + column
    return out
