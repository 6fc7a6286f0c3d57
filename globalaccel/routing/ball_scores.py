"""Candidate search's scoring of each cell's nearest-edge ball, compiled.

Per cell and edge of its ball the key is client leg (physics of the angle) + the edge's measured excess +
position * TIE_BREAK_MS, infinity where the cell's rule forbids the edge; via center c it adds the edge's backbone
leg to c. numpy did this with a (cells x ball) temporary per step and per center, and a partition and sort for the
ranks: about 38 ms of prod's cycle with every path measured, most cells needing a ball of 512 edges. Here each cell is
one pass over its ball, keeping its best `keep` in a small sorted buffer. Every float is computed by the same
operations in the same order as numpy did (IEEE addition and multiplication, no fused multiply-add: numba contracts
only with fastmath), so the keys, and so the choices and ranks, are the same to the last bit; only the order among
forbidden edges (all infinite) is unspecified, and the router drops those
(tests/test_routing_kernels.py compares both on random worlds).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from globalaccel.routing.compiled import kernel


@kernel
def ball_best(angle: NDArray[np.float64], near: NDArray[np.int64], at: NDArray[np.int64], ms_per_radian: float,
              overhead_ms: float, penalty: NDArray[np.float64], tie_ms: float, center_edge_t: NDArray[np.float64],
              edge_ok: NDArray[np.bool_], group: NDArray[np.int64], healthy_idx: NDArray[np.int64],
              key_base: NDArray[np.float64], best: NDArray[np.float64]) -> None:
    """Row i is ball line at[i] of `angle` / `near` (its edges as positions among the healthy ones; angle in radians).
    Writes key_base (R, W): each edge's key before its backbone leg; best (C, R): the cheapest key via each center.
    `penalty` (H,) and `center_edge_t` (H, C) by healthy position; `edge_ok` (G, E) with `group` (R,) the row's edge
    group, or an empty `group` when every edge is allowed to every cell."""
    constrained = group.size > 0
    n_centers = center_edge_t.shape[1]
    for i in range(at.size):
        line = at[i]
        for c in range(n_centers):
            best[c, i] = np.inf
        for w in range(near.shape[1]):
            j = near[line, w]
            if constrained and not edge_ok[group[i], healthy_idx[j]]:
                key = np.inf
            else:
                key = angle[line, w] * ms_per_radian + overhead_ms + penalty[j] + j * tie_ms
            key_base[i, w] = key
            for c in range(n_centers):
                v = key + center_edge_t[j, c]
                if v < best[c, i]:
                    best[c, i] = v


@kernel
def ball_ranks(key_base: NDArray[np.float64], near: NDArray[np.int64], at: NDArray[np.int64], choice: NDArray[np.int64],
               center_edge_t: NDArray[np.float64], ranked: NDArray[np.int64], ranked_cost: NDArray[np.float64]) -> None:
    """For each row with a center (choice >= 0): its ranked.shape[1] cheapest edges via that center, cheapest first
    (ranked: healthy positions; ranked_cost: their keys). Rows without one are left as they are."""
    keep = ranked.shape[1]
    for i in range(at.size):
        c = choice[i]
        if c < 0:
            continue
        line = at[i]
        filled = 0
        for w in range(near.shape[1]):
            j = near[line, w]
            v = key_base[i, w] + center_edge_t[j, c]
            if filled == keep and not v < ranked_cost[i, keep - 1]:
                continue
            s = filled - 1 if filled < keep else keep - 2
            while s >= 0 and ranked_cost[i, s] > v:
                ranked_cost[i, s + 1] = ranked_cost[i, s]
                ranked[i, s + 1] = ranked[i, s]
                s -= 1
            ranked_cost[i, s + 1] = v
            ranked[i, s + 1] = j
            if filled < keep:
                filled += 1
