"""The router: topology + residency + latency + health -> RoutingTable.

For every client cell it picks one center and the best k edges in front of it, minimising
client->edge + edge->center RTT, among healthy edges and the centers the cell's residency rule allows
(residency.eligibility decides; this module never re-derives residency). Strict cells with no healthy
allowed center fail closed: an empty answer, never another region.

Steps, each vectorised over cells:
1. candidate edges per cell: the nearest healthy edges by great circle (k-d tree on unit vectors);
   a lower bound proves the candidate list holds the true best `max_answers` edges, else the cell's
   full row is computed;
2. per center: cost of every candidate; the center is the allowed one with the cheapest best path;
3. capacity: each cell's demand is split over its answers; if an edge would carry more than its share
   (capacity / fleet capacity * demand * headroom), cells are re-placed greedily, largest first, and
   any demand that still does not fit is reported as overflow (never hidden);
4. hysteresis: a valid current route is only replaced when the new one is better by
   max(absolute ms, relative %) for N evaluations in a row, and not within the hold-down after a switch.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

import numpy as np
from numpy.typing import NDArray
from scipy.spatial import cKDTree

from globalaccel.geo import unit_vectors
from globalaccel.latency import LatencyModel
from globalaccel.residency import Eligibility
from globalaccel.topology import Cell, Topology

REASON_BEST = "best"
REASON_HELD = "held"  # hysteresis kept the current route
REASON_FALLBACK = "preferred_fallback"  # preferred centers all down, another center serves
REASON_FAIL_CLOSED = "fail_closed"  # strict rule, no healthy allowed center
REASON_NO_PATH = "no_healthy_path"  # no healthy center or edge at all


@dataclass(frozen=True)
class Answer:
    edge_id: str
    address: str
    weight: float  # share of the cell's demand sent to this edge
    rtt_ms: float  # estimated client -> edge -> center RTT


@dataclass(frozen=True)
class CellRoute:
    cell_id: str
    country: str
    center: str | None
    answers: tuple[Answer, ...]
    reason: str

    @property
    def rtt_ms(self) -> float | None:
        if not self.answers:
            return None
        return sum(a.weight * a.rtt_ms for a in self.answers)

    @property
    def edge_ids(self) -> tuple[str, ...]:
        return tuple(a.edge_id for a in self.answers)


@dataclass(frozen=True)
class Health:
    """What is up right now. The probe loop derives it with hysteresis and quorum."""

    edges: frozenset[str]
    centers: frozenset[str]

    @classmethod
    def all_up(cls, topology: Topology) -> Health:
        return cls(frozenset(e.id for e in topology.edges), frozenset(c.id for c in topology.centers))


@dataclass(frozen=True)
class CellState:
    """Hysteresis memory of one cell."""

    center: str | None
    edges: tuple[str, ...]
    weights: tuple[float, ...]
    pending: int = 0  # consecutive evaluations in which a clearly better route existed
    last_switch_at: float | None = None


@dataclass(frozen=True)
class RouterState:
    generation: int = 0
    content_hash: str = ""
    cells: Mapping[str, CellState] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        return {
            "generation": self.generation,
            "content_hash": self.content_hash,
            "cells": {
                k: {"center": v.center, "edges": list(v.edges), "weights": list(v.weights), "pending": v.pending,
                    "last_switch_at": v.last_switch_at}
                for k, v in sorted(self.cells.items())
            },
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> RouterState:
        cells_raw = data.get("cells", {})
        assert isinstance(cells_raw, dict)
        cells = {
            k: CellState(v["center"], tuple(v["edges"]), tuple(float(w) for w in v["weights"]), int(v["pending"]),
                         v["last_switch_at"])
            for k, v in cells_raw.items()
        }
        return cls(int(data.get("generation", 0)), str(data.get("content_hash", "")), cells)  # type: ignore[call-overload]


@dataclass(frozen=True)
class RoutingTable:
    """The central artifact: per cell, the center and ordered answers, and why. Versioned."""

    stack: str
    generation: int
    content_hash: str
    routes: Mapping[str, CellRoute]
    edge_load: Mapping[str, float]  # demand carried per edge
    edge_budget: Mapping[str, float]  # demand each edge may carry
    overflow: float  # demand carried beyond budgets, summed over edges

    def country_route(self, country: str) -> CellRoute | None:
        """The route of a country's country-level cell (its id is the country code)."""
        return self.routes.get(country)

    def fail_closed(self) -> list[str]:
        return sorted({r.country for r in self.routes.values() if r.reason == REASON_FAIL_CLOSED})


def table_hash(routes: Mapping[str, CellRoute]) -> str:
    """Hash of routing decisions only (not of the latency figures that change every cycle)."""
    canonical = [
        [cid, r.center, [[a.edge_id, round(a.weight, 6)] for a in r.answers]] for cid, r in sorted(routes.items())
    ]
    return hashlib.sha256(json.dumps(canonical, separators=(",", ":")).encode()).hexdigest()


@dataclass
class _Candidates:
    """Per (center, cell): healthy-edge indices (into the healthy subset) and costs, best first."""

    index: NDArray[np.intp]  # (C, N, L)
    cost: NDArray[np.float64]  # (C, N, L)


class Router:
    """Computes routing tables for one topology. Reuse it across cycles: it caches geometry."""

    def __init__(self, topology: Topology, cells: Iterable[Cell] | None = None) -> None:
        self.topology = topology
        self.cells: tuple[Cell, ...] = tuple(cells) if cells is not None else topology.cells
        self.settings = topology.routing
        self._center_ids = topology.center_ids
        self._edge_ids = tuple(e.id for e in topology.edges)
        self._edge_pos = {eid: i for i, eid in enumerate(self._edge_ids)}
        self._edge_xyz = unit_vectors(np.array([e.lat for e in topology.edges]), np.array([e.lon for e in topology.edges]))
        self._edge_capacity = np.array([e.capacity for e in topology.edges], dtype=np.float64)
        self._cell_xyz = unit_vectors(np.array([c.lat for c in self.cells]), np.array([c.lon for c in self.cells]))
        self._demand = np.array([c.demand for c in self.cells], dtype=np.float64)
        self._tree_cache: tuple[frozenset[int], cKDTree] | None = None

    # ----------------------------------------------------------------------------------------------
    def compute(
        self,
        latency: LatencyModel,
        health: Health | None = None,
        now: float = 0.0,
        state: RouterState | None = None,
    ) -> tuple[RoutingTable, RouterState]:
        """One evaluation. Pure: the same inputs give the same table and hash; `state` is not mutated."""
        topo = self.topology
        health = health or Health.all_up(topo)
        state = state or RouterState()
        healthy_idx = np.array([i for i, eid in enumerate(self._edge_ids) if eid in health.edges], dtype=np.intp)
        center_edge = latency.center_edge_ms(now)
        penalty = latency.edge_penalty_ms(now, center_edge)
        eligibility = self._eligibility(health)

        fresh_center: list[str | None] = [None] * len(self.cells)
        ranked: list[NDArray[np.intp]] = [np.empty(0, dtype=np.intp)] * len(self.cells)
        routable = np.zeros(len(self.cells), dtype=bool)
        if healthy_idx.size:
            cand = self._candidates(latency, healthy_idx, center_edge, penalty)
            allowed = np.zeros((len(self._center_ids), len(self.cells)), dtype=bool)
            for ci, center_id in enumerate(self._center_ids):
                allowed[ci] = [center_id in eligibility[c.country].centers for c in self.cells]
            best = np.where(allowed, cand.cost[:, :, 0], np.inf)
            choice = np.argmin(best, axis=0)  # first center wins ties: deterministic
            routable = np.isfinite(best[choice, np.arange(len(self.cells))])
            for n in np.nonzero(routable)[0]:
                ci = int(choice[n])
                fresh_center[n] = self._center_ids[ci]
                ranked[n] = healthy_idx[cand.index[ci, n]]

        budget = self._budgets(healthy_idx, routable)
        alloc = self._allocate(ranked, routable, budget)

        routes: dict[str, CellRoute] = {}
        new_cells: dict[str, CellState] = {}
        cost_lookup = center_edge + penalty[None, :]  # (C, E): edge leg plus the edge's own delay
        for pos, cell in enumerate(self.cells):
            elig = eligibility[cell.country]
            prev = state.cells.get(cell.id)
            center = fresh_center[pos]
            if not routable[pos] or center is None:
                reason = REASON_FAIL_CLOSED if elig.fail_closed else REASON_NO_PATH
                routes[cell.id] = CellRoute(cell.id, cell.country, None, (), reason)
                switched_at = now if prev is not None and prev.center is not None else (prev.last_switch_at if prev else None)
                new_cells[cell.id] = CellState(None, (), (), 0, switched_at)
                continue
            fresh = CellState(center, tuple(alloc[pos].keys()), tuple(alloc[pos].values()))
            fresh_cost = sum(w * c for w, c in zip(fresh.weights, self._costs(cell, fresh, cost_lookup, latency), strict=True))
            decided, reason = self._decide(cell, prev, fresh, fresh_cost, elig, health, now, cost_lookup, latency)
            if reason == REASON_BEST and center not in elig.tiers[0]:
                reason = REASON_FALLBACK
            assert decided.center is not None
            costs = self._costs(cell, decided, cost_lookup, latency)
            answers = tuple(
                Answer(e, topo.edge_by_id[e].address, w, c) for e, w, c in zip(decided.edges, decided.weights, costs, strict=True)
            )
            routes[cell.id] = CellRoute(cell.id, cell.country, decided.center, answers, reason)
            new_cells[cell.id] = decided

        load = self._load(routes)
        overflow = float(sum(max(0.0, load.get(e, 0.0) - budget.get(e, 0.0)) for e in load))
        digest = table_hash(routes)
        generation = state.generation + 1 if digest != state.content_hash else state.generation
        table = RoutingTable(topo.stack, generation, digest, routes, load, budget, overflow)
        return table, RouterState(generation, digest, new_cells)

    # ----------------------------------------------------------------------------------------------
    def _eligibility(self, health: Health) -> dict[str, Eligibility]:
        countries = {c.country for c in self.cells}
        return {
            code: self.topology.residency.eligibility(code, health.centers, self._center_ids) for code in countries
        }

    def _tree(self, healthy_idx: NDArray[np.intp]) -> cKDTree:
        key = frozenset(int(i) for i in healthy_idx)
        if self._tree_cache is None or self._tree_cache[0] != key:
            self._tree_cache = (key, cKDTree(self._edge_xyz[healthy_idx]))
        return self._tree_cache[1]

    def _candidates(
        self,
        latency: LatencyModel,
        healthy_idx: NDArray[np.intp],
        center_edge: NDArray[np.float64],
        penalty: NDArray[np.float64],
    ) -> _Candidates:
        physics = latency.physics
        n_healthy = healthy_idx.size
        need = min(self.settings.max_answers, n_healthy)
        width = min(n_healthy, max(32, 4 * self.settings.max_answers))
        chord, idx = self._tree(healthy_idx).query(self._cell_xyz, k=width)
        chord = np.asarray(chord, dtype=np.float64).reshape(len(self.cells), width)
        idx = np.asarray(idx, dtype=np.intp).reshape(len(self.cells), width)
        angle = 2.0 * np.arcsin(np.clip(chord / 2.0, 0.0, 1.0))
        client_leg = physics.rtt_from_angles(angle) + penalty[healthy_idx][idx]  # (N, L)
        edge_leg = center_edge[:, healthy_idx]  # (C, H)
        cost = client_leg[None, :, :] + edge_leg[:, idx]  # (C, N, L)
        order = np.argsort(cost, axis=2, kind="stable")
        idx_c = np.take_along_axis(np.broadcast_to(idx, cost.shape), order, axis=2)
        cost = np.take_along_axis(cost, order, axis=2)
        if width < n_healthy:
            # Any edge outside the candidate list is at least as far as the farthest candidate, so its
            # cost is at least that distance's RTT plus the cheapest edge leg. If the `need`-th best
            # candidate beats that bound the list is exact; otherwise compute the cell's full row.
            min_leg = (edge_leg + penalty[healthy_idx][None, :]).min(axis=1)  # (C,)
            bound = physics.rtt_from_angles(angle[:, -1])[None, :] + min_leg[:, None]  # (C, N)
            inexact = np.nonzero((cost[:, :, need - 1] > bound).any(axis=0))[0]
            if inexact.size:
                self._exact_rows(inexact, healthy_idx, latency, center_edge, penalty, idx_c, cost)
        return _Candidates(np.ascontiguousarray(idx_c), np.ascontiguousarray(cost))

    def _exact_rows(
        self,
        rows: NDArray[np.intp],
        healthy_idx: NDArray[np.intp],
        latency: LatencyModel,
        center_edge: NDArray[np.float64],
        penalty: NDArray[np.float64],
        idx_out: NDArray[np.intp],
        cost_out: NDArray[np.float64],
    ) -> None:
        width = idx_out.shape[2]
        cos = np.clip(self._cell_xyz[rows] @ self._edge_xyz[healthy_idx].T, -1.0, 1.0)
        client_leg = latency.physics.rtt_from_angles(np.arccos(cos)) + penalty[healthy_idx][None, :]  # (R, H)
        for ci in range(len(self._center_ids)):
            full = client_leg + center_edge[ci, healthy_idx][None, :]
            part = np.argpartition(full, width - 1, axis=1)[:, :width]
            part_cost = np.take_along_axis(full, part, axis=1)
            order = np.lexsort((part, part_cost), axis=1)
            idx_out[ci, rows] = np.take_along_axis(part, order, axis=1)
            cost_out[ci, rows] = np.take_along_axis(part_cost, order, axis=1)

    def _budgets(self, healthy_idx: NDArray[np.intp], routable: NDArray[np.bool_]) -> dict[str, float]:
        """Each healthy edge may carry its capacity share of the routed demand, times the headroom."""
        total_capacity = float(self._edge_capacity[healthy_idx].sum()) if healthy_idx.size else 0.0
        total_demand = float(self._demand[routable].sum())
        if total_capacity <= 0:
            return {}
        scale = total_demand * self.settings.capacity_headroom / total_capacity
        return {self._edge_ids[i]: float(self._edge_capacity[i] * scale) for i in healthy_idx}

    def _allocate(
        self, ranked: list[NDArray[np.intp]], routable: NDArray[np.bool_], budget: Mapping[str, float]
    ) -> list[dict[str, float]]:
        """Split each cell's demand over its answers. Unconstrained first (best k, equal shares); if
        that overloads any edge, place cells greedily, largest demand first, by rank within budget."""
        k = self.settings.answers
        alloc: list[dict[str, float]] = [{} for _ in self.cells]
        load: dict[str, float] = {}
        for n in np.nonzero(routable)[0]:
            top = ranked[n][:k]
            share = 1.0 / len(top)
            alloc[n] = {self._edge_ids[i]: share for i in top}
            for e in alloc[n]:
                load[e] = load.get(e, 0.0) + self._demand[n] * share
        if all(v <= budget.get(e, 0.0) * (1 + 1e-9) for e, v in load.items()):
            return alloc
        remaining = dict(budget)
        order = sorted(np.nonzero(routable)[0], key=lambda n: (-self._demand[n], self.cells[n].id))
        max_answers = self.settings.max_answers
        for n in order:
            demand = float(self._demand[n])
            per_answer = demand / min(k, len(ranked[n]))
            left = demand
            taken: dict[str, float] = {}
            for i in ranked[n]:
                if left <= demand * 1e-9 or len(taken) >= max_answers:
                    break
                eid = self._edge_ids[i]
                room = remaining.get(eid, 0.0)
                if room <= demand * 1e-9:
                    continue
                amount = min(room, per_answer, left)
                taken[eid] = amount
                remaining[eid] = room - amount
                left -= amount
            if not taken:  # every ranked edge is full: keep the best k and report the overflow
                top = ranked[n][:k]
                taken = {self._edge_ids[i]: demand / len(top) for i in top}
                left = 0.0
            if left > demand * 1e-9:
                # Demand that fits nowhere within max_answers goes over budget, pro rata, and shows up
                # as overflow in the table rather than silently.
                placed = sum(taken.values())
                taken = {e: v + left * v / placed for e, v in taken.items()}
            alloc[n] = {e: v / demand for e, v in taken.items()}
        return alloc

    def _load(self, routes: Mapping[str, CellRoute]) -> dict[str, float]:
        demand = {c.id: c.demand for c in self.cells}
        load: dict[str, float] = {}
        for cid, route in routes.items():
            for a in route.answers:
                load[a.edge_id] = load.get(a.edge_id, 0.0) + demand[cid] * a.weight
        return load

    def _still_valid(self, prev: CellState, elig: Eligibility, health: Health) -> bool:
        """A held route must still be allowed right now and fully healthy; otherwise it moves at once."""
        return prev.center in elig.centers and bool(prev.edges) and all(e in health.edges for e in prev.edges)

    def _decide(
        self,
        cell: Cell,
        prev: CellState | None,
        fresh: CellState,
        fresh_cost: float,
        elig: Eligibility,
        health: Health,
        now: float,
        cost_lookup: NDArray[np.float64],
        latency: LatencyModel,
    ) -> tuple[CellState, str]:
        """Hysteresis: keep a valid current route unless the fresh one is better by the margin for
        `consecutive` evaluations in a row and the hold-down since the last switch has passed."""
        hyst = self.settings.hysteresis
        if prev is None or prev.center is None:
            first_placement = prev is None  # a cell's first route is not a switch
            return replace(fresh, last_switch_at=None if first_placement else now), REASON_BEST
        if not self._still_valid(prev, elig, health):
            return replace(fresh, last_switch_at=now), REASON_BEST
        if (prev.center, prev.edges) == (fresh.center, fresh.edges):
            return replace(fresh, last_switch_at=prev.last_switch_at), REASON_BEST
        prev_cost = sum(w * c for w, c in zip(prev.weights, self._costs(cell, prev, cost_lookup, latency), strict=True))
        better = prev_cost - fresh_cost >= max(hyst.absolute_ms, hyst.relative * prev_cost)
        pending = prev.pending + 1 if better else 0
        held_down = prev.last_switch_at is not None and now - prev.last_switch_at < hyst.hold_down_s
        if better and pending >= hyst.consecutive and not held_down:
            return replace(fresh, last_switch_at=now), REASON_BEST
        return replace(prev, pending=pending), REASON_HELD

    def _costs(self, cell: Cell, route: CellState, cost_lookup: NDArray[np.float64], latency: LatencyModel) -> list[float]:
        """Estimated client -> edge -> center RTT of each answer of `route`, with current latencies."""
        assert route.center is not None
        ci = self._center_ids.index(route.center)
        out = []
        for edge_id in route.edges:
            edge = self.topology.edge_by_id[edge_id]
            client_leg = latency.physics.rtt_ms(cell.lat, cell.lon, edge.lat, edge.lon)
            out.append(float(client_leg + cost_lookup[ci, self._edge_pos[edge_id]]))
        return out
