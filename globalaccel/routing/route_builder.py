"""From the router's decisions to the table's columns: each cell's decided state, its reason, and its line of the table
hash. The routes themselves are built only when read (routing.table_routes).

Each cell's hash line is kept across evaluations: a cell whose decision is the very state of last time (most, most
cycles) keeps its line without looking up its failover order or formatting anything.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from globalaccel.cells import Cell
from globalaccel.routing.table import REASON_BEST, REASON_FALLBACK, CellState, route_line

_LineKey = tuple[str | None, tuple[str, ...], tuple[float, ...], tuple[str, ...]]  # center, edges, weights, failover order


class RouteBuilder:
    """Per router: turns each evaluation's decisions into the table's columns, keeping the last hash lines."""

    def __init__(self, cells: Sequence[Cell], fallback_of: Callable[[int, int], tuple[str, ...]]) -> None:
        self._cells = cells
        self._fallback_of = fallback_of  # (cell position, center position) -> the cell's fallback order
        # cell -> (the decided state last hashed, its key, its line of the table hash)
        self._lines: dict[str, tuple[CellState, _LineKey, str]] = {}

    def build(self, decisions: list[tuple[int, CellState, str]], centers: list[int], in_first_tier: list[bool],
              states: list[CellState], reasons: list[str], lines: dict[str, str]) -> None:
        """Per decision (cell position, decided route, reason), with its center's position and whether that center is
        in the cell's first tier now (a best route elsewhere is a fallback): the decided route into `states` and the
        reason into `reasons` (both by cell position), the cell's hash line into `lines`."""
        cells, kept, fallback_of = self._cells, self._lines, self._fallback_of
        for (pos, decided, reason), center_at, first in zip(decisions, centers, in_first_tier, strict=True):
            if reason == REASON_BEST and not first:
                reason = REASON_FALLBACK
            states[pos] = decided
            reasons[pos] = reason
            cid = cells[pos].id
            known = kept.get(cid)
            if known is not None and known[0] is decided:
                lines[cid] = known[2]
                continue
            key = (decided.center, decided.edges, decided.weights, fallback_of(pos, center_at))
            # The very weights tuple hashed before (a held route keeps it), not one that compares equal: 1 == 1.0, but
            # their reprs differ, and the line holds the repr.
            fresh = known is None or known[1][2] is not decided.weights or known[1] != key
            line = route_line(cid, *key) if fresh else known[2]  # type: ignore[index]
            kept[cid] = (decided, key, line)
            lines[cid] = line
