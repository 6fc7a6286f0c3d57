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
from globalaccel.topology import Topology


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

    def allocate(
        self, ranked: NDArray[np.intp], routable: NDArray[np.bool_], budget: Mapping[str, float]
    ) -> list[tuple[tuple[str, ...], tuple[float, ...]]]:
        """Split each cell's demand over its answers: per cell, (its edges, each one's share), best first.
        `ranked`: (N, ranks) each cell's candidate edges (catalog positions), best first, -1 past its last.
        Unconstrained first (best k, equal shares); if that overloads edges, the cells using them are re-placed
        greedily, largest demand first, by rank within what budget the other cells leave."""
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
        alloc: list[tuple[tuple[str, ...], tuple[float, ...]]] = [((), ())] * len(self.cells)
        routed = np.nonzero(routable & (count > 0))[0].tolist()
        for n in routed:
            alloc[n] = tuple([edge_ids[i] for i in tops[n][: counts[n]]]), (shares[n],) * counts[n]
        limit = np.zeros(len(edge_ids))
        for e, value in budget.items():
            limit[self._edge_pos[e]] = value
        overloaded = {edge_ids[i] for i in np.flatnonzero(load_of > limit * (1 + 1e-9))}
        if not overloaded:
            return alloc
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
            demand = demand_of[n]
            candidates = [i for i in rows[n] if i >= 0]
            if demand <= 0:  # nothing to place: its best k, in equal shares (the split below divides by demand)
                alloc[n] = tuple([edge_ids[i] for i in candidates[:k]]), (1.0 / len(candidates[:k]),) * len(candidates[:k])
                continue
            per_answer = demand / min(k, len(candidates))
            left = demand
            tiny = demand * 1e-9
            taken: dict[int, float] = {}
            for i in candidates:
                if left <= tiny or len(taken) >= max_answers:
                    break
                room = remaining[i]
                if room <= tiny:
                    continue
                amount = min(room, per_answer, left)
                taken[i] = amount
                remaining[i] = room - amount
                left -= amount
            if not taken:  # every ranked edge is full: keep the best k and report the overflow
                best_k = candidates[:k]
                taken = {i: demand / len(best_k) for i in best_k}
                left = 0.0
            if left > tiny:
                # Demand that fits nowhere within max_answers goes over budget, pro rata, and shows up
                # as overflow in the table rather than silently.
                placed = sum(taken.values())
                taken = {i: v + left * v / placed for i, v in taken.items()}
            alloc[n] = tuple([edge_ids[i] for i in taken]), tuple([v / demand for v in taken.values()])
        return alloc

    def load(self, cells: NDArray[np.intp], edges: NDArray[np.intp], weights: NDArray[np.float64]) -> dict[str, float]:
        """Demand carried per edge by the routes served: `cells` (R,), their edges (R, M) as catalog positions
        (-1 padded) and shares (R, M). Summed in row order, as a loop over the routes would."""
        used = edges >= 0
        carried = self._demand[cells][:, None] * weights
        load = np.bincount(edges[used], weights=carried[used], minlength=len(self._edge_ids))
        present = np.zeros(len(self._edge_ids), dtype=bool)
        present[edges[used]] = True
        return {self._edge_ids[i]: float(load[i]) for i in np.flatnonzero(present)}
