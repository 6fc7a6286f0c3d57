"""Each cell's current route (the router state fed back) as arrays, read once per evaluation.

Candidate search favours current centers and edges, hysteresis asks whether each current route may stay, and the
capacity plan keeps the routes that may stay in place: three per-cell loops over the state became one conversion
here and array operations there. A state can name what the stack no longer has (a restart after an edge or center
was removed): such a center or edge is UNKNOWN, never mistaken for another or for padding.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

from globalaccel.cells import Cell
from globalaccel.routing.route_costs import RouteColumns
from globalaccel.routing.table import CellState, RouterState

NONE = -1  # no current center / padding after a route's last edge
UNKNOWN = -2  # a center or edge the stack does not have


class CurrentRoutes(NamedTuple):
    center: NDArray[np.intp]  # (N,) catalog position of each cell's current center; NONE, or UNKNOWN
    edges: NDArray[np.intp]  # (N, W) its edges' catalog positions, best first; NONE after the last, UNKNOWN
    weights: NDArray[np.float64]  # (N, W) their shares, 0 after the last
    lengths: NDArray[np.intp]  # (N,) how many edges
    provisional: NDArray[np.bool_]  # (N,) placed before the measurements settled (CellState.provisional): not held

    def all_edges(self, good: Callable[[NDArray[np.intp]], NDArray[np.bool_]]) -> NDArray[np.bool_]:
        """(N,) every edge of the cell's route is known and good (`good`: catalog positions (N, W) -> bool (N, W));
        False for a route with no edge."""
        fine = (self.edges == NONE) | ((self.edges >= 0) & good(np.maximum(self.edges, 0)))
        out: NDArray[np.bool_] = fine.all(axis=1) & (self.lengths > 0)
        return out


class StateColumns(NamedTuple):
    """A router's own routes of a state it made, as arrays, kept with that state (RouterState.columns)."""

    owner: object  # the router's token: only it knows the cells (rows) and catalog (positions) they refer to
    cells: Mapping[str, CellState]  # the very mapping they were made with (read-only): a state with other cells is read anew
    routes: CurrentRoutes


def served_as_current(served: RouteColumns, cells: int, provisional: NDArray[np.bool_]) -> CurrentRoutes:
    """The routes decided this evaluation (rows: `served.cells`; `provisional`, per row, as CellState.provisional) as every
    cell's current route for the next one; NONE for the cells without a route."""
    center = np.full(cells, NONE, dtype=np.intp)
    placed_early = np.zeros(cells, dtype=bool)
    placed_early[served.cells] = provisional
    edges = np.full((cells, served.edges.shape[1]), NONE, dtype=np.intp)
    weights = np.zeros((cells, served.edges.shape[1]))
    center[served.cells], edges[served.cells], weights[served.cells] = served.center, served.edges, served.weights
    lengths: NDArray[np.intp] = np.count_nonzero(edges >= 0, axis=1).astype(np.intp)
    for array in (center, edges, weights, lengths, placed_early):  # kept with the state and trusted as they are: read-only
        array.flags.writeable = False
    return CurrentRoutes(center, edges, weights, lengths, placed_early)


def current_routes(state: RouterState, cells: Sequence[Cell], center_pos: Mapping[str, int], edge_pos: Mapping[str, int],
                   width: int, owner: object = None) -> CurrentRoutes:
    """The state's route of each of `cells` (rows in that order), at least `width` columns wide. A state that the router
    `owner` made itself, with its cells untouched since, gives the arrays kept with it."""
    kept = state.columns
    if owner is not None and isinstance(kept, StateColumns) and kept.owner is owner and kept.cells is state.cells:
        arrays = kept.routes
        extra = width - arrays.edges.shape[1]
        if extra <= 0:
            return arrays
        return arrays._replace(edges=np.pad(arrays.edges, ((0, 0), (0, extra)), constant_values=NONE),
                               weights=np.pad(arrays.weights, ((0, 0), (0, extra))))
    routes = [state.cells.get(cell.id) for cell in cells]
    width = max([width, *(len(r.edges) for r in routes if r is not None)])
    pad, zero = [NONE] * width, [0.0] * width
    center = np.full(len(cells), NONE, dtype=np.intp)
    flat_edges: list[int] = []
    flat_weights: list[float] = []
    count = np.zeros(len(cells), dtype=np.intp)
    placed_early = np.zeros(len(cells), dtype=bool)
    for n, route in enumerate(routes):
        if route is None or route.center is None:
            flat_edges += pad
            flat_weights += zero
            continue
        placed_early[n] = route.provisional
        k = len(route.edges)
        if len(route.weights) != k:
            raise ValueError(f"router state, cell {cells[n].id}: {k} edges but {len(route.weights)} weights")
        center[n] = center_pos.get(route.center, UNKNOWN)
        count[n] = k
        flat_edges += [edge_pos.get(e, UNKNOWN) for e in route.edges]
        flat_edges += pad[: width - k]
        flat_weights += route.weights
        flat_weights += zero[: width - k]
    return CurrentRoutes(center, np.array(flat_edges, dtype=np.intp).reshape(len(cells), width),
                         np.array(flat_weights, dtype=np.float64).reshape(len(cells), width), count, placed_early)
