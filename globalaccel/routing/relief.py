"""Relief of edges beyond their budgets, compiled: held cells leave such an edge for their planned route, one after
another, each only where that route fits in the room the ones before it left.

Sequential by nature (each move changes the room the next one is judged on). In Python, with a dict of per-edge
changes per cell, it was 0.35 s of a 0.9 s evaluation at 100,000 cells whose world is far beyond its budgets
(cProfile); compiled, the same float operations in the same order (tests/test_routing_kernels.py holds it to the
Python rule on random worlds).

A cell's move changes each edge it touches by demand x (planned share - current share), summed over its planned
answers first and then its current ones, as `CapacityPlanner._switch_delta` does.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from globalaccel.routing.compiled import kernel


@kernel
def move_in_order(rows: NDArray[np.int64], check: bool, demand: NDArray[np.float64], current_edges: NDArray[np.int64],
                  current_weights: NDArray[np.float64], fresh_edges: NDArray[np.int64], fresh_weights: NDArray[np.float64],
                  room: NDArray[np.float64], slack: NDArray[np.float64], beyond: NDArray[np.float64], least_cut: float,
                  moved: NDArray[np.bool_]) -> None:
    """For each row r of `rows` in turn, the move from its current route to its fresh one (edges as catalog positions,
    -1 padded). With `check`, made only where every edge it adds demand to keeps room of at least -slack, and the demand
    it takes off edges beyond their budget by more than the tolerance (room below -beyond; at most the edge's excess)
    is at least `least_cut` times the demand its current route carries (so that a route only re-ordered, or with shares
    one rounding apart, is no move); without, always. A move made takes its changes off `room` (modified
    in place) and sets moved[r]."""
    width = current_edges.shape[1] + fresh_edges.shape[1]
    edges = np.empty(width, dtype=np.int64)
    deltas = np.empty(width, dtype=np.float64)
    for r in rows:
        n = 0
        for j in range(fresh_edges.shape[1] + current_edges.shape[1]):
            planned = j < fresh_edges.shape[1]
            e = fresh_edges[r, j] if planned else current_edges[r, j - fresh_edges.shape[1]]
            if e < 0:
                continue
            d = demand[r] * (fresh_weights[r, j] if planned else current_weights[r, j - fresh_edges.shape[1]])
            at = -1
            for t in range(n):
                if edges[t] == e:
                    at = t
                    break
            if at < 0:
                edges[n] = e
                deltas[n] = d if planned else 0.0 - d
                n += 1
            elif planned:
                deltas[at] += d
            else:
                deltas[at] -= d
        if check:
            carried = 0.0
            for j in range(current_edges.shape[1]):
                if current_edges[r, j] >= 0:
                    carried += demand[r] * current_weights[r, j]
            cut, fits = 0.0, True
            for t in range(n):
                e = edges[t]
                if deltas[t] < 0 and room[e] < -beyond[e]:
                    cut += min(-deltas[t], -room[e])
                if deltas[t] > 0 and room[e] - deltas[t] < -slack[e]:
                    fits = False
            if not (fits and cut > 0.0 and cut >= least_cut * carried):
                continue
        for t in range(n):
            room[edges[t]] -= deltas[t]
        moved[r] = True
