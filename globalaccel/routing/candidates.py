"""Candidate search: per cell, the allowed center with the cheapest best path and its ranked edges.

Small worlds score every healthy edge; large ones take the nearest healthy edges by great circle
(k-d tree on unit vectors), and a lower bound proves the ball holds each allowed center's best path
and the chosen center's best `max_answers` edges, else the ball widens and finally the cell's full
row is scored. Current centers and edges are favoured by the hysteresis margin so that measurement
noise cannot reshuffle near-equal choices.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray
from scipy.spatial import cKDTree

from globalaccel.cells import Cell
from globalaccel.geo import unit_vectors
from globalaccel.latency import LatencyModel
from globalaccel.routing.ball_scores import ball_best, ball_ranks
from globalaccel.routing.current import CurrentRoutes
from globalaccel.topology import Topology

# Ties (co-located edges have exactly equal costs) break by edge position: the key adds
# position * TIE_BREAK_MS, far above float rounding at these magnitudes (~1e-13 ms) and far below any
# RTT difference that matters, so every search path orders a cluster of equal edges the same way.
TIE_BREAK_MS = 1e-9
# Below this many (cell, edge) pairs a dense score of every edge beats k-d queries (measured on the
# prod stack: 249 x 3200 dense 24 ms, k-d path 41 ms); above it the k-d tree wins by far.
DENSE_LIMIT = 2_000_000
# Nearest-edge answers kept per width while health stays the same, up to this many (cell, edge) entries, 16 bytes
# each: at most 192 MB. 100,000 cells at 64 edges and the 7,343 of them their ball does not prove at 512 take 10.2
# million; asking the tree again for those every cycle cost 0.2 s of a 1.4 s evaluation (benchmarks/bench_cells.py).
NEAR_CACHE_ENTRIES = 12_000_000
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


def _angle(chord: NDArray[np.float64]) -> NDArray[np.float64]:
    """Great-circle angle (radians) of a chord between unit vectors."""
    return np.asarray(2.0 * np.arcsin(np.clip(chord / 2.0, 0.0, 1.0)), dtype=np.float64)


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



class Scoring(NamedTuple):
    """One evaluation's inputs to candidate search, passed whole between its steps."""

    healthy_idx: NDArray[np.intp]  # positions of the healthy edges
    latency: LatencyModel
    center_edge: NDArray[np.float64]  # (C, E) backbone leg per center and edge
    penalty: NDArray[np.float64]  # (E,) each edge's measured excess delay
    allowed: NDArray[np.bool_]  # (C, N): may cell n use center c right now
    prefer: NDArray[np.intp]  # (N,): each cell's current center, -1 if none
    edge_ok: NDArray[np.bool_] | None = None  # (G, E): may a cell of edge group g use edge e (residency of the path)
    cell_group: NDArray[np.intp] | None = None  # (N,): each cell's edge group

    def blocked(self, rows: NDArray[np.intp], edges: NDArray[np.intp]) -> NDArray[np.bool_] | None:
        """(R, ...) True where the cell of each row may not use the edge at that position (edges: positions
        in the healthy subset, shaped (R, W) or (H,)); None when every edge is allowed to every cell."""
        if self.edge_ok is None or self.cell_group is None:
            return None
        groups = self.cell_group[rows]
        catalog = self.healthy_idx[edges]
        if catalog.ndim == 1:
            return ~self.edge_ok[groups][:, catalog]
        return ~self.edge_ok[groups[:, None], catalog]


class _KeptBalls:
    """The nearest-edge balls of one width asked so far: line_of[cell] is the cell's line of angles and nears (-1: not
    asked). Lines are added, never moved; the arrays grow as the caller says (by doubling, within its bound)."""

    def __init__(self, line_of: NDArray[np.int64], angles: NDArray[np.float64], nears: NDArray[np.int64]) -> None:
        self.line_of, self._angles, self._nears, self.used = line_of, angles, nears, 0

    @classmethod
    def empty(cls, cells: int, width: int) -> _KeptBalls:
        return cls(np.full(cells, -1, dtype=np.int64), np.zeros((0, width)), np.zeros((0, width), dtype=np.int64))

    @property
    def capacity(self) -> int:
        """Lines allocated (kept or room for more)."""
        return int(self._angles.shape[0])

    @property
    def angles(self) -> NDArray[np.float64]:
        return self._angles[: self.used]

    @property
    def nears(self) -> NDArray[np.int64]:
        return self._nears[: self.used]

    def add(self, rows: NDArray[np.intp], size: int, angles: NDArray[np.float64], nears: NDArray[np.int64]) -> None:
        """Keep these rows' balls, growing to `size` lines if they do not fit."""
        end = self.used + rows.size
        if end > self._angles.shape[0]:
            grown_angles, grown_nears = np.zeros((size, angles.shape[1])), np.zeros((size, angles.shape[1]), dtype=np.int64)
            grown_angles[: self.used], grown_nears[: self.used] = self.angles, self.nears
            self._angles, self._nears = grown_angles, grown_nears
        self._angles[self.used : end], self._nears[self.used : end] = angles, nears
        self.line_of[rows] = np.arange(self.used, end)
        self.used = end


class CandidateSearch:
    """Geometry of one topology and its cells, cached across cycles."""

    def __init__(self, topology: Topology, cells: Iterable[Cell]) -> None:
        self.cells: tuple[Cell, ...] = tuple(cells)
        self.settings = topology.routing
        self._center_ids = topology.center_ids
        self._edge_ids = tuple(e.id for e in topology.edges)
        self._edge_pos = {eid: i for i, eid in enumerate(self._edge_ids)}
        self._center_xyz = unit_vectors(np.array([c.lat for c in topology.centers]), np.array([c.lon for c in topology.centers]))
        self._edge_xyz = unit_vectors(np.array([e.lat for e in topology.edges]), np.array([e.lon for e in topology.edges]))
        self._cell_xyz = unit_vectors(np.array([c.lat for c in self.cells]), np.array([c.lon for c in self.cells]))
        self._tree_cache: tuple[frozenset[int], cKDTree] | None = None
        self._near_cache: dict[int, _KeptBalls] = {}  # width -> the balls asked of the tree cached above

    def _tree(self, healthy_idx: NDArray[np.intp]) -> cKDTree:
        key = frozenset(int(i) for i in healthy_idx)
        if self._tree_cache is None or self._tree_cache[0] != key:
            self._tree_cache = (key, cKDTree(self._edge_xyz[healthy_idx]))
            self._near_cache.clear()
        return self._tree_cache[1]

    def _nearest(self, healthy_idx: NDArray[np.intp], rows: NDArray[np.intp],
                 width: int) -> tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.int64]]:
        """(angle in radians, position in the healthy subset) of each row's `width` nearest healthy edges, nearest
        first, as lines of two arrays, and which line is each row's. Geometry only: while the healthy set stays the
        same, each row's answer for a width is kept once asked (the loop asks mostly the same rows every cycle), up to
        NEAR_CACHE_ENTRIES (cell, edge) entries over all widths; rows beyond that are asked without keeping them."""
        tree = self._tree(healthy_idx)
        kept = self._near_cache.get(width)
        missing = rows if kept is None else rows[kept.line_of[rows] < 0]
        if missing.size:
            held = sum(k.capacity * w for w, k in self._near_cache.items())
            capacity, used = (0, 0) if kept is None else (kept.capacity, kept.used)
            end = used + missing.size
            spare_lines = (NEAR_CACHE_ENTRIES - held) // width  # lines this width may still add
            if end - capacity > spare_lines:
                # No room: asked without keeping. What is kept stays (the narrow balls, asked of every cell every cycle,
                # are asked first), until the healthy set changes.
                chord, near = tree.query(self._cell_xyz[rows], k=width, workers=-1)
                return (_angle(np.asarray(chord, dtype=np.float64).reshape(rows.size, width)),
                        np.asarray(near, dtype=np.int64).reshape(rows.size, width), np.arange(rows.size, dtype=np.int64))
            if kept is None:
                kept = self._near_cache[width] = _KeptBalls.empty(len(self.cells), width)
            chord, near = tree.query(self._cell_xyz[missing], k=width, workers=-1)
            size = max(end, min(2 * capacity, capacity + spare_lines))
            kept.add(missing, size, _angle(np.asarray(chord, dtype=np.float64).reshape(missing.size, width)),
                     np.asarray(near, dtype=np.int64).reshape(missing.size, width))
        assert kept is not None
        return kept.angles, kept.nears, kept.line_of[rows]

    def margin(self, cost: NDArray[np.float64]) -> NDArray[np.float64]:
        hyst = self.settings.hysteresis
        return np.maximum(hyst.absolute_ms, hyst.relative * cost)

    def sticky(self, current: CurrentRoutes, healthy_idx: NDArray[np.intp]) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
        """Each cell's current center (-1 if none, or one the stack no longer has) and current edges as positions in
        the healthy subset (-1 padded, and for an edge not healthy). Center choice and the final ranks
        (routing.final_ranks) favour them by the hysteresis margin, so noise cannot reshuffle near-equal choices;
        whether to switch is then hysteresis' business."""
        position = np.full(len(self._edge_ids), -1, dtype=np.intp)
        position[healthy_idx] = np.arange(healthy_idx.size)
        width = max(1, self.settings.max_answers)
        prefer = np.where(current.center >= 0, current.center, -1)
        edges = current.edges[:, :width]
        prev_edges = np.where(edges >= 0, position[np.maximum(edges, 0)], -1)
        return prefer, prev_edges

    def select(
        self,
        latency: LatencyModel,
        healthy_idx: NDArray[np.intp],
        center_edge: NDArray[np.float64],
        penalty: NDArray[np.float64],
        allowed: NDArray[np.bool_],  # (C, N): may cell n use center c right now
        prefer: NDArray[np.intp] | None = None,  # (N,): each cell's current center, -1 if none
        edge_ok: NDArray[np.bool_] | None = None,  # (G, E): edges each group's rule lets on the path
        cell_group: NDArray[np.intp] | None = None,  # (N,): each cell's group
        only: NDArray[np.intp] | None = None,  # compute these cells only (the rest: -1, no candidates)
    ) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.float64]]:
        """Per cell: the chosen center (-1 when no allowed center is up) and its ranked candidate edges
        (positions in the healthy subset), ordered by (cost, position).

        The center is the allowed one with the cheapest best path, proven exactly. The first
        `max_answers` ranks are proven exact; ranks beyond them (only the capacity repair looks there)
        are the best of the cell's nearest-edge ball, in cost order. Edges a cell's rule forbids cost
        infinity for that cell: they are never chosen, and rank last where a cell has fewer allowed edges
        than ranks (the caller drops them)."""
        n_cells, n_healthy = len(self.cells), healthy_idx.size
        keep = min(n_healthy, 4 * self.settings.max_answers)
        choice = np.full(n_cells, -1, dtype=np.intp)
        ranked = np.zeros((n_cells, keep), dtype=np.intp)
        ranked_cost = np.zeros((n_cells, keep), dtype=np.float64)
        prefer = prefer if prefer is not None else np.full(n_cells, -1, dtype=np.intp)
        scoring = Scoring(healthy_idx, latency, center_edge, penalty, allowed, prefer, edge_ok, cell_group)
        rows = np.arange(n_cells) if only is None else np.asarray(only, dtype=np.intp)
        if rows.size * n_healthy > DENSE_LIMIT:
            width = min(n_healthy, max(64, 2 * keep))
            # Widen the nearest-edge ball only for the cells it cannot prove; whatever is still
            # unproven when the ball would cover a good part of the fleet is scored densely.
            while rows.size and width < n_healthy // 2:
                proven, c_sel, r_sel, k_sel = self._select_in_ball(rows, width, keep, scoring)
                choice[rows[proven]] = c_sel[proven]
                ranked[rows[proven]] = r_sel[proven]
                ranked_cost[rows[proven]] = k_sel[proven]
                rows = rows[~proven]
                width *= 8
        for lo in range(0, rows.size, DENSE_CHUNK):
            chunk = rows[lo : lo + DENSE_CHUNK]
            choice[chunk], ranked[chunk], ranked_cost[chunk] = self._select_dense(chunk, keep, scoring)
        return choice, ranked, ranked_cost

    def _select_dense(self, rows: NDArray[np.intp], keep: int,
                      scoring: Scoring) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.float64]]:
        """Score every healthy edge for `rows`: exact for every rank."""
        healthy_idx, latency, center_edge, penalty, allowed, prefer = scoring[:6]
        cos = np.clip(self._cell_xyz[rows] @ self._edge_xyz[healthy_idx].T, -1.0, 1.0)
        client_leg = latency.physics.rtt_from_angles(np.arccos(cos)) + penalty[healthy_idx][None, :]  # (R, H)
        positions = np.arange(healthy_idx.size)
        key_base = client_leg + positions * TIE_BREAK_MS
        blocked = scoring.blocked(rows, positions)
        if blocked is not None:
            key_base = np.where(blocked, np.inf, key_base)
        best = np.full((len(self._center_ids), rows.size), np.inf)
        for ci in range(len(self._center_ids)):
            best[ci] = (key_base + center_edge[ci, healthy_idx][None, :]).min(axis=1)
        choice = _choose(best, allowed[:, rows], prefer[rows], self.margin)
        ranked = np.zeros((rows.size, keep), dtype=np.intp)
        ranked_cost = np.zeros((rows.size, keep), dtype=np.float64)
        for ci in np.unique(choice[choice >= 0]):
            mine = np.nonzero(choice == ci)[0]
            key = key_base[mine] + center_edge[ci, healthy_idx][None, :]
            ranked[mine] = _top_k(key, keep)
            ranked_cost[mine] = np.take_along_axis(key, ranked[mine], axis=1)
        return choice, ranked, ranked_cost

    def _select_in_ball(self, rows: NDArray[np.intp], width: int, keep: int,
                        scoring: Scoring) -> tuple[NDArray[np.bool_], NDArray[np.intp], NDArray[np.intp], NDArray[np.float64]]:
        """Select among each cell's `width` nearest healthy edges; report which cells that proves."""
        healthy_idx, latency, center_edge, penalty, allowed, prefer = scoring[:6]
        angle, near, at = self._nearest(healthy_idx, rows, width)
        # A forbidden edge in the ball costs infinity for that cell. The bound below (over every edge outside
        # the ball) stays a valid lower bound: forbidding edges only raises the true best cost.
        if scoring.edge_ok is not None and scoring.cell_group is not None:
            edge_ok, group = scoring.edge_ok, scoring.cell_group[rows].astype(np.int64)
        else:
            edge_ok, group = np.ones((1, 1), dtype=bool), np.empty(0, dtype=np.int64)
        bound = self._ball_bounds(rows, angle[at, -1], healthy_idx, latency, center_edge, penalty)  # (C, R)
        center_edge_t = np.ascontiguousarray(center_edge[:, healthy_idx].T)  # (H, C): a ball edge's legs together
        key_base = np.empty((rows.size, width))
        best = np.empty((len(self._center_ids), rows.size))
        physics = latency.physics
        ball_best(angle, near, at, physics.ms_per_radian, physics.settings.overhead_ms, penalty[healthy_idx], TIE_BREAK_MS,
                  center_edge_t, edge_ok, group, healthy_idx.astype(np.int64), key_base, best)
        allowed_rows = allowed[:, rows]
        # Every allowed center's best path must be proven, or the center choice could be wrong.
        proven = np.all(~allowed_rows | (best < bound - 1e-9), axis=0)
        choice = _choose(best, allowed_rows, prefer[rows], self.margin)
        ranked = np.zeros((rows.size, keep), dtype=np.int64)
        ranked_cost = np.zeros((rows.size, keep), dtype=np.float64)
        ball_ranks(key_base, near, at, choice.astype(np.int64), center_edge_t, ranked, ranked_cost)
        # And the chosen center's best `max_answers` edges.
        need = min(self.settings.max_answers, keep)
        chosen = choice >= 0
        proven[chosen] &= ranked_cost[chosen, need - 1] < bound[choice[chosen], np.flatnonzero(chosen)] - 1e-9
        return proven, choice, ranked.astype(np.intp, copy=False), ranked_cost

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
