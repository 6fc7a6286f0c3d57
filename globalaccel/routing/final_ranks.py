"""Each cell's final candidate ranks, compiled: current edges favoured, forbidden edges dropped.

Two per-row reorders of every cell's `keep` candidates ran in numpy over (cells x ranks x current edges) temporaries
and a stable argsort each: about 0.1 s of an evaluation of 100,000 cells. Here each row is one pass and an insertion
sort of its few ranks, with the same floats and the same stable order (NaN last, as numpy sorts them), so the ranks
are the same (tests/test_routing_kernels.py compares both on random worlds).

- Where the cell keeps its current center, its current edges' costs are lowered by the hysteresis margin,
  max(absolute_ms, relative * cost), and the ranks re-sorted stably: noise cannot reshuffle near-equal edges.
- Edges the cell's rule forbids on its path (infinite cost, ranked last) are never offered: the allowed ones move
  up in rank order and -1 fills the rest; a cell without a center gets -1 throughout.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from globalaccel.routing.compiled import kernel


@kernel
def _after(a: float, b: float) -> bool:
    """a sorts after b: larger, or NaN against a number (numpy's order)."""
    return a > b or (np.isnan(a) and not np.isnan(b))


@kernel
def final_ranks(ranked: NDArray[np.int64], cost: NDArray[np.float64], choice: NDArray[np.int64], prefer: NDArray[np.int64],
                current: NDArray[np.int64], absolute_ms: float, relative: float, healthy_idx: NDArray[np.int64],
                edge_ok: NDArray[np.bool_], group: NDArray[np.int64], out: NDArray[np.int64]) -> None:
    """`ranked` (N, K): candidates as healthy positions, cheapest first by `cost` (N, K); `choice` and `prefer` (N,):
    the chosen and the current center (-1: none); `current` (N, P): the current edges as healthy positions (-1: none).
    `edge_ok` (G, E) with `group` (N,) each row's edge group, or an empty `group`: every edge allowed.
    Writes `out` (N, K): catalog positions, best first, -1 after the last allowed."""
    n_rows, k = ranked.shape
    constrained = group.size > 0
    # As numpy did: once any cell keeps its center, every row is sorted stably by its (adjusted) costs, which leaves
    # the rows search ranked cheapest first as they are; when none does, none is touched.
    any_favoured = False
    for n in range(n_rows):
        if choice[n] >= 0 and choice[n] == prefer[n]:
            any_favoured = True
            break
    keys = np.empty(k)
    order = np.empty(k, dtype=np.int64)
    for n in range(n_rows):
        if choice[n] < 0:
            out[n, :] = -1
            continue
        favour = choice[n] == prefer[n]
        for r in range(k):
            c = cost[n, r]
            if favour:
                for p in range(current.shape[1]):
                    if current[n, p] >= 0 and current[n, p] == ranked[n, r]:
                        margin = relative * c
                        if not np.isnan(margin) and margin < absolute_ms:  # np.maximum: NaN wins, else the larger
                            margin = absolute_ms
                        c = c - margin
                        break
            keys[r] = c
            order[r] = r
        if any_favoured:  # stable insertion sort by key
            for r in range(1, k):
                key, at = keys[r], order[r]
                s = r - 1
                while s >= 0 and _after(keys[s], key):
                    keys[s + 1], order[s + 1] = keys[s], order[s]
                    s -= 1
                keys[s + 1], order[s + 1] = key, at
        w = 0
        for r in range(k):
            e = healthy_idx[ranked[n, order[r]]]
            if not constrained or edge_ok[group[n], e]:
                out[n, w] = e
                w += 1
        for r in range(w, k):
            out[n, r] = -1
