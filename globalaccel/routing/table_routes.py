"""A table's routes held as columns, each cell's `CellRoute` built only when someone reads it.

The router decides every cell each evaluation, but its answers' RTTs move with every measurement, so a table of route
objects was 100,000 routes and 300,000 answers built anew each cycle (and walked by the cycle collector after), 0.6 s of
a 1.2 s evaluation at 100,000 cells (cProfile). Held as columns (the decided states, the reasons and the answers' RTTs
as one array), the table is complete when the router returns it: nothing is left to compute, only to present. A reader
of one cell (the DNS server's publish, a change log) builds that cell's route; a reader of them all pays for them all,
once per table: a route, once built, is kept.
"""

from __future__ import annotations

from collections.abc import Callable, ItemsView, Iterator, Mapping, Sequence, ValuesView

import numpy as np
from numpy.typing import NDArray

from globalaccel.routing.heap import cycle_collection_paused
from globalaccel.routing.table import Answer, CellRoute, CellState


class TableRoutes(Mapping[str, CellRoute]):
    """cell id -> CellRoute, for every cell a router routes, read-only. Rows are the router's cells, in its order."""

    __slots__ = ("_addresses", "_built", "_center_pos", "_countries", "_fallback_of", "_ids", "_index", "_reasons",
                 "_rtts", "_states")

    def __init__(self, ids: Sequence[str], index: Mapping[str, int], countries: Sequence[str], states: Sequence[CellState],
                 reasons: Sequence[str], rtts: NDArray[np.float64], addresses: Mapping[str, Mapping[str, str]],
                 center_pos: Mapping[str, int], fallback_of: Callable[[int, int], tuple[str, ...]]) -> None:
        """Per row n: cell `ids[n]` of `countries[n]`, its decided route `states[n]` (center None: no route), why
        (`reasons[n]`), and its answers' RTTs `rtts[n, :len(states[n].edges)]`. `addresses`: center -> edge id -> the
        address through that edge to that center; `fallback_of`: (row, center position) -> the cell's failover order."""
        if not len(ids) == len(states) == len(reasons) == len(countries) == rtts.shape[0]:
            raise ValueError(f"columns of unequal length: {len(ids)} ids, {len(states)} states, {len(reasons)} reasons, "
                             f"{len(countries)} countries, {rtts.shape[0]} rows of RTTs")
        self._ids, self._index, self._countries, self._states, self._reasons = ids, index, countries, states, reasons
        self._rtts, self._addresses, self._center_pos, self._fallback_of = rtts, addresses, center_pos, fallback_of
        self._built: dict[str, CellRoute] = {}

    def __getitem__(self, cell_id: str) -> CellRoute:
        route = self._built.get(cell_id)
        if route is None:
            route = self._built[cell_id] = self._build(self._index[cell_id])  # KeyError: not a cell of this table
        return route

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, cell_id: object) -> bool:
        return cell_id in self._index

    def __repr__(self) -> str:
        return f"TableRoutes({len(self)} cells, {len(self._built)} built)"

    def values(self) -> ValuesView[CellRoute]:
        self._build_all()
        return super().values()

    def items(self) -> ItemsView[str, CellRoute]:
        self._build_all()
        return super().items()

    def _build_all(self) -> None:
        """Every route not built yet, at once, the cycle collector paused (routing.heap): a reader of every route (the
        loop's verify, its exporter) would otherwise pay the collector's walks over them, twice the building itself."""
        if len(self._built) == len(self._ids):
            return
        built = self._built
        with cycle_collection_paused():
            for row, cid in enumerate(self._ids):
                if cid not in built:
                    built[cid] = self._build(row)

    def __reduce__(self) -> tuple[type[dict[str, CellRoute]], tuple[dict[str, CellRoute]]]:
        # Pickled (or deep-copied) as the plain dict of routes it stands for: the columns refer to the router that made
        # them (its failover lookup is a closure, which does not pickle).
        return dict, (dict(self.items()),)

    def _build(self, row: int) -> CellRoute:
        cid, country, state, reason = self._ids[row], self._countries[row], self._states[row], self._reasons[row]
        if state.center is None:
            return CellRoute(cid, country, None, (), reason)
        by_edge = self._addresses[state.center]
        rtts = self._rtts[row, : len(state.edges)].tolist()
        # tuple.__new__ rather than the NamedTuples' own constructors (Python functions, twice the cost): a reader of
        # every route builds 100,000 routes and 300,000 answers at a time.
        build = tuple.__new__
        answers = tuple([build(Answer, (e, by_edge[e], w, rtt)) for e, w, rtt in zip(state.edges, state.weights, rtts, strict=True)])
        fallback = self._fallback_of(row, self._center_pos[state.center])
        return build(CellRoute, (cid, country, state.center, answers, reason, fallback))
