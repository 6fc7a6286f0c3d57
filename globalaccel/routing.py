"""The router: topology + residency + latency + health -> RoutingTable.

For every client cell it picks one center and the best k edges in front of it, minimising
client->edge + edge->center RTT, among healthy edges and the centers the cell's residency rule allows
(residency.eligibility decides; this module never re-derives residency). Strict cells with no healthy
allowed center fail closed: an empty answer, never another region.

Steps, each vectorised over cells:
1. candidate edges per cell: small worlds score every healthy edge; large ones take the nearest
   healthy edges by great circle (k-d tree on unit vectors), and a lower bound proves the ball holds
   each allowed center's best path and the chosen center's best `max_answers` edges, else the ball
   widens and finally the cell's full row is scored;
2. the center is the allowed one with the cheapest best path;
3. capacity: each cell's demand is split over its answers; if an edge would carry more than its share
   (capacity / fleet capacity * demand * headroom), cells are re-placed greedily, largest first, and
   any demand that still does not fit is reported as overflow (never hidden);
4. hysteresis: a valid current route is only replaced when the new one is better by
   max(absolute ms, relative %) for N evaluations in a row, and not within the hold-down after a switch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

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


class Answer(NamedTuple):
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


class CellState(NamedTuple):
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
    """Hash of routing decisions only (not of the latency figures that change every cycle). Weights
    enter by their exact shortest repr: the same inputs give bit-identical weights."""
    digest = hashlib.sha256()
    for cid in sorted(routes):
        r = routes[cid]
        edges = " ".join(a.edge_id for a in r.answers)
        weights = " ".join(repr(a.weight) for a in r.answers)
        digest.update(f"{cid}\t{r.center}\t{edges}\t{weights}\n".encode())
    return digest.hexdigest()


# Ties (co-located edges have exactly equal costs) break by edge position: the key adds
# position * TIE_BREAK_MS, far above float rounding at these magnitudes (~1e-13 ms) and far below any
# RTT difference that matters, so every search path orders a cluster of equal edges the same way.
TIE_BREAK_MS = 1e-9
# Below this many (cell, edge) pairs a dense score of every edge beats k-d queries (measured on the
# prod stack: 249 x 3200 dense 24 ms, k-d path 41 ms); above it the k-d tree wins by far.
DENSE_LIMIT = 2_000_000
DENSE_CHUNK = 2_000  # rows per dense block: bounds memory at ~50 MB per (rows x edges) matrix


def _top_k(key: NDArray[np.float64], k: int) -> NDArray[np.intp]:
    """Positions of the k smallest keys along the last axis, in ascending order: O(n) selection,
    then a sort of only k entries. Keys already carry the position tie-break, so they are distinct."""
    if k < key.shape[-1]:
        part = np.argpartition(key, k - 1, axis=-1)[..., :k]
    else:
        part = np.broadcast_to(np.arange(key.shape[-1]), key.shape).copy()
    order = np.argsort(np.take_along_axis(key, part, axis=-1), axis=-1)
    return np.take_along_axis(part, order, axis=-1)


def _choose(best: NDArray[np.float64], allowed: NDArray[np.bool_], prefer: NDArray[np.intp] | None = None,
            margin: Callable[[NDArray[np.float64]], NDArray[np.float64]] | None = None) -> NDArray[np.intp]:
    """Per column, the allowed row with the smallest best cost; -1 where none is allowed. A column's
    preferred row (its current center) wins unless another is better by the hysteresis margin. The
    first center wins exact ties, so the choice is deterministic."""
    masked = np.where(allowed, best, np.inf)
    if prefer is not None and margin is not None:
        cols = np.nonzero(prefer >= 0)[0]
        rows = prefer[cols]
        keep = np.isfinite(masked[rows, cols])
        cols, rows = cols[keep], rows[keep]
        masked[rows, cols] = masked[rows, cols] - margin(masked[rows, cols])
    choice: NDArray[np.intp] = np.argmin(masked, axis=0).astype(np.intp)
    choice[~np.isfinite(masked[choice, np.arange(masked.shape[1])])] = -1
    return choice


class Router:
    """Computes routing tables for one topology. Reuse it across cycles: it caches geometry."""

    def __init__(self, topology: Topology, cells: Iterable[Cell] | None = None) -> None:
        self.topology = topology
        self.cells: tuple[Cell, ...] = tuple(cells) if cells is not None else topology.cells
        self.settings = topology.routing
        self._center_ids = topology.center_ids
        self._edge_ids = tuple(e.id for e in topology.edges)
        self._edge_pos = {eid: i for i, eid in enumerate(self._edge_ids)}
        self._center_xyz = unit_vectors(np.array([c.lat for c in topology.centers]), np.array([c.lon for c in topology.centers]))
        self._edge_xyz = unit_vectors(np.array([e.lat for e in topology.edges]), np.array([e.lon for e in topology.edges]))
        self._edge_capacity = np.array([e.capacity for e in topology.edges], dtype=np.float64)
        self._cell_xyz = unit_vectors(np.array([c.lat for c in self.cells]), np.array([c.lon for c in self.cells]))
        self._demand = np.array([c.demand for c in self.cells], dtype=np.float64)
        self._tree_cache: tuple[frozenset[int], cKDTree] | None = None
        self._client_leg: dict[tuple[int, int], float] = {}  # (cell, edge) physics RTT: geometry never changes

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
            allowed = np.zeros((len(self._center_ids), len(self.cells)), dtype=bool)
            for ci, center_id in enumerate(self._center_ids):
                allowed[ci] = [center_id in eligibility[c.country].centers for c in self.cells]
            prefer, prev_edges = self._sticky(state, healthy_idx)
            choice, ranked_idx, ranked_cost = self._select(latency, healthy_idx, center_edge, penalty, allowed, prefer)
            ranked_idx = self._favour_current_edges(choice, prefer, prev_edges, ranked_idx, ranked_cost)
            routable = choice >= 0
            for n in np.nonzero(routable)[0]:
                fresh_center[n] = self._center_ids[int(choice[n])]
                ranked[n] = healthy_idx[ranked_idx[n]]

        budget = self._budgets(healthy_idx, routable)
        alloc = self._allocate(ranked, routable, budget)

        routes: dict[str, CellRoute] = {}
        new_cells: dict[str, CellState] = {}
        cost_lookup = center_edge + penalty[None, :]  # (C, E): edge leg plus the edge's own delay
        addresses = {e.id: e.address for e in topo.edges}
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
            fresh_costs = self._costs(pos, fresh, cost_lookup, latency)
            fresh_cost = sum(w * c for w, c in zip(fresh.weights, fresh_costs, strict=True))
            decided, reason = self._decide(pos, prev, fresh, fresh_cost, elig, health, now, cost_lookup, latency)
            if reason == REASON_BEST and center not in elig.tiers[0]:
                reason = REASON_FALLBACK
            assert decided.center is not None
            same = decided.center == fresh.center and decided.edges == fresh.edges
            costs = fresh_costs if same else self._costs(pos, decided, cost_lookup, latency)
            answers = tuple(
                Answer(e, addresses[e], w, c) for e, w, c in zip(decided.edges, decided.weights, costs, strict=True)
            )
            routes[cell.id] = CellRoute(cell.id, cell.country, decided.center, answers, reason)
            new_cells[cell.id] = decided

        load = self._load(routes)
        # Excess within float rounding of the budget (the greedy fills edges exactly) is not overflow.
        overflow = float(sum(max(0.0, v - budget.get(e, 0.0) * (1 + 1e-9)) for e, v in load.items()))
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

    def _margin(self, cost: NDArray[np.float64]) -> NDArray[np.float64]:
        hyst = self.settings.hysteresis
        return np.maximum(hyst.absolute_ms, hyst.relative * cost)

    def _sticky(self, state: RouterState, healthy_idx: NDArray[np.intp]) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
        """Each cell's current center (-1 if none) and current edges as positions in the healthy
        subset (-1 padded). Candidate generation favours them by the hysteresis margin, so noise
        cannot reshuffle near-equal choices; whether to switch is then _decide's business."""
        position = np.full(len(self._edge_ids), -1, dtype=np.intp)
        position[healthy_idx] = np.arange(healthy_idx.size)
        center_pos = {c: i for i, c in enumerate(self._center_ids)}
        prefer = np.full(len(self.cells), -1, dtype=np.intp)
        prev_edges = np.full((len(self.cells), max(1, self.settings.max_answers)), -1, dtype=np.intp)
        for n, cell in enumerate(self.cells):
            prev = state.cells.get(cell.id)
            if prev is None or prev.center is None:
                continue
            prefer[n] = center_pos.get(prev.center, -1)
            for j, edge in enumerate(prev.edges[: prev_edges.shape[1]]):
                prev_edges[n, j] = position[self._edge_pos[edge]] if edge in self._edge_pos else -1
        return prefer, prev_edges

    def _favour_current_edges(self, choice: NDArray[np.intp], prefer: NDArray[np.intp], prev_edges: NDArray[np.intp],
                              ranked: NDArray[np.intp], cost: NDArray[np.float64]) -> NDArray[np.intp]:
        """Re-rank each cell's candidates with its current edges' costs lowered by the margin (only
        where the center stays the same)."""
        same = (choice >= 0) & (choice == prefer)
        if not same.any():
            return ranked
        # Padding is -1 and candidate positions are >= 0, so padding never matches.
        current = (ranked[:, :, None] == prev_edges[:, None, :]).any(axis=2) & same[:, None]
        adjusted = cost - np.where(current, self._margin(cost), 0.0)
        order = np.argsort(adjusted, axis=1, kind="stable")
        reranked: NDArray[np.intp] = np.take_along_axis(ranked, order, axis=1)
        return reranked

    def _select(
        self,
        latency: LatencyModel,
        healthy_idx: NDArray[np.intp],
        center_edge: NDArray[np.float64],
        penalty: NDArray[np.float64],
        allowed: NDArray[np.bool_],  # (C, N): may cell n use center c right now
        prefer: NDArray[np.intp] | None = None,  # (N,): each cell's current center, -1 if none
    ) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.float64]]:
        """Per cell: the chosen center (-1 when no allowed center is up) and its ranked candidate edges
        (positions in the healthy subset), ordered by (cost, position).

        The center is the allowed one with the cheapest best path, proven exactly. The first
        `max_answers` ranks are proven exact; ranks beyond them (only the capacity repair looks there)
        are the best of the cell's nearest-edge ball, in cost order."""
        n_cells, n_healthy = len(self.cells), healthy_idx.size
        keep = min(n_healthy, 4 * self.settings.max_answers)
        choice = np.full(n_cells, -1, dtype=np.intp)
        ranked = np.zeros((n_cells, keep), dtype=np.intp)
        ranked_cost = np.zeros((n_cells, keep), dtype=np.float64)
        prefer = prefer if prefer is not None else np.full(n_cells, -1, dtype=np.intp)
        rows = np.arange(n_cells)
        if n_cells * n_healthy > DENSE_LIMIT:
            width = min(n_healthy, max(64, 2 * keep))
            # Widen the nearest-edge ball only for the cells it cannot prove; whatever is still
            # unproven when the ball would cover a good part of the fleet is scored densely.
            while rows.size and width < n_healthy // 2:
                proven, c_sel, r_sel, k_sel = self._select_in_ball(rows, width, keep, healthy_idx, latency, center_edge, penalty,
                                                                   allowed, prefer)
                choice[rows[proven]] = c_sel[proven]
                ranked[rows[proven]] = r_sel[proven]
                ranked_cost[rows[proven]] = k_sel[proven]
                rows = rows[~proven]
                width *= 8
        for lo in range(0, rows.size, DENSE_CHUNK):
            chunk = rows[lo : lo + DENSE_CHUNK]
            choice[chunk], ranked[chunk], ranked_cost[chunk] = self._select_dense(chunk, keep, healthy_idx, latency, center_edge,
                                                                                  penalty, allowed, prefer)
        return choice, ranked, ranked_cost

    def _select_dense(
        self,
        rows: NDArray[np.intp],
        keep: int,
        healthy_idx: NDArray[np.intp],
        latency: LatencyModel,
        center_edge: NDArray[np.float64],
        penalty: NDArray[np.float64],
        allowed: NDArray[np.bool_],
        prefer: NDArray[np.intp],
    ) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.float64]]:
        """Score every healthy edge for `rows`: exact for every rank."""
        cos = np.clip(self._cell_xyz[rows] @ self._edge_xyz[healthy_idx].T, -1.0, 1.0)
        client_leg = latency.physics.rtt_from_angles(np.arccos(cos)) + penalty[healthy_idx][None, :]  # (R, H)
        positions = np.arange(healthy_idx.size)
        key_base = client_leg + positions * TIE_BREAK_MS
        best = np.full((len(self._center_ids), rows.size), np.inf)
        for ci in range(len(self._center_ids)):
            best[ci] = (key_base + center_edge[ci, healthy_idx][None, :]).min(axis=1)
        choice = _choose(best, allowed[:, rows], prefer[rows], self._margin)
        ranked = np.zeros((rows.size, keep), dtype=np.intp)
        ranked_cost = np.zeros((rows.size, keep), dtype=np.float64)
        for ci in np.unique(choice[choice >= 0]):
            mine = np.nonzero(choice == ci)[0]
            key = key_base[mine] + center_edge[ci, healthy_idx][None, :]
            ranked[mine] = _top_k(key, keep)
            ranked_cost[mine] = np.take_along_axis(key, ranked[mine], axis=1)
        return choice, ranked, ranked_cost

    def _select_in_ball(
        self,
        rows: NDArray[np.intp],
        width: int,
        keep: int,
        healthy_idx: NDArray[np.intp],
        latency: LatencyModel,
        center_edge: NDArray[np.float64],
        penalty: NDArray[np.float64],
        allowed: NDArray[np.bool_],
        prefer: NDArray[np.intp],
    ) -> tuple[NDArray[np.bool_], NDArray[np.intp], NDArray[np.intp], NDArray[np.float64]]:
        """Select among each cell's `width` nearest healthy edges; report which cells that proves."""
        chord, near = self._tree(healthy_idx).query(self._cell_xyz[rows], k=width, workers=-1)
        near = np.asarray(near, dtype=np.intp).reshape(rows.size, width)
        angle = 2.0 * np.arcsin(np.clip(np.asarray(chord, dtype=np.float64).reshape(rows.size, width) / 2.0, 0.0, 1.0))
        key_base = latency.physics.rtt_from_angles(angle) + penalty[healthy_idx][near] + near * TIE_BREAK_MS  # (R, W)
        bound = self._ball_bounds(rows, angle[:, -1], healthy_idx, latency, center_edge, penalty)  # (C, R)
        n_centers = len(self._center_ids)
        best = np.full((n_centers, rows.size), np.inf)
        proven = np.ones(rows.size, dtype=bool)
        allowed_rows = allowed[:, rows]
        for ci in range(n_centers):
            best[ci] = (key_base + center_edge[ci, healthy_idx][near]).min(axis=1)
            # Every allowed center's best path must be proven, or the center choice could be wrong.
            proven &= ~allowed_rows[ci] | (best[ci] < bound[ci] - 1e-9)
        choice = _choose(best, allowed_rows, prefer[rows], self._margin)
        ranked = np.zeros((rows.size, keep), dtype=np.intp)
        ranked_cost = np.zeros((rows.size, keep), dtype=np.float64)
        need = min(self.settings.max_answers, keep)
        for ci in np.unique(choice[choice >= 0]):
            mine = np.nonzero(choice == ci)[0]
            key = key_base[mine] + center_edge[ci, healthy_idx][near[mine]]
            order = _top_k(key, keep)
            ranked[mine] = np.take_along_axis(near[mine], order, axis=1)
            ranked_cost[mine] = np.take_along_axis(key, order, axis=1)
            need_key = ranked_cost[mine, need - 1]
            proven[mine] &= need_key < bound[ci, mine] - 1e-9
        return proven, choice, ranked, ranked_cost

    def _ball_bounds(
        self,
        rows: NDArray[np.intp],
        radius: NDArray[np.float64],  # (R,): angle from each cell to the farthest edge in its ball
        healthy_idx: NDArray[np.intp],
        latency: LatencyModel,
        center_edge: NDArray[np.float64],
        penalty: NDArray[np.float64],
    ) -> NDArray[np.float64]:
        """(C, R): a lower bound on the cost via center c of any edge outside the cell's ball.

        An edge e at angle x >= radius from the cell costs at least
            a*x + o  +  b*angle(e, center) + m_c          (a, b: public / backbone ms per radian)
        where m_c = min over edges of (edge leg + penalty - b*angle(e, center)) absorbs measurements.
        By the triangle inequality angle(e, center) >= angle(cell, center) - x, so the cost is at least
        f(x) = a*x + b*max(0, D - x) + o + m_c, piecewise linear: its minimum over x >= radius lies at
        x = radius or at x = max(radius, D)."""
        a = latency.physics.ms_per_radian
        b = latency.backbone.ms_per_radian
        overhead = latency.physics.settings.overhead_ms
        edge_center_angle = np.arccos(np.clip(self._center_xyz @ self._edge_xyz[healthy_idx].T, -1.0, 1.0))  # (C, H)
        m_c = (center_edge[:, healthy_idx] + penalty[healthy_idx][None, :] - b * edge_center_angle).min(axis=1)  # (C,)
        cell_center = np.arccos(np.clip(self._center_xyz @ self._cell_xyz[rows].T, -1.0, 1.0))  # (C, R)
        r = radius[None, :]
        f_r = a * r + b * np.maximum(0.0, cell_center - r)
        f_kink = a * np.maximum(r, cell_center)
        bound: NDArray[np.float64] = np.minimum(f_r, f_kink) + overhead + m_c[:, None]
        return bound

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
        pos: int,
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
            return fresh._replace(last_switch_at=None if first_placement else now), REASON_BEST
        if not self._still_valid(prev, elig, health):
            return fresh._replace(last_switch_at=now), REASON_BEST
        if (prev.center, prev.edges) == (fresh.center, fresh.edges):
            # Same route: keep its capacity shares. The greedy split is sensitive to rank order, and
            # measurement noise must not churn the table (a new generation, a republish). Shares are
            # recomputed whenever the route itself changes; overflow is always reported from the
            # shares actually served.
            return fresh._replace(weights=prev.weights, last_switch_at=prev.last_switch_at), REASON_BEST
        prev_cost = sum(w * c for w, c in zip(prev.weights, self._costs(pos, prev, cost_lookup, latency), strict=True))
        better = prev_cost - fresh_cost >= max(hyst.absolute_ms, hyst.relative * prev_cost)
        pending = prev.pending + 1 if better else 0
        held_down = prev.last_switch_at is not None and now - prev.last_switch_at < hyst.hold_down_s
        if better and pending >= hyst.consecutive and not held_down:
            return fresh._replace(last_switch_at=now), REASON_BEST
        return prev._replace(pending=pending), REASON_HELD

    def _costs(self, cell_pos: int, route: CellState, cost_lookup: NDArray[np.float64], latency: LatencyModel) -> list[float]:
        """Estimated client -> edge -> center RTT of each answer of `route`, with current latencies."""
        assert route.center is not None
        ci = self._center_ids.index(route.center)
        out = []
        for edge_id in route.edges:
            ei = self._edge_pos[edge_id]
            client_leg = self._client_leg.get((cell_pos, ei))
            if client_leg is None:
                cell, edge = self.cells[cell_pos], self.topology.edges[ei]
                client_leg = self._client_leg[(cell_pos, ei)] = latency.physics.rtt_ms(cell.lat, cell.lon, edge.lat, edge.lon)
            out.append(float(client_leg + cost_lookup[ci, ei]))
        return out
