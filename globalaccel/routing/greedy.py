"""The capacity plan's greedy split, compiled: cells placed one after another, each within the room the cells
before it left.

It is sequential by nature (each cell's split depends on every split before it), so numpy cannot do it in bulk,
and in Python it was the router's largest cost: about 2.3 of 4.0 s for 100,000 cells, tens of ms of prod's
cycle with every path measured (cProfile, BENCHMARKS.md). numba compiles this function to machine code once and
keeps it on disk (routing.compiled); it computes exactly what the Python loop did, float operation for float
operation, so the tables it gives are the same to the last bit
(tests/test_routing_kernels.py checks that against the Python rule on random worlds).

The rule, per cell (largest demand first; the caller orders them):
- by rank, at most its equal share of the best k (`per_answer`) per edge, within each edge's room, up to
  `max_answers` edges, skipping edges with no room;
- if that leaves demand unplaced, again without slivers (room under `sliver` of an answer's share) first,
  kept only where it places more: slivers take one of the cell's few answers and carry almost nothing;
- nothing placed at all: its best k in equal shares, over budget;
- demand still unplaced goes over budget pro rata on the edges taken (reported as overflow, never hidden);
- answers best first; the room each edge has left is reduced by what the cell put there.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from globalaccel.routing.compiled import kernel


@kernel
def _fill(demand: float, cand: NDArray[np.int64], n_cand: int, room: NDArray[np.float64], per_answer: float,
          max_answers: int, first_least: float, second_least: float, passes: int, edges: NDArray[np.int64],
          amounts: NDArray[np.float64], ranks: NDArray[np.int64]) -> tuple[int, float]:
    """By rank, at most `per_answer` on an edge, within its room, up to `max_answers` edges; pass p takes only edges
    with at least its least room (or what is left to place). Fills edges/amounts/ranks in the order taken and returns
    (how many taken, demand left)."""
    left = demand
    tiny = demand * 1e-9
    taken = 0
    for p in range(passes):
        least = first_least if p == 0 else second_least
        for r in range(n_cand):
            if left <= tiny or taken >= max_answers:
                break
            e = cand[r]
            seen = False
            for t in range(taken):
                if edges[t] == e:
                    seen = True
                    break
            if seen:
                continue
            space = room[e]
            if space <= tiny or space < min(least, left):
                continue
            amount = min(space, per_answer, left)
            edges[taken] = e
            amounts[taken] = amount
            ranks[taken] = r
            taken += 1
            left -= amount
    return taken, left


@kernel
def fill_within_room(demand: float, cand: NDArray[np.int64], n_cand: int, room: NDArray[np.float64], k: int, max_answers: int,
                     sliver: float, edges: NDArray[np.int64], amounts: NDArray[np.float64], ranks: NDArray[np.int64],
                     spared_edges: NDArray[np.int64], spared_amounts: NDArray[np.float64],
                     spared_ranks: NDArray[np.int64]) -> tuple[int, float]:
    """One cell's split within `room` (not modified): by rank, at most its equal share of the best k per edge; if that
    leaves demand unplaced, again without slivers first, kept only where it places more. Fills edges/amounts/ranks in
    the order taken (spared_*: scratch) and returns (how many taken, demand left)."""
    per_answer = demand / min(k, n_cand)
    tiny = demand * 1e-9
    taken, left = _fill(demand, cand, n_cand, room, per_answer, max_answers, tiny, tiny, 1, edges, amounts, ranks)
    if left > tiny:
        spared, spared_left = _fill(demand, cand, n_cand, room, per_answer, max_answers, per_answer * sliver, tiny, 2,
                                    spared_edges, spared_amounts, spared_ranks)
        if spared_left < left - tiny:
            taken, left = spared, spared_left
            edges[:spared] = spared_edges[:spared]
            amounts[:spared] = spared_amounts[:spared]
            ranks[:spared] = spared_ranks[:spared]
    return taken, left


@kernel
def best_first(edges: NDArray[np.int64], amounts: NDArray[np.float64], ranks: NDArray[np.int64], taken: int) -> None:
    """The first `taken` answers sorted by rank, best first: an insertion sort (at most max_answers, ranks distinct)."""
    for t in range(1, taken):
        e, a, r = edges[t], amounts[t], ranks[t]
        s = t - 1
        while s >= 0 and ranks[s] > r:
            edges[s + 1], amounts[s + 1], ranks[s + 1] = edges[s], amounts[s], ranks[s]
            s -= 1
        edges[s + 1], amounts[s + 1], ranks[s + 1] = e, a, r


@kernel
def place_in_order(candidates: NDArray[np.int64], demand: NDArray[np.float64], room: NDArray[np.float64], k: int,
                   max_answers: int, sliver: float, out_edges: NDArray[np.int64], out_shares: NDArray[np.float64],
                   out_count: NDArray[np.int64]) -> None:
    """Row m of `candidates` (ranked edge positions, -1 where none) and `demand` is the m-th cell to place. Writes each
    one's edges, best first (out_edges, -1 padded), its shares of its demand (out_shares) and how many (out_count);
    takes what each puts on an edge off `room` (modified in place)."""
    width = candidates.shape[1]
    cand = np.empty(width, dtype=np.int64)
    edges = np.empty(max(max_answers, k), dtype=np.int64)
    amounts = np.empty(max(max_answers, k), dtype=np.float64)
    ranks = np.empty(max(max_answers, k), dtype=np.int64)
    spared_edges = np.empty_like(edges)
    spared_amounts = np.empty_like(amounts)
    spared_ranks = np.empty_like(ranks)
    for m in range(candidates.shape[0]):
        n_cand = 0
        for r in range(width):
            if candidates[m, r] >= 0:
                cand[n_cand] = candidates[m, r]
                n_cand += 1
        d = demand[m]
        if d <= 0.0:  # nothing to place: its best k, in equal shares, nothing taken off the room
            best = min(k, n_cand)
            for j in range(best):
                out_edges[m, j] = cand[j]
                out_shares[m, j] = 1.0 / best
            out_count[m] = best
            continue
        tiny = d * 1e-9
        taken, left = fill_within_room(d, cand, n_cand, room, k, max_answers, sliver, edges, amounts, ranks, spared_edges,
                                       spared_amounts, spared_ranks)
        if taken == 0:  # every ranked edge full: its best k, over budget
            best = min(k, n_cand)
            for j in range(best):
                edges[j] = cand[j]
                amounts[j] = d / best
                ranks[j] = j
            taken = best
            left = 0.0
        if left > tiny:  # the rest over budget, pro rata on the edges taken
            placed = 0.0
            for t in range(taken):  # in the order taken, as Python's sum() over the dict
                placed += amounts[t]
            for t in range(taken):
                amounts[t] = amounts[t] + left * amounts[t] / placed
        best_first(edges, amounts, ranks, taken)
        for t in range(taken):
            out_edges[m, t] = edges[t]
            out_shares[m, t] = amounts[t] / d
            room[edges[t]] -= amounts[t]
        out_count[m] = taken
