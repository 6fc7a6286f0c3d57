"""Relief of edges beyond their budgets: a cell held on such an edge is re-placed, alone, in the room the table really
leaves (every other cell's decided route counted), and moves only where its whole demand then fits (Relief, and its
compiled loop relieve_in_order).

Why the room really left, and not the cell's planned route: the plan places the holding cells as if every one of them
moved, so a cell's planned route counts on room its held neighbours still use, and which planned route happens to fit
changes with each cycle's noise. Relief that followed the plan trickled on for as long as the loop ran (5.6-7.3 % of
cells an hour on the real loop, BENCHMARKS.md). Placed in the room really left, every move takes demand off edges
beyond budget and puts none beyond any, so the demand beyond budgets only falls and relief stops once nothing that
fits is left to move.

Sequential by nature (each move changes the room the next one is judged on). The greedy fill is the plan's own
(routing.greedy.fill_within_room): by rank, at most the cell's equal share of its best k per edge, up to `max_answers` edges.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import NDArray

from globalaccel.latency import PhysicsModel
from globalaccel.routing.capacity import SLIVER, Allocation, CapacityPlanner
from globalaccel.routing.compiled import kernel
from globalaccel.routing.greedy import best_first, fill_within_room
from globalaccel.routing.route_costs import RouteColumns, RouteCosts
from globalaccel.routing.table import CellState
from globalaccel.settings import RoutingSettings

# An edge is relieved when beyond its budget by more than this share of it (relief does not chase float slivers), and
# a cell moves only where that takes at least this share of the demand it carried on such edges back within budgets
# (a cell with a sliver over budget is not sent elsewhere whole for it). In process (prod, 0-20 ms of jitter, 128 ranks,
# two margins), relief left 1.68 % of demand beyond budgets with 0.5, 1.25 % with 0.25, 0.86 % with 0.1, 0.76 % with 0.
RELIEF_TOLERANCE = 0.02
RELIEF_LEAST_CUT = 0.1
# A relieved cell's edges: among the RELIEF_RANKS nearest (physics) for its center, none slower than its slowest answer
# now by more than RELIEF_REACH hysteresis margins. In process (prod, 0-20 ms of jitter), relief left 2.37 % of demand
# beyond budgets with 32 ranks and one margin, 1.68 % with 128 and two, 1.42 % with 256 and four.
RELIEF_RANKS = 128
RELIEF_REACH = 2.0
# Cells are ranked and tried in batches of this many, most demand beyond budgets first, until a batch moves one:
# ranking is most of relief's cost (at 100,000 cells in a world beyond its budgets, 39,000 cells ranked at once into
# candidate search's full-size arrays took 0.38 s of an evaluation). Prod has hundreds.
RELIEF_BATCH = 1024
# (cell positions, their centers) -> each one's edges for that center, ranked (catalog positions, -1 where none), and costs
Ranks = Callable[[NDArray[np.intp], NDArray[np.intp]], tuple[NDArray[np.int64], NDArray[np.float64]]]


class Relief:
    """Per router: which held cells leave edges beyond their budgets, and for which routes."""

    def __init__(self, capacity: CapacityPlanner, costs: RouteCosts, settings: RoutingSettings, demand: NDArray[np.float64],
                 id_rank: NDArray[np.intp]) -> None:
        self._capacity, self._costs, self._settings = capacity, costs, settings
        self._demand, self._id_rank = demand, id_rank  # per cell position
        # What the last evaluation that moved nothing was given: the same again moves nothing again (relief is
        # deterministic), and 100,000 cells with tens of thousands on edges beyond budget cost 0.19 s a cycle to re-rank.
        self._idle: bytes | None = None

    def moves(self, decisions: Sequence[tuple[int, CellState, str]], on_current: Sequence[bool], served: RouteColumns,
              allocation: Allocation, choice: NDArray[np.intp], now: float, lookup: NDArray[np.float64], physics: PhysicsModel,
              ranks: Ranks, ranks_key: bytes) -> list[int]:
        """A hold is for noise, never for overload: the decisions (indices) of cells held on an edge beyond its budget
        (by more than RELIEF_TOLERANCE of it) that move to a route in the room really left, written into `allocation`'s
        rows of those cells. Only cells outside their hold-down, whose fresh center is their current one (center loads
        stay as they are), most demand on edges beyond budget first, and only onto edges no slower than the slowest the
        cell has now plus the hysteresis margin (costed on physics, `lookup` and `physics`, like the ranks): relief
        trades an overloaded edge for a near one with room, never a nearby metro for another continent (dev's DE, its
        region full, would go to Seoul). Relief only takes demand off edges beyond budget and puts none beyond any: the
        demand beyond budgets only falls, and once what fits has moved, nothing does.

        Without it, what was placed beyond budgets stayed for good: those routes stay valid, and hysteresis keeps a valid
        route unless another is faster by the margin. (The first, noisy tables' placements are the larger part, and
        provisional routes deal with them: routing.hysteresis.)

        `decisions` and `on_current`: the router's, per decided cell (rows of `served`, the routes as decided); `ranks`:
        each of some cells' edges for a center, ranked (Router: on physics), the same whenever `ranks_key` is."""
        limit = allocation.limit
        room = limit - self._capacity.carried(served.cells, served.edges, served.weights)
        beyond = limit * (RELIEF_TOLERANCE + 1e-9)
        over = room < -beyond
        if not over.any():
            return []
        hold_down = self._settings.hysteresis.hold_down_s
        rows = [i for i, ((pos, decided, _), kept) in enumerate(zip(decisions, on_current, strict=True))
                if kept and (decided.last_switch_at is None or now - decided.last_switch_at >= hold_down)]
        if not rows:
            return []
        at = np.array(rows, dtype=np.intp)
        positions = served.cells[at]
        edges = served.edges[at]
        touching = ((edges >= 0) & over[np.maximum(edges, 0)]).any(axis=1) & (served.center[at] == choice[positions])
        at, positions, edges = at[touching], positions[touching], edges[touching]
        if not at.size:
            return []
        weights = served.weights[at]
        demand = self._demand[positions]
        carried = (demand[:, None] * np.where((edges >= 0) & over[np.maximum(edges, 0)], weights, 0.0)).sum(axis=1)
        order = np.lexsort((self._id_rank[positions], -carried))
        at, positions, edges, weights, demand = at[order], positions[order], edges[order], weights[order], demand[order]
        given = hashlib.blake2b(b"".join([limit.tobytes(), room.tobytes(), positions.tobytes(), served.center[at].tobytes(),
                                          edges.tobytes(), weights.tobytes(), lookup.tobytes(), repr(physics.settings).encode(),
                                          ranks_key])).digest()
        if given == self._idle:
            return []
        hyst = self._settings.hysteresis
        centers = served.center[at]
        now_worst = self._costs.per_answer(RouteColumns(positions, centers, edges, weights), lookup, physics).max(axis=1)
        reach = now_worst + RELIEF_REACH * np.maximum(hyst.absolute_ms, hyst.relative * now_worst)
        width = allocation.edges.shape[1]
        out_edges = np.full((at.size, width), -1, dtype=np.int64)
        out_shares = np.zeros((at.size, width))
        out_count = np.zeros(at.size, dtype=np.int64)
        moved = np.zeros(at.size, dtype=bool)
        # Batch by batch, until one moves a cell (the next evaluation, given what that changed, goes on from the top):
        # a batch that moves nothing must not hide the cells after it.
        for lo in range(0, at.size, RELIEF_BATCH):
            part = slice(lo, lo + RELIEF_BATCH)
            candidates, cost = ranks(positions[part], centers[part])
            candidates = np.ascontiguousarray(np.where(cost <= reach[part, None], candidates, -1))
            relieve_in_order(candidates, np.ascontiguousarray(demand[part]), np.ascontiguousarray(edges[part], dtype=np.int64),
                             np.ascontiguousarray(weights[part]), room, beyond, self._settings.answers, self._settings.max_answers,
                             SLIVER, RELIEF_LEAST_CUT, out_edges[part], out_shares[part], out_count[part], moved[part])
            if moved[part].any():
                break
        self._idle = None if moved.any() else given
        allocation.edges[positions[moved]] = out_edges[moved]
        allocation.weights[positions[moved]] = out_shares[moved]
        return sorted(at[moved].tolist())


@kernel
def relieve_in_order(candidates: NDArray[np.int64], demand: NDArray[np.float64], current_edges: NDArray[np.int64],
                     current_weights: NDArray[np.float64], room: NDArray[np.float64], beyond: NDArray[np.float64], k: int,
                     max_answers: int, sliver: float, least_cut: float, out_edges: NDArray[np.int64],
                     out_shares: NDArray[np.float64], out_count: NDArray[np.int64], moved: NDArray[np.bool_]) -> None:
    """Row m of `candidates` (its ranked edges as catalog positions, -1 where none), `demand` and its current route
    (`current_edges`, -1 padded, and `current_weights`) is the m-th cell to try. An edge is beyond its budget where
    room[e] < -beyond[e]. A cell with demand on such an edge is re-placed with its own load taken off first; the move
    is made only where its whole demand fits in the room and the demand beyond budgets it takes away, summed over the
    edges it touches, is at least `least_cut` times what it carried on edges beyond budget (and more than float
    rounding). A move made writes the new route best first (out_edges -1 padded, out_shares, out_count), takes it off
    `room` (modified in place) and sets moved[m]."""
    width = candidates.shape[1]
    n_answers = max(max_answers, k)
    cand = np.empty(width, dtype=np.int64)
    edges = np.empty(n_answers, dtype=np.int64)
    amounts = np.empty(n_answers, dtype=np.float64)
    ranks = np.empty(n_answers, dtype=np.int64)
    spared_edges = np.empty_like(edges)
    spared_amounts = np.empty_like(amounts)
    spared_ranks = np.empty_like(ranks)
    held = current_edges.shape[1]
    for m in range(candidates.shape[0]):
        d = demand[m]
        if d <= 0.0:
            continue
        carried = 0.0  # demand this cell puts on edges beyond budget
        for j in range(held):
            e = current_edges[m, j]
            if e >= 0 and room[e] < -beyond[e]:
                carried += d * current_weights[m, j]
        if carried <= 0.0:
            continue
        n_cand = 0
        for r in range(width):
            if candidates[m, r] >= 0:
                cand[n_cand] = candidates[m, r]
                n_cand += 1
        if n_cand == 0:
            continue
        for j in range(held):  # the cell's own load off first: its place may be kept where it fits
            e = current_edges[m, j]
            if e >= 0:
                room[e] += d * current_weights[m, j]
        tiny = d * 1e-9
        taken, left = fill_within_room(d, cand, n_cand, room, k, max_answers, sliver, edges, amounts, ranks, spared_edges,
                                       spared_amounts, spared_ranks)
        cut = 0.0
        if left <= tiny:
            # Demand beyond budget on the edges touched, before (with the cell's current load) and after (with its new).
            for j in range(held):
                e = current_edges[m, j]
                if e < 0:
                    continue
                seen = False
                for s in range(j):
                    if current_edges[m, s] == e:
                        seen = True
                if seen:
                    continue
                placed = 0.0
                for t in range(taken):
                    if edges[t] == e:
                        placed += amounts[t]
                own = 0.0
                for s in range(held):
                    if current_edges[m, s] == e:
                        own += d * current_weights[m, s]
                cut += max(0.0, own - room[e]) - max(0.0, placed - room[e])
        if left > tiny or cut <= tiny or cut < least_cut * carried:
            for j in range(held):  # no move: the cell's load back where it was
                e = current_edges[m, j]
                if e >= 0:
                    room[e] -= d * current_weights[m, j]
            continue
        best_first(edges, amounts, ranks, taken)
        for t in range(out_edges.shape[1]):
            out_edges[m, t] = edges[t] if t < taken else -1
            out_shares[m, t] = amounts[t] / d if t < taken else 0.0
            if t < taken:
                room[edges[t]] -= amounts[t]
        out_count[m] = taken
        moved[m] = True
