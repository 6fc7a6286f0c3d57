"""Center capacity: no center beyond its capacity while an allowed center has room.

After each cell's best center is chosen, a center whose demand exceeds its `capacity` sheds cells to
their next-best allowed center (the one the same exact search picks with the full center forbidden for
them), least regret first (regret = the cell's extra RTT there), only onto centers with room. Strict
cells with no other allowed center stay: residency before load. Demand that still does not fit stays
where it is and is reported per center (plan's `per_center.load_over_capacity`), never hidden. Anchors:
NS1's shed-load filter, Cloudflare's least-outstanding-requests steering (both shed by load, neither
keeps a residency rule while doing it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
from numpy.typing import NDArray

from globalaccel.cells import Cell
from globalaccel.topology import Topology

# (allowed centers, cells to compute) -> the search's (choice, ranked, ranked_cost) for those cells
Select = Callable[[NDArray[np.bool_], NDArray[np.intp]], tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.float64]]]
MAX_ROUNDS = 64  # each round moves a cell or finds a center full for one; a bound, not a tuning knob


class CenterLoad:
    def __init__(self, topology: Topology, cells: Iterable[Cell]) -> None:
        self.capacity = np.array([np.inf if c.capacity is None else c.capacity for c in topology.centers], dtype=np.float64)
        self.demand = np.array([c.demand for c in cells], dtype=np.float64)
        self.limited = bool(np.isfinite(self.capacity).any())

    def load(self, choice: NDArray[np.intp]) -> NDArray[np.float64]:
        routed = choice >= 0
        return np.bincount(choice[routed], weights=self.demand[routed], minlength=self.capacity.size).astype(np.float64)

    def shed(self, choice: NDArray[np.intp], ranked: NDArray[np.intp], ranked_cost: NDArray[np.float64],
             allowed: NDArray[np.bool_], select: Select, current: NDArray[np.intp] | None = None) -> dict[int, int]:
        """Move cells off centers beyond capacity, in place (choice, ranked, ranked_cost). Returns the cells
        moved: cell position -> the center it left. `current`: each cell's center now (-1: none). Cells
        already on the center they would be shed to go first, then the rest by regret: which cells
        spill must not follow measurement noise in the regret order, or every cycle moves different
        cells back and forth across the same full center."""
        moved: dict[int, int] = {}
        if not self.limited:
            return moved
        barred = np.zeros_like(allowed)  # (center, cell): the cell left it
        full = np.zeros_like(allowed)  # (center, cell): found without room for the cell, since the last move
        for _ in range(MAX_ROUNDS):
            load = self.load(choice)
            over = np.flatnonzero(load > self.capacity * (1 + 1e-9))
            if not over.size:
                break
            trial = allowed & ~barred & ~full
            for c in over:
                trial[c, choice == c] = False  # where would its cells go instead?
            alt_choice, alt_ranked, alt_cost = select(trial, np.flatnonzero(np.isin(choice, over)))
            regret = alt_cost[:, 0] - ranked_cost[:, 0]
            changed = moved_any = False
            for c in over:
                mine = np.flatnonzero(choice == c)
                movable = mine[alt_choice[mine] >= 0]
                stays = (alt_choice[movable] != current[movable]) if current is not None else np.zeros(movable.size, dtype=bool)
                for n in movable[np.lexsort((regret[movable], stays))]:
                    if load[c] <= self.capacity[c]:
                        break
                    target = int(alt_choice[n])
                    changed = True
                    if load[target] + self.demand[n] > self.capacity[target]:
                        full[target, n] = True  # no room there: next round, its next center
                        continue
                    moved.setdefault(int(n), int(c))
                    barred[c, n] = True
                    choice[n], ranked[n], ranked_cost[n] = target, alt_ranked[n], alt_cost[n]
                    load[c] -= self.demand[n]
                    load[target] += self.demand[n]
                    moved_any = True
            if moved_any:
                full[:] = False  # loads changed: a center full a moment ago may have room now
            if not changed:
                break
        return moved
