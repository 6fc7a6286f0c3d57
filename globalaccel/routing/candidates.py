"""Candidate search: per cell, the allowed center with the cheapest best path and its ranked edges, exact.

Small worlds score every healthy edge per cell. Large ones score tile by tile (routing.tiles, routing.tile_scores):
nearby cells share bounds on every edge's cost, and each cell is scored only on the edges that can be among its
best. Current centers are favoured by the hysteresis margin so that measurement noise cannot reshuffle near-equal
choices (current edges: routing.final_ranks).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

from globalaccel.cells import Cell
from globalaccel.geo import unit_vectors
from globalaccel.latency import LatencyModel
from globalaccel.routing.current import CurrentRoutes
from globalaccel.routing.tile_scores import chord_angles, tile_select
from globalaccel.routing.tiles import SUPER_DEGREES, TILE_DEGREES, Tiles, make_tiles
from globalaccel.topology import Topology

# Ties (co-located edges have exactly equal costs) break by edge position: the key adds
# position * TIE_BREAK_MS, far above float rounding at these magnitudes (~1e-13 ms) and far below any
# RTT difference that matters, so every search path orders a cluster of equal edges the same way.
TIE_BREAK_MS = 1e-9
# Up to this many (cell, edge) pairs scoring every edge is as fast as tiles, and it is the plainest form of the rule,
# which the tests hold the tiles to. Measured on prod's 3,200 edges, every path measured: 300 cells dense 14 ms, tiles
# 20 ms; 600 cells 32 ms against 17 ms; 3,361 cells 183 ms against 49 ms (/tmp script, 2026-11-27).
DENSE_LIMIT = 1_000_000
# Tiles are scored in this many threads: the kernel releases the GIL, and super-tiles write disjoint rows.
WORKERS = max(1, min(4, os.cpu_count() or 1))
DENSE_CHUNK = 2_000  # rows per dense block: bounds memory at ~50 MB per (rows x edges) matrix


def _top_k(key: NDArray[np.float64], k: int) -> NDArray[np.intp]:
    """Positions of the k smallest keys along the last axis, by (key, position): O(n) selection, then a sort of only k
    entries. Keys carry the position tie-break, but two can still be equal floats (legs that differ by exactly the
    tie-break): then the lower position first, as the tile search orders them; a row with a tie at the k-th key is
    sorted whole."""
    if k >= key.shape[-1]:
        return np.lexsort((np.broadcast_to(np.arange(key.shape[-1]), key.shape), key), axis=-1)
    part = np.argpartition(key, k - 1, axis=-1)[..., :k]
    chosen = np.take_along_axis(key, part, axis=-1)
    out = np.take_along_axis(part, np.lexsort((part, chosen), axis=-1), axis=-1)
    kth = chosen.max(axis=-1, keepdims=True)
    tied = (key <= kth).sum(axis=-1) > k  # a key equal to the k-th left out, maybe at a lower position
    for row in np.flatnonzero(tied):
        out[row] = np.lexsort((np.arange(key.shape[-1]), key[row]))[:k]
    return out


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


class CandidateSearch:
    """Geometry of one topology and its cells, cached across cycles."""

    def __init__(self, topology: Topology, cells: Iterable[Cell]) -> None:
        self.cells: tuple[Cell, ...] = tuple(cells)
        self.settings = topology.routing
        self._center_ids = topology.center_ids
        self._edge_ids = tuple(e.id for e in topology.edges)
        self._edge_xyz = unit_vectors(np.array([e.lat for e in topology.edges]), np.array([e.lon for e in topology.edges]))
        self._cell_xyz = unit_vectors(np.array([c.lat for c in self.cells]), np.array([c.lon for c in self.cells]))
        self._tiles_cache: tuple[bytes, Tiles] | None = None  # the tiles of one grouping of the cells
        self._super_angles: tuple[Tiles, bytes, NDArray[np.float64]] | None = None  # for those tiles and healthy edges
        self.tile_degrees = (TILE_DEGREES, SUPER_DEGREES)  # sides of tiles and super-tiles (routing.tiles)

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
        ranks: int | None = None,  # how many edges to rank per cell (None: 4 x max_answers)
        compact: bool = False,  # with `only`: arrays with one row per cell of `only`, in its order, not one per cell
    ) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.float64]]:
        """Per cell: the chosen center (-1 when no allowed center is up) and its ranked candidate edges
        (positions in the healthy subset), ordered by (cost, position).

        The center is the allowed one with the cheapest best path, and the ranks are its cheapest edges, exactly,
        whichever way they are scored. Edges a cell's rule forbids cost infinity for that cell: they are never
        chosen, and rank last where a cell has fewer allowed edges than ranks (the caller drops them)."""
        n_cells, n_healthy = len(self.cells), healthy_idx.size
        keep = min(n_healthy, 4 * self.settings.max_answers if ranks is None else ranks)
        rows = np.arange(n_cells) if only is None else np.asarray(only, dtype=np.intp)
        # Where each of `rows` is written: a few rows ranked wide need not allocate (and zero) every cell's ranks.
        at = np.arange(rows.size) if compact else rows
        size = rows.size if compact else n_cells
        choice = np.full(size, -1, dtype=np.intp)
        ranked = np.zeros((size, keep), dtype=np.intp)
        ranked_cost = np.zeros((size, keep), dtype=np.float64)
        prefer = prefer if prefer is not None else np.full(n_cells, -1, dtype=np.intp)
        scoring = Scoring(healthy_idx, latency, center_edge, penalty, allowed, prefer, edge_ok, cell_group)
        if rows.size * n_healthy > DENSE_LIMIT:
            self._select_in_tiles(rows, keep, scoring, choice, ranked, ranked_cost, at)
            return choice, ranked, ranked_cost
        for lo in range(0, rows.size, DENSE_CHUNK):
            chunk = rows[lo : lo + DENSE_CHUNK]
            into = at[lo : lo + DENSE_CHUNK]
            choice[into], ranked[into], ranked_cost[into] = self._select_dense(chunk, keep, scoring)
        return choice, ranked, ranked_cost

    def _tiles(self, cell_group: NDArray[np.intp] | None) -> Tiles:
        group = np.zeros(len(self.cells), dtype=np.intp) if cell_group is None else np.asarray(cell_group, dtype=np.intp)
        key = group.tobytes() + repr(self.tile_degrees).encode()
        if self._tiles_cache is None or self._tiles_cache[0] != key:
            self._tiles_cache = (key, make_tiles(self._cell_xyz, group, *self.tile_degrees))
        return self._tiles_cache[1]

    def _angles_from_supers(self, tiles: Tiles, healthy_idx: NDArray[np.intp], edge_xyz: NDArray[np.float64]) -> NDArray[np.float64]:
        """(S, H) each super-tile's angle to each healthy edge: geometry, kept while the tiles and the healthy edges stay
        the same (a million arccos for prod's, 5 ms of every cycle otherwise)."""
        key = healthy_idx.tobytes()
        kept = self._super_angles
        if kept is None or kept[0] is not tiles or kept[1] != key:
            angles = np.arccos(np.clip(tiles.super_xyz @ edge_xyz.T, -1.0, 1.0))
            angles.flags.writeable = False
            kept = self._super_angles = (tiles, key, angles)
        return kept[2]

    def _select_in_tiles(self, rows: NDArray[np.intp], keep: int, scoring: Scoring, choice: NDArray[np.intp],
                         ranked: NDArray[np.intp], ranked_cost: NDArray[np.float64], at: NDArray[np.intp]) -> None:
        """Exact choice and ranks for `rows`, tile by tile (routing.tiles, routing.tile_scores), written into
        choice / ranked / ranked_cost at `at` (one per row)."""
        healthy_idx, latency, center_edge, penalty, allowed, prefer = scoring[:6]
        tiles = self._tiles(scoring.cell_group)
        # Members ordered by tile, tiles by super-tile: each super-tile's tiles, each tile's members, contiguous.
        tile_of = tiles.tile_of[rows]
        member = np.lexsort((tile_of, tiles.super_of[tile_of])).astype(np.int64)
        used, tile_start = np.unique(tile_of[member], return_index=True)
        used = used[np.argsort(tile_start)]
        supers, super_start = np.unique(tiles.super_of[used], return_index=True)
        edge_xyz = np.ascontiguousarray(self._edge_xyz[healthy_idx])
        if scoring.edge_ok is not None and scoring.cell_group is not None:
            usable, super_group = np.ascontiguousarray(scoring.edge_ok[:, healthy_idx]), tiles.super_group[supers]
        else:
            usable, super_group = np.ones((1, healthy_idx.size), dtype=bool), np.zeros(supers.size, dtype=np.int64)
        physics, hyst = latency.physics, self.settings.hysteresis
        out_choice = np.empty(rows.size, dtype=np.int64)
        out_ranked = np.zeros((rows.size, keep), dtype=np.int64)
        out_cost = np.zeros((rows.size, keep), dtype=np.float64)
        super_angle = self._angles_from_supers(tiles, healthy_idx, edge_xyz)[supers]
        super_start = np.append(super_start, used.size).astype(np.int64)
        tile_start = np.append(np.sort(tile_start), member.size).astype(np.int64)
        common = (tiles.xyz[used], tiles.radius[used], tile_start, member, np.ascontiguousarray(self._cell_xyz[rows]), edge_xyz,
                  physics.ms_per_radian, physics.settings.overhead_ms, np.ascontiguousarray(penalty[healthy_idx]), TIE_BREAK_MS,
                  np.ascontiguousarray(center_edge[:, healthy_idx]), usable, np.ascontiguousarray(allowed[:, rows]),
                  np.ascontiguousarray(prefer[rows], dtype=np.int64), hyst.absolute_ms, hyst.relative, out_choice, out_ranked,
                  out_cost)

        def part(lo: int, hi: int) -> None:
            tile_select(super_angle[lo:hi], tiles.super_radius[supers[lo:hi]], super_group[lo:hi], super_start[lo : hi + 1],
                        *common)

        # Super-tiles write disjoint rows and the kernel releases the GIL: split them over the cores, by members.
        cuts = np.searchsorted(tile_start[super_start], np.linspace(0, member.size, WORKERS + 1))
        bounds = sorted({0, supers.size, *cuts.tolist()})
        with ThreadPoolExecutor(max_workers=WORKERS) as pool:
            list(pool.map(lambda lh: part(*lh), pairwise(bounds)))
        choice[at], ranked[at], ranked_cost[at] = out_choice, out_ranked, out_cost

    def _select_dense(self, rows: NDArray[np.intp], keep: int,
                      scoring: Scoring) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.float64]]:
        """Score every healthy edge for `rows`: exact for every rank."""
        healthy_idx, latency, center_edge, penalty, allowed, prefer = scoring[:6]
        angle = np.empty((rows.size, healthy_idx.size))
        chord_angles(np.ascontiguousarray(self._cell_xyz[rows]), np.ascontiguousarray(self._edge_xyz[healthy_idx]), angle)
        client_leg = latency.physics.rtt_from_angles(angle) + penalty[healthy_idx][None, :]  # (R, H)
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
