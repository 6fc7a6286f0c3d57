"""Capacity: split each cell's demand over its answers within edge budgets.

Each healthy edge may carry its capacity share of the routed demand times the headroom. When the
best-k split overloads edges, the cells using them are re-placed greedily (largest demand first) over
up to `max_answers` edges; demand that still does not fit is carried over budget and reported as
overflow, never hidden.

Cells that hysteresis may hold on their current route are planned apart from the cells that must move (no
current route, or one that may not stay): the held routes stay in the budgets and the moving cells are placed in
the room really left; the holding cells' fresh routes are then planned together in what the moving cells leave,
as if every holding cell moved. Hysteresis decides who would switch, and `admit` lets through only the switches
that fit together with every cell that stays where it is. Planning every cell afresh and admitting every
switch hysteresis granted made a cell's fresh route count on room a held neighbour still used: one neighbour's
noise re-ordered the greedy, the neighbour stayed, the cell moved in anyway, and dozens of cells switched in
one cycle (prod, real loop: 36 % of cells per hour, no fault at all). Admitting switches one at a time instead
would lock two cells on each other's edges forever (each fits only once the other has left).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

from globalaccel.cells import Cell
from globalaccel.routing.greedy import place_in_order
from globalaccel.routing.route_costs import RouteColumns
from globalaccel.topology import Topology

SLIVER = 0.25  # room below this share of an answer's demand is taken only when nothing larger is left (see routing.greedy)
Route = tuple[tuple[str, ...], tuple[float, ...]]  # a cell's edges, best first, and each one's share of its demand


def id_ranks(cells: Sequence[Cell]) -> NDArray[np.intp]:
    """(N,) each cell's place in id order: ties between equal demands break by id, as in sorted(..., key=(-demand, id))."""
    ranks: NDArray[np.intp] = np.argsort(np.argsort(np.array([c.id for c in cells], dtype=object), kind="stable"))
    return ranks


class Allocation(NamedTuple):
    room: NDArray[np.float64]  # (E,) budget left per edge with the held routes and the placed ones in it
    limit: NDArray[np.float64]  # (E,) each edge's budget (0: not healthy)
    edges: NDArray[np.intp]  # (N, W) each cell's planned edges as catalog positions, best first, -1 after the last
    weights: NDArray[np.float64]  # (N, W) and each one's share of the cell's demand, 0 after the last

    def route(self, n: int, edge_ids: Sequence[str]) -> Route:
        """Cell n's planned route as ids and shares (built only for the cells that need one as objects)."""
        row = self.edges[n]
        count = int(np.count_nonzero(row >= 0))
        return tuple([edge_ids[i] for i in row[:count].tolist()]), tuple(self.weights[n, :count].tolist())


class CapacityPlanner:
    def __init__(self, topology: Topology, cells: Iterable[Cell]) -> None:
        self.cells: tuple[Cell, ...] = tuple(cells)
        self.settings = topology.routing
        self._edge_ids = tuple(e.id for e in topology.edges)
        self._edge_pos = {eid: i for i, eid in enumerate(self._edge_ids)}
        self._edge_capacity = np.array([e.capacity for e in topology.edges], dtype=np.float64)
        self._demand = np.array([c.demand for c in self.cells], dtype=np.float64)
        self._id_rank = id_ranks(self.cells)

    def budgets(self, healthy_idx: NDArray[np.intp], routable: NDArray[np.bool_]) -> dict[str, float]:
        """Each healthy edge may carry its capacity share of the routed demand, times the headroom."""
        total_capacity = float(self._edge_capacity[healthy_idx].sum()) if healthy_idx.size else 0.0
        total_demand = float(self._demand[routable].sum())
        if total_capacity <= 0:
            return {}
        scale = total_demand * self.settings.capacity_headroom / total_capacity
        return {self._edge_ids[i]: float(self._edge_capacity[i] * scale) for i in healthy_idx}

    def allocate(self, ranked: NDArray[np.intp], routable: NDArray[np.bool_], budget: Mapping[str, float],
                 holding: RouteColumns | None = None) -> Allocation:
        """Split each cell's demand over its answers: per cell, (its edges, each one's share), best first.
        `ranked`: (N, ranks) each cell's candidate edges (catalog positions), best first, -1 past its last.
        `holding`: the current routes of the cells hysteresis may keep on them (None: no cell has one).
        The cells that must move are placed first, around the held routes; then the holding cells are planned
        together in what is left. Each plan: unconstrained first (best k, equal shares); if that overloads edges,
        the cells using them are re-placed greedily, largest demand first, by rank within what budget the other
        cells leave."""
        limit = np.zeros(len(self._edge_ids))
        for e, value in budget.items():
            limit[self._edge_pos[e]] = value
        if holding is None or not holding.cells.size:
            room, edges, weights = self._place(ranked, routable, limit, limit)
            return Allocation(room, limit, edges, weights)
        held_load = self.carried(holding.cells, holding.edges, holding.weights)
        held = np.zeros(len(self.cells), dtype=bool)
        held[holding.cells] = True
        room, edges, weights = self._place(ranked, routable & ~held, limit - held_load, limit)
        _, planned_edges, planned_weights = self._place(ranked, routable & held, room + held_load, limit)
        edges[holding.cells], weights[holding.cells] = planned_edges[holding.cells], planned_weights[holding.cells]
        return Allocation(room, limit, edges, weights)

    def _place(self, ranked: NDArray[np.intp], routable: NDArray[np.bool_], limit: NDArray[np.float64],
               budget: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.intp], NDArray[np.float64]]:
        """The routable cells placed together within `limit` (per edge; what the held routes leave of `budget`,
        by which float rounding is judged): the room left, and their routes as arrays (see Allocation)."""
        k = self.settings.answers
        edge_ids = self._edge_ids
        top = ranked[:, :k]
        offered = (top >= 0) & routable[:, None]
        count = offered.sum(axis=1)
        share = 1.0 / np.maximum(count, 1)
        # Each edge's load from every cell's best-k split: summed in cell order, as a loop over cells would.
        flat = (self._demand * share)[:, None] * np.ones(top.shape[1])
        load_of = np.bincount(top[offered], weights=flat[offered], minlength=len(edge_ids))
        width = max(k, self.settings.max_answers)
        edges = np.full((len(self.cells), width), -1, dtype=np.intp)
        weights = np.zeros((len(self.cells), width))
        edges[:, : top.shape[1]] = np.where(offered, top, -1)
        weights[:, : top.shape[1]] = np.where(offered, share[:, None], 0.0)
        overloaded = load_of > limit + budget * 1e-9
        if not overloaded.any():
            return limit - load_of, edges, weights
        # Only cells that use an overloaded edge are re-placed; the others keep their best-k split, and their load
        # comes off the budgets first, in cell order (np.subtract.at applies each in turn, as a loop would).
        # Budgets by catalog position (0: not healthy).
        routed_mask = routable & (count > 0)
        on_overloaded = offered & overloaded[np.where(offered, top, 0)]
        moving_mask = routed_mask & on_overloaded.any(axis=1)
        staying = routed_mask & ~moving_mask
        remaining = limit.copy()
        stay_offered = offered & staying[:, None]
        np.subtract.at(remaining, top[stay_offered], flat[stay_offered])
        moving = np.flatnonzero(moving_mask)
        # Largest demand first, ties by cell id.
        moving = moving[np.lexsort((self._id_rank[moving], -self._demand[moving]))]
        out_edges = np.full((moving.size, width), -1, dtype=np.int64)
        out_shares = np.zeros((moving.size, width))
        out_count = np.zeros(moving.size, dtype=np.int64)
        place_in_order(np.ascontiguousarray(ranked[moving], dtype=np.int64), self._demand[moving], remaining, k,
                       self.settings.max_answers, SLIVER, out_edges, out_shares, out_count)
        edges[moving], weights[moving] = out_edges, out_shares
        return remaining, edges, weights

    def admit(self, allocation: Allocation, current: RouteColumns, fresh: RouteColumns,
              switching: NDArray[np.bool_]) -> NDArray[np.bool_]:
        """Of the switches hysteresis granted (`switching`, per row of `current` and `fresh`: the same cells),
        those that fit together with every cell that stays: all of them where, over the edges they touch, they
        add no demand beyond budgets in total; else the smallest (by demand) switch onto an edge that ends beyond
        its budget and beyond where it was is withdrawn, and again, until they add none. Judged together, so that
        two cells may trade places.

        Capacity before latency for a route that may stay: a cell whose edge congests in a region whose edges are all
        full stays until room appears (the old split let it move and reported the overrun). Letting switches from
        degraded edges through regardless was tried: on the real loop, measurement noise made enough routes look
        degraded that overflow rose to 7.7 % and 13.6 % of cells changed per hour (BENCHMARKS.md)."""
        rows = np.flatnonzero(switching).tolist()
        admitted = np.zeros(switching.shape, dtype=bool)
        if not rows:
            return admitted
        before, limit = allocation.room, allocation.limit
        demand = self._demand[current.cells]
        delta = {r: self._switch_delta(r, demand[r], current, fresh) for r in rows}
        after = before.copy()
        for change in delta.values():
            for e, d in change.items():
                after[e] -= d
        # Withdraw the smallest first: the plan placed the largest first.
        order = sorted(rows, key=lambda r: (demand[r], self.cells[int(current.cells[r])].id), reverse=True)
        touched = sorted({e for change in delta.values() for e in change})
        excess_before = math.fsum(max(0.0, -before[e]) for e in touched)
        tolerance = math.fsum(limit[e] + 1.0 for e in touched) * 1e-9
        while delta:
            # The switches left add no overflow in total over the edges they touch: admitted, even where one edge
            # ends further over than it was (a cell leaving an edge far over budget for one a little over).
            if math.fsum(max(0.0, -after[e]) for e in touched) <= excess_before + tolerance:
                break
            over = {e for e in touched if after[e] < min(before[e], 0.0) - (limit[e] + 1.0) * 1e-9}
            r = next((r for r in reversed(order) if r in delta and any(delta[r].get(e, 0.0) > 0 for e in over)),
                     next(r for r in reversed(order) if r in delta))
            for e, d in delta.pop(r).items():
                after[e] += d
        admitted[list(delta)] = True
        return admitted

    @staticmethod
    def _switch_delta(r: int, demand: float, current: RouteColumns, fresh: RouteColumns) -> dict[int, float]:
        """Demand row r's switch from its current route to its fresh one adds per edge (negative: takes off)."""
        change: dict[int, float] = {}
        for e, w in zip(fresh.edges[r].tolist(), fresh.weights[r].tolist(), strict=True):
            if e >= 0:
                change[e] = change.get(e, 0.0) + demand * w
        for e, w in zip(current.edges[r].tolist(), current.weights[r].tolist(), strict=True):
            if e >= 0:
                change[e] = change.get(e, 0.0) - demand * w
        return change

    def load(self, cells: NDArray[np.intp], edges: NDArray[np.intp], weights: NDArray[np.float64]) -> dict[str, float]:
        """Demand carried per edge by the routes served: `cells` (R,), their edges (R, M) as catalog positions
        (-1 padded) and shares (R, M). Summed in row order, as a loop over the routes would."""
        used = edges >= 0
        load = self.carried(cells, edges, weights)
        present = np.zeros(len(self._edge_ids), dtype=bool)
        present[edges[used]] = True
        return {self._edge_ids[i]: float(load[i]) for i in np.flatnonzero(present)}

    def carried(self, cells: NDArray[np.intp], edges: NDArray[np.intp], weights: NDArray[np.float64]) -> NDArray[np.float64]:
        """(E,) demand the routes put on each edge (catalog positions; -1 padding ignored), summed in row order."""
        used = edges >= 0
        carried = self._demand[cells][:, None] * weights
        return np.asarray(np.bincount(edges[used], weights=carried[used], minlength=len(self._edge_ids)), dtype=np.float64)
