"""Capacity: split each cell's demand over its answers within edge budgets.

Each healthy edge may carry its capacity share of the routed demand times the headroom. When the
best-k split overloads edges, the cells using them are re-placed greedily (largest demand first) over
up to `max_answers` edges; demand that still does not fit is carried over budget and reported as
overflow, never hidden.

Cells that hysteresis may hold on their current route are not re-planned with everyone else: their current
routes stay where they are in the budgets, and each one's fresh route is the best it could take on its own,
with the room the others leave (its own current load freed). A switch it then earns on latency is admitted
only while that room is still there (`admit`). Planning every cell afresh, as if all would move, made the
routes of capacity-limited cells depend on which of their neighbours moved first: one neighbour's noise
re-ordered the greedy, freed an edge on paper that the held neighbour still used, and dozens of cells
switched in one cycle (prod, real loop: 36 % of cells per hour, no fault at all).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

from globalaccel.cells import Cell
from globalaccel.routing.route_costs import RouteColumns
from globalaccel.topology import Topology

Route = tuple[tuple[str, ...], tuple[float, ...]]  # a cell's edges, best first, and each one's share of its demand


class Allocation(NamedTuple):
    routes: list[Route]  # per cell; ((), ()) for a cell with nothing to place
    room: NDArray[np.float64]  # (E,) budget left per edge with the held routes and the placed ones in it
    limit: NDArray[np.float64]  # (E,) each edge's budget (0: not healthy)


class CapacityPlanner:
    def __init__(self, topology: Topology, cells: Iterable[Cell]) -> None:
        self.cells: tuple[Cell, ...] = tuple(cells)
        self.settings = topology.routing
        self._edge_ids = tuple(e.id for e in topology.edges)
        self._edge_pos = {eid: i for i, eid in enumerate(self._edge_ids)}
        self._edge_capacity = np.array([e.capacity for e in topology.edges], dtype=np.float64)
        self._demand = np.array([c.demand for c in self.cells], dtype=np.float64)

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
        The other routable cells are placed around them: unconstrained first (best k, equal shares); if that
        overloads edges, the cells using them are re-placed greedily, largest demand first, by rank within
        what budget the other cells leave. Then each holding cell gets the best route it could take alone."""
        limit = np.zeros(len(self._edge_ids))
        for e, value in budget.items():
            limit[self._edge_pos[e]] = value
        held_load = np.zeros(len(self._edge_ids))
        moving = routable
        if holding is not None and holding.cells.size:
            used = holding.edges >= 0
            carried = self._demand[holding.cells][:, None] * holding.weights
            held_load = np.asarray(np.bincount(holding.edges[used], weights=carried[used], minlength=len(self._edge_ids)),
                                   dtype=np.float64)
            moving = routable.copy()
            moving[holding.cells] = False
        routes, room = self._place(ranked, moving, limit - held_load, limit)
        if holding is not None and holding.cells.size:
            self._fit_alone(ranked, holding, room, limit, routes)
        return Allocation(routes, room, limit)

    def _place(self, ranked: NDArray[np.intp], routable: NDArray[np.bool_], limit: NDArray[np.float64],
               budget: NDArray[np.float64]) -> tuple[list[Route], NDArray[np.float64]]:
        """The routable cells placed together within `limit` (per edge; what the held routes leave of `budget`,
        by which float rounding is judged): their routes, and the room left."""
        k = self.settings.answers
        edge_ids = self._edge_ids
        demand_of = self._demand.tolist()
        top = ranked[:, :k]
        offered = (top >= 0) & routable[:, None]
        count = offered.sum(axis=1)
        share = 1.0 / np.maximum(count, 1)
        # Each edge's load from every cell's best-k split: summed in cell order, as a loop over cells would.
        flat = (self._demand * share)[:, None] * np.ones(top.shape[1])
        load_of = np.bincount(top[offered], weights=flat[offered], minlength=len(edge_ids))
        tops, shares, counts = top.tolist(), share.tolist(), count.tolist()
        alloc: list[Route] = [((), ())] * len(self.cells)
        routed = np.nonzero(routable & (count > 0))[0].tolist()
        for n in routed:
            alloc[n] = tuple([edge_ids[i] for i in tops[n][: counts[n]]]), (shares[n],) * counts[n]
        overloaded = {edge_ids[i] for i in np.flatnonzero(load_of > limit + budget * 1e-9)}
        if not overloaded:
            return alloc, limit - load_of
        # Only cells that use an overloaded edge are re-placed; the others keep their best-k split,
        # and their load comes off the budgets first. Budgets by catalog position (0: not healthy).
        moving = [n for n in routed if not overloaded.isdisjoint(alloc[n][0])]
        moving_set = set(moving)
        remaining = limit.tolist()
        edge_pos = self._edge_pos
        for n in routed:
            if n not in moving_set:
                for e, part in zip(*alloc[n], strict=True):
                    remaining[edge_pos[e]] -= demand_of[n] * part
        rows = dict(zip(moving, ranked[moving].tolist(), strict=True))
        max_answers = self.settings.max_answers
        for n in sorted(moving, key=lambda n: (-demand_of[n], self.cells[n].id)):
            alloc[n], taken = self._greedy_one(demand_of[n], [i for i in rows[n] if i >= 0], remaining.__getitem__, k, max_answers)
            for i, amount in taken.items():
                remaining[i] -= amount
        return alloc, np.array(remaining)

    def _fit_alone(self, ranked: NDArray[np.intp], holding: RouteColumns, room: NDArray[np.float64],
                   limit: NDArray[np.float64], routes: list[Route]) -> None:
        """Each holding cell's fresh route: the best it could take with every other cell where it is now (its own
        current load freed, `room` left untouched): its best k in equal shares where they fit, else the greedy
        of `_place` over its ranks. Cells are fitted independently; `admit` settles who gets contested room."""
        k = self.settings.answers
        edge_ids = self._edge_ids
        rows = holding.cells
        top = ranked[rows, :k]
        offered = top >= 0
        count = offered.sum(axis=1)
        demand = self._demand[rows]
        # Each holding cell's own current load on each of its best k edges.
        mine = (top[:, :, None] == holding.edges[:, None, :]) & offered[:, :, None]
        own = demand[:, None] * np.where(mine, holding.weights[:, None, :], 0.0).sum(axis=2)
        need = (demand / np.maximum(count, 1))[:, None]
        fits = ((need <= room[top] + own + limit[top] * 1e-9) | ~offered).all(axis=1)
        max_answers = self.settings.max_answers
        for j, n in enumerate(rows.tolist()):
            c = int(count[j])
            if c == 0:
                continue
            if fits[j] or demand[j] <= 0:
                routes[n] = tuple([edge_ids[i] for i in top[j, :c].tolist()]), (1.0 / c,) * c
                continue
            freed = {int(e): float(demand[j] * w) for e, w in zip(holding.edges[j].tolist(), holding.weights[j].tolist(),
                                                                  strict=True) if e >= 0}
            def room_alone(i: int, freed: dict[int, float] = freed) -> float:
                return float(room[i]) + freed.get(i, 0.0)

            routes[n], _ = self._greedy_one(float(demand[j]), [i for i in ranked[n].tolist() if i >= 0], room_alone, k,
                                            max_answers)

    def _greedy_one(self, demand: float, candidates: list[int], room_of: Callable[[int], float], k: int,
                    max_answers: int) -> tuple[Route, dict[int, float]]:
        """One cell's greedy split: by rank, at most its equal share of the best k per edge, within each edge's
        room, up to `max_answers` edges. Demand that fits nowhere goes over budget pro rata on the edges taken
        (reported as overflow in the table rather than hidden); every ranked edge full: its best k, over budget.
        Returns the route and the demand it puts on each edge (catalog positions)."""
        if demand <= 0:  # nothing to place: its best k, in equal shares (the split below divides by demand)
            best = candidates[:k]
            return (tuple([self._edge_ids[i] for i in best]), (1.0 / len(best),) * len(best)), {}
        per_answer = demand / min(k, len(candidates))
        left, tiny = demand, demand * 1e-9
        taken: dict[int, float] = {}
        # First pass: only edges with room for at least the share each of `max_answers` edges must carry for the
        # demand to fit. A sliver left on a nearly full edge would take one of the cell's few answers and carry
        # almost nothing: with measured latencies interleaving many cities' edges in the ranks, slivers filled
        # the answers of the largest cells and pushed 20 % of prod's demand over budget (0-20 ms of jitter).
        # Second pass: any room left, by rank, in the answers still free.
        for least in (demand / max_answers, tiny):
            for i in candidates:
                if left <= tiny or len(taken) >= max_answers:
                    break
                if i in taken:
                    continue
                room = room_of(i)
                if room <= tiny or room < min(least, left):
                    continue
                amount = min(room, per_answer, left)
                taken[i] = amount
                left -= amount
        if not taken:
            best = candidates[:k]
            taken = {i: demand / len(best) for i in best}
            left = 0.0
        if left > tiny:
            placed = sum(taken.values())
            taken = {i: v + left * v / placed for i, v in taken.items()}
        rank = {i: r for r, i in enumerate(candidates)}
        taken = dict(sorted(taken.items(), key=lambda item: rank[item[0]]))  # answers best first
        return (tuple([self._edge_ids[i] for i in taken]), tuple([v / demand for v in taken.values()])), taken

    def admit(self, allocation: Allocation, current: RouteColumns, fresh: RouteColumns,
              switching: NDArray[np.bool_]) -> NDArray[np.bool_]:
        """Of the switches hysteresis granted (`switching`, per row of `current` and `fresh`: the same cells),
        those the budgets still admit. Each fresh route was fitted as if no other cell moved, so two switches may
        have counted on the same room: taken largest demand first, a switch is admitted only if it adds no more
        overflow, over the edges it leaves and joins, than it would have added alone. (A switch that overflows
        even alone, off a congested edge into a full region, is the same as it would have been before anyone
        else moved: latency decides it, and the overflow is reported.)"""
        admitted = np.zeros(switching.shape, dtype=bool)
        rows = np.flatnonzero(switching)
        if not rows.size:
            return admitted
        start, limit = allocation.room, allocation.limit
        room = start.copy()
        demand = self._demand[current.cells]

        def added_excess(room_of: NDArray[np.float64], delta: dict[int, float]) -> float:
            return float(sum(max(0.0, d - room_of[e]) - max(0.0, -room_of[e]) for e, d in delta.items()))

        for r in sorted(rows.tolist(), key=lambda r: (-demand[r], self.cells[int(current.cells[r])].id)):
            delta: dict[int, float] = {}
            for e, w in zip(fresh.edges[r].tolist(), fresh.weights[r].tolist(), strict=True):
                if e >= 0:
                    delta[e] = delta.get(e, 0.0) + demand[r] * w
            for e, w in zip(current.edges[r].tolist(), current.weights[r].tolist(), strict=True):
                if e >= 0:
                    delta[e] = delta.get(e, 0.0) - demand[r] * w
            tolerance = demand[r] * 1e-9 + sum(limit[e] for e in delta) * 1e-9
            if added_excess(room, delta) <= added_excess(start, delta) + tolerance:
                admitted[r] = True
                for e, d in delta.items():
                    room[e] -= d
        return admitted

    def load(self, cells: NDArray[np.intp], edges: NDArray[np.intp], weights: NDArray[np.float64]) -> dict[str, float]:
        """Demand carried per edge by the routes served: `cells` (R,), their edges (R, M) as catalog positions
        (-1 padded) and shares (R, M). Summed in row order, as a loop over the routes would."""
        used = edges >= 0
        carried = self._demand[cells][:, None] * weights
        load = np.bincount(edges[used], weights=carried[used], minlength=len(self._edge_ids))
        present = np.zeros(len(self._edge_ids), dtype=bool)
        present[edges[used]] = True
        return {self._edge_ids[i]: float(load[i]) for i in np.flatnonzero(present)}
