"""Candidate search's scoring of cells tile by tile, compiled: exact, whatever the measured latencies.

Cells are grouped into tiles (nearby cells of one edge group: routing.tiles). For a tile of centre t and radius rho
(no member farther than rho from t), a member's angle to an edge lies within rho of the tile's, so via center c each
edge's key for every member lies in [lb, ub]:
    lb = (angle(t, e) - rho) * a + o + base(e) + leg(e, c),   ub = the same with + rho,
where a is the public ms per radian, o the overhead, base the edge's measured excess plus its tie-break, leg its
backbone leg to c. Any member's k-th smallest key is at most the k-th smallest ub over the edges; so an edge whose lb
is above that cannot be among any member's best k. Each tile keeps, per center, only the edges that can (sorted by lb,
so a member's scan stops at the first lb above its own k-th best), and each member is scored exactly on those.

The nearest-edge ball it replaced proved its cells with one lower bound for every edge outside the ball, which
measured excess delay pulls down: with every path measured, 97 % of 100,000 cells needed 512 edges scored and the
search took 4.5 of a 6.4 s evaluation (BENCHMARKS.md). Here the bound is per edge, so excess delay costs nothing.

A member's key is computed as the dense search computes it, to the bit: angle * a + o + excess + position * tie-break,
plus the leg, the angle from the chord between unit vectors (chord_angle, which the dense search uses too). A tile's
own angles come from arccos (off by up to ~2e-8 rad near 0): its radius carries a margin for that.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from globalaccel.routing.compiled import kernel


@kernel
def chord_angle(p: NDArray[np.float64], q: NDArray[np.float64]) -> float:
    """Great-circle angle (radians) between unit vectors, from their chord (accurate near 0, where arccos of the dot
    product is off by up to 2e-8 rad: 3e-6 ms, far above the tie-break). Both searches take every angle from here."""
    dx, dy, dz = p[0] - q[0], p[1] - q[1], p[2] - q[2]
    return 2.0 * math.asin(min(math.sqrt(dx * dx + dy * dy + dz * dz) / 2.0, 1.0))


@kernel
def chord_angles(a: NDArray[np.float64], b: NDArray[np.float64], out: NDArray[np.float64]) -> None:
    """out (R, H): chord_angle between every row of `a` (R, 3) and of `b` (H, 3)."""
    for i in range(a.shape[0]):
        for j in range(b.shape[0]):
            out[i, j] = chord_angle(a[i], b[j])


@kernel
def _sorted_within(s: NDArray[np.float64], limit: float, out: NDArray[np.int64]) -> int:
    """Writes to `out` the edges whose s is at most `limit` (infinite ones never), by s ascending; returns how many."""
    count = 0
    for e in range(s.size):
        if s[e] <= limit and s[e] < np.inf:
            out[count] = e
            count += 1
    order = np.argsort(s[out[:count]], kind="mergesort")
    out[:count] = out[:count][order]
    return count


@kernel
def _kth_smallest(values: NDArray[np.float64], k: int, buf: NDArray[np.float64]) -> float:
    """The k-th smallest of `values` (infinity when fewer than k are finite), in one pass over a sorted buffer of k."""
    filled = 0
    for v in values:
        if not v < np.inf:
            continue
        if filled == k and not v < buf[k - 1]:
            continue
        s = filled - 1 if filled < k else k - 2
        while s >= 0 and buf[s] > v:
            buf[s + 1] = buf[s]
            s -= 1
        buf[s + 1] = v
        if filled < k:
            filled += 1
    return buf[k - 1] if filled == k else np.inf


@kernel
def _key(cell: NDArray[np.float64], edge: NDArray[np.float64], ms_per_radian: float, overhead_ms: float, penalty: float,
         position: int, tie_ms: float, leg: float) -> float:
    """A cell's key for an edge via a center: the dense search's operations in its order, on the same angle."""
    return chord_angle(cell, edge) * ms_per_radian + overhead_ms + penalty + position * tie_ms + leg


@kernel
def _choose_one(best: NDArray[np.float64], p: int, absolute_ms: float, relative: float) -> int:
    """The center with the cheapest best key (infinite: not allowed), the preferred one p (-1: none) winning unless another
    is cheaper by the hysteresis margin max(absolute_ms, relative * key), the first on ties; -1 when none is finite
    (candidates._choose, for one cell). Lowers best[p] by the margin."""
    if p >= 0 and best[p] < np.inf:
        margin = relative * best[p]
        if margin < absolute_ms:
            margin = absolute_ms
        best[p] = best[p] - margin
    pick = 0
    for c in range(1, best.size):
        if best[c] < best[pick]:
            pick = c
    return pick if best[pick] < np.inf else -1


@kernel
def _rank_into(cell: NDArray[np.float64], cand: NDArray[np.int64], count: int, s: NDArray[np.float64], slack: float,
               sub: NDArray[np.int64], edge_xyz: NDArray[np.float64], ms_per_radian: float, overhead_ms: float,
               penalty: NDArray[np.float64], tie_ms: float, legs: NDArray[np.float64], ranked: NDArray[np.int64],
               ranked_cost: NDArray[np.float64]) -> int:
    """A cell's cheapest len(ranked) of the candidates (cand[:count], positions in `sub`, by their tile key s ascending,
    each within `slack` of the cell's), cheapest first; returns how many it filled."""
    keep = ranked.size
    filled = 0
    for k in range(count):
        q = cand[k]
        if filled == keep and s[q] - slack > ranked_cost[keep - 1]:
            break
        j = sub[q]
        v = _key(cell, edge_xyz[j], ms_per_radian, overhead_ms, penalty[j], j, tie_ms, legs[j])
        # By (key, position): two keys can be equal floats (legs that differ by exactly the tie-break).
        if filled == keep and not (v < ranked_cost[keep - 1] or (v == ranked_cost[keep - 1] and j < ranked[keep - 1])):
            continue
        t = filled - 1 if filled < keep else keep - 2
        while t >= 0 and (ranked_cost[t] > v or (ranked_cost[t] == v and ranked[t] > j)):
            ranked_cost[t + 1] = ranked_cost[t]
            ranked[t + 1] = ranked[t]
            t -= 1
        ranked_cost[t + 1] = v
        ranked[t + 1] = j
        if filled < keep:
            filled += 1
    return filled


@kernel
def tile_select(super_angle: NDArray[np.float64], super_radius: NDArray[np.float64], super_group: NDArray[np.int64],
                super_start: NDArray[np.int64], tile_xyz: NDArray[np.float64], tile_radius: NDArray[np.float64],
                tile_start: NDArray[np.int64], member: NDArray[np.int64], cell_xyz: NDArray[np.float64],
                edge_xyz: NDArray[np.float64], ms_per_radian: float, overhead_ms: float, penalty: NDArray[np.float64],
                tie_ms: float, legs: NDArray[np.float64], usable: NDArray[np.bool_], allowed: NDArray[np.bool_],
                prefer: NDArray[np.int64], absolute_ms: float, relative: float, choice: NDArray[np.int64],
                ranked: NDArray[np.int64], ranked_cost: NDArray[np.float64]) -> None:
    """Super-tile q (super_angle[q]: its angle to each healthy edge) holds tiles super_start[q]..super_start[q+1]; tile t
    holds members member[tile_start[t]:tile_start[t+1]], rows r of `cell_xyz`, `allowed` (C, R), `prefer` (R,) and the
    outputs. For each member:
    - choice[r]: the allowed center with the cheapest key, as candidates._choose (hysteresis margin for the preferred);
    - ranked[r] / ranked_cost[r]: its ranked.shape[1] cheapest edges via that center, cheapest first (healthy
      positions and keys); where it may use fewer edges, the rest hold edges it may not use at infinite cost.
    `penalty` (H,), `legs` (C, H) by healthy position; `usable` (G, H): may a cell of edge group g use each edge.

    First the super-tile keeps the edges that can be among any member's best `keep` via any center (its own bound,
    of a wider radius); its tiles then bound only those."""
    n_edges = penalty.size
    n_centers = legs.shape[0]
    keep = ranked.shape[1]
    near = np.empty(n_edges)
    s = np.empty((n_centers, n_edges))
    sub = np.empty(n_edges, dtype=np.int64)
    cand = np.empty((n_centers, n_edges), dtype=np.int64)
    n_cand = np.empty(n_centers, dtype=np.int64)
    best = np.empty(n_centers)
    buf = np.empty(keep)
    limit = np.empty(n_centers)
    for q in range(super_angle.shape[0]):
        ok = usable[super_group[q]]
        slack = super_radius[q] * ms_per_radian  # a member's key is within slack of the super-tile's, either way
        for e in range(n_edges):
            near[e] = super_angle[q, e] * ms_per_radian + overhead_ms + penalty[e] + e * tie_ms if ok[e] else np.inf
        for c in range(n_centers):
            for e in range(n_edges):
                s[c, e] = near[e] + legs[c, e]
            limit[c] = _kth_smallest(s[c], keep, buf) + 2.0 * slack
        n_sub = 0
        for e in range(n_edges):
            if near[e] < np.inf:
                for c in range(n_centers):
                    if s[c, e] <= limit[c]:
                        sub[n_sub] = e
                        n_sub += 1
                        break
        for t in range(super_start[q], super_start[q + 1]):
            slack = tile_radius[t] * ms_per_radian
            for k in range(n_sub):
                j = sub[k]
                dx, dy, dz = tile_xyz[t, 0] - edge_xyz[j, 0], tile_xyz[t, 1] - edge_xyz[j, 1], tile_xyz[t, 2] - edge_xyz[j, 2]
                angle = 2.0 * math.asin(min(math.sqrt(dx * dx + dy * dy + dz * dz) / 2.0, 1.0))
                near[k] = angle * ms_per_radian + overhead_ms + penalty[j] + j * tie_ms
            # Per center, the candidates that can be a member's best: the tile's key within 2 slack of the least.
            for c in range(n_centers):
                least = np.inf
                for k in range(n_sub):
                    v = near[k] + legs[c, sub[k]]
                    s[c, k] = v
                    if v < least:
                        least = v
                n_cand[c] = _sorted_within(s[c, :n_sub], least + 2.0 * slack, cand[c])
            for m in range(tile_start[t], tile_start[t + 1]):
                r = member[m]
                for c in range(n_centers):
                    b = np.inf
                    if allowed[c, r]:
                        for k in range(n_cand[c]):
                            q2 = cand[c, k]
                            if s[c, q2] - slack > b:
                                break
                            j = sub[q2]
                            v = _key(cell_xyz[r], edge_xyz[j], ms_per_radian, overhead_ms, penalty[j], j, tie_ms, legs[c, j])
                            if v < b:
                                b = v
                    best[c] = b
                choice[r] = _choose_one(best, prefer[r], absolute_ms, relative)
            # Ranks, per center some member chose: the candidates that can be among a member's best `keep`.
            for c in range(n_centers):
                chosen = False
                for m in range(tile_start[t], tile_start[t + 1]):
                    if choice[member[m]] == c:
                        chosen = True
                        break
                if not chosen:
                    continue
                count = _sorted_within(s[c, :n_sub], _kth_smallest(s[c, :n_sub], keep, buf) + 2.0 * slack, cand[c])
                for m in range(tile_start[t], tile_start[t + 1]):
                    r = member[m]
                    if choice[r] != c:
                        continue
                    filled = _rank_into(cell_xyz[r], cand[c], count, s[c], slack, sub, edge_xyz, ms_per_radian,
                                        overhead_ms, penalty, tie_ms, legs[c], ranked[r], ranked_cost[r])
                    # Fewer edges at a finite key than ranks: the rest hold others at infinite cost, as in the dense
                    # search (edges it may not use, which the router drops; or one whose figures are infinite).
                    e = 0
                    while filled < keep:
                        taken = False
                        for t2 in range(filled):
                            if ranked[r, t2] == e:
                                taken = True
                                break
                        if not taken:
                            ranked[r, filled] = e
                            ranked_cost[r, filled] = np.inf
                            filled += 1
                        e += 1
