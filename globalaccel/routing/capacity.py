"""Capacity: split each cell's demand over its answers within edge budgets.

Each healthy edge may carry its capacity share of the routed demand times the headroom. When the
best-k split overloads edges, the cells using them are re-placed greedily (largest demand first) over
up to `max_answers` edges; demand that still does not fit is carried over budget and reported as
overflow, never hidden.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
from numpy.typing import NDArray

from globalaccel.cells import Cell
from globalaccel.routing.table import CellRoute
from globalaccel.topology import Topology


class CapacityPlanner:
    def __init__(self, topology: Topology, cells: Iterable[Cell]) -> None:
        self.cells: tuple[Cell, ...] = tuple(cells)
        self.settings = topology.routing
        self._edge_ids = tuple(e.id for e in topology.edges)
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

    def allocate(
        self, ranked: list[NDArray[np.intp]], routable: NDArray[np.bool_], budget: Mapping[str, float]
    ) -> list[dict[str, float]]:
        """Split each cell's demand over its answers. Unconstrained first (best k, equal shares); if
        that overloads edges, the cells using them are re-placed greedily, largest demand first, by
        rank within what budget the other cells leave."""
        k = self.settings.answers
        edge_ids = self._edge_ids
        demand_of = self._demand.tolist()
        routed = np.nonzero(routable)[0].tolist()
        alloc: list[dict[str, float]] = [{} for _ in self.cells]
        load: dict[str, float] = {}
        for n in routed:
            top = ranked[n][:k].tolist()
            share = 1.0 / len(top)
            alloc[n] = {edge_ids[i]: share for i in top}
            for e in alloc[n]:
                load[e] = load.get(e, 0.0) + demand_of[n] * share
        overloaded = {e for e, v in load.items() if v > budget.get(e, 0.0) * (1 + 1e-9)}
        if not overloaded:
            return alloc
        # Only cells that use an overloaded edge are re-placed; the others keep their best-k split,
        # and their load comes off the budgets first.
        moving = [n for n in routed if not overloaded.isdisjoint(alloc[n])]
        moving_set = set(moving)
        remaining = dict(budget)
        for n in routed:
            if n not in moving_set:
                for e, share in alloc[n].items():
                    remaining[e] -= demand_of[n] * share
        max_answers = self.settings.max_answers
        for n in sorted(moving, key=lambda n: (-demand_of[n], self.cells[n].id)):
            demand = demand_of[n]
            candidates = ranked[n].tolist()
            per_answer = demand / min(k, len(candidates))
            left = demand
            taken: dict[str, float] = {}
            for i in candidates:
                if left <= demand * 1e-9 or len(taken) >= max_answers:
                    break
                eid = edge_ids[i]
                room = remaining.get(eid, 0.0)
                if room <= demand * 1e-9:
                    continue
                amount = min(room, per_answer, left)
                taken[eid] = amount
                remaining[eid] = room - amount
                left -= amount
            if not taken:  # every ranked edge is full: keep the best k and report the overflow
                top = candidates[:k]
                taken = {edge_ids[i]: demand / len(top) for i in top}
                left = 0.0
            if left > demand * 1e-9:
                # Demand that fits nowhere within max_answers goes over budget, pro rata, and shows up
                # as overflow in the table rather than silently.
                placed = sum(taken.values())
                taken = {e: v + left * v / placed for e, v in taken.items()}
            alloc[n] = {e: v / demand for e, v in taken.items()}
        return alloc

    def load(self, routes: Mapping[str, CellRoute]) -> dict[str, float]:
        demand = {c.id: c.demand for c in self.cells}
        load: dict[str, float] = {}
        for cid, route in routes.items():
            for a in route.answers:
                load[a.edge_id] = load.get(a.edge_id, 0.0) + demand[cid] * a.weight
        return load
