"""The table's routes, built from the router's decisions, and each cell's line of the table hash.

Both are kept across evaluations: a cell whose decision and answers' RTTs are as last time gets the very route object
it had, and a cell whose decision is unchanged keeps its hash line. At 100,000 cells, building every route and its
answers anew, and the cycle collector's walk over them afterwards, were 0.4 s of a 1.0 s evaluation (cProfile).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from globalaccel.cells import Cell
from globalaccel.residency import Eligibility
from globalaccel.routing.table import REASON_BEST, REASON_FALLBACK, Answer, CellRoute, CellState, route_line


class RouteBuilder:
    """Per router: builds each evaluation's routes and hash lines, keeping the last ones."""

    def __init__(self, cells: Sequence[Cell], addresses: dict[str, dict[str, str]],
                 fallback_of: Callable[[int, int], tuple[str, ...]]) -> None:
        self._cells = cells
        self._addresses = addresses  # center -> edge id -> the address through that edge to that center
        self._fallback_of = fallback_of  # (cell position, center position) -> the cell's fallback order
        # cell -> (center, edges, weights, fallback) last hashed, and its line of the table hash
        self._lines: dict[str, tuple[tuple[str, tuple[str, ...], tuple[float, ...], tuple[str, ...]], str]] = {}
        # cell -> (the decided state, its answers' RTTs, the route built from them) last time
        self._routes: dict[str, tuple[CellState, list[float], CellRoute]] = {}

    def build(self, decisions: list[tuple[int, CellState, str]], answer_costs: list[list[float]], centers: list[int],
              eligibility: dict[str, Eligibility], routes: dict[str, CellRoute], new_cells: dict[str, CellState],
              lines: dict[str, str]) -> None:
        """Per decision (cell position, decided route, reason), with its answers' RTTs and its center's position: the
        cell's route into `routes`, its state into `new_cells`, its hash line into `lines`."""
        address, cells, kept_lines, kept_routes, fallback_of = (self._addresses, self._cells, self._lines, self._routes,
                                                                 self._fallback_of)
        # Built with tuple.__new__: a NamedTuple's own constructor is a Python function, twice the cost, and this loop
        # builds one route and its answers per cell (100,000 at a time).
        build = tuple.__new__
        for (pos, decided, reason), costs, center_at in zip(decisions, answer_costs, centers, strict=True):
            cell, center = cells[pos], decided.center
            assert center is not None
            if reason == REASON_BEST and center not in eligibility[cell.country].tiers[0]:
                reason = REASON_FALLBACK
            fallback = fallback_of(pos, center_at)
            cid = cell.id
            rtts = costs[: len(decided.edges)]
            # The very route object of last time where the decision and RTTs are as they were: equal routes, and a
            # table's routes are immutable. (Its fallback order depends only on the cell and its center, which the same
            # decided state keeps.)
            built = kept_routes.get(cid)
            if built is not None and built[0] is decided and built[1] == rtts and built[2].reason == reason:
                routes[cid] = built[2]
            else:
                by_edge = address[center]
                answers = tuple([build(Answer, (e, by_edge[e], w, c))
                                 for e, w, c in zip(decided.edges, decided.weights, rtts, strict=True)])
                route = routes[cid] = build(CellRoute, (cid, cell.country, center, answers, reason, fallback))
                kept_routes[cid] = (decided, rtts, route)
            new_cells[cid] = decided
            # The hash's line of a cell whose decision is unchanged (most, most cycles) is not formatted again.
            key = (center, decided.edges, decided.weights, fallback)
            known = kept_lines.get(cid)
            # The very weights tuple hashed before (a held or unchanged route keeps it), not one that compares
            # equal: 1 == 1.0, but their reprs differ, and the line holds the repr.
            if known is None or known[0][2] is not decided.weights or known[0] != key:
                known = kept_lines[cid] = (key, route_line(cid, *key))
            lines[cid] = known[1]
