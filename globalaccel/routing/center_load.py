"""Center capacity: no center beyond its capacity while an allowed center has room.

After each cell's best center is chosen, a center whose demand exceeds its `capacity` sheds cells to
their next-best allowed center (the one the same exact search picks with the full center forbidden for
them), least regret first (regret = the cell's extra RTT there), only onto centers with room. Strict
cells with no other allowed center stay: residency before load. Demand that still does not fit stays
where it is and is reported per center (plan's `per_center.load_over_capacity`), never hidden.

Load hysteresis: a cell already on a center stays until that center is beyond its capacity, but a cell
moves onto a limited center from another only while that center stays `return_band` below its capacity.
Without the band, a center filled to its capacity trades cells with its neighbour every cycle: one
boundary cell's best flips by noise, the center is over by that cell, another is shed, and back. Anchors:
NS1's shed-load filter, Cloudflare's least-outstanding-requests steering (both shed by load, neither
keeps a residency rule while doing it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np
from numpy.typing import NDArray

from globalaccel.cells import Cell
from globalaccel.routing.table import REASON_CENTER_FULL, CellState
from globalaccel.topology import Topology

# (allowed centers, cells to compute) -> the search's (choice, ranked, ranked_cost) for those cells
Select = Callable[[NDArray[np.bool_], NDArray[np.intp]], tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.float64]]]
MAX_ROUNDS = 64  # each round moves a cell or finds a center full for one; a bound, not a tuning knob


class CenterLoad:
    def __init__(self, topology: Topology, cells: Iterable[Cell]) -> None:
        self.return_band = topology.routing.center_return_band
        self.capacity = np.array([np.inf if c.capacity is None else c.capacity for c in topology.centers], dtype=np.float64)
        self.demand = np.array([c.demand for c in cells], dtype=np.float64)
        self.limited = bool(np.isfinite(self.capacity).any())

    def release_holds_beyond_capacity(self, decisions: list[tuple[int, CellState, str]], choice: NDArray[np.intp],
                                      fresh_of: Callable[[int], CellState], now: float,
                                      center_ids: Sequence[str]) -> list[tuple[int, CellState, str]]:
        """The backstop of holds_to_let_go (the router's decisions; `center_ids` in catalog order): switches
        hysteresis granted onto a center may fill it beyond its capacity while cells held there were counted as staying.
        Then its held cells take their fresh route (which the shed fitted), largest demand first, until it fits. A hold
        is for noise, never for overload. These moves come after the edge budgets' admission: center capacity first, what
        they put beyond edge budgets reported as overflow."""
        index = {c: i for i, c in enumerate(center_ids)}
        demand = self.demand
        load = np.zeros(len(center_ids))
        for pos, decided, _ in decisions:
            if decided.center is not None:
                load[index[decided.center]] += demand[pos]
        out = list(decisions)
        capacity = self.capacity
        # Held on another center than the fresh route's (every decided cell is routable: its fresh center is its choice).
        held = sorted((i for i, (pos, decided, _) in enumerate(out) if index[decided.center] != choice[pos]),  # type: ignore[index]
                      key=lambda i: -demand[out[i][0]])
        for i in held:
            pos, decided, _ = out[i]
            c = index[decided.center]  # type: ignore[index]
            if load[c] <= capacity[c] * (1 + 1e-9):
                continue
            load[c] -= demand[pos]
            load[choice[pos]] += demand[pos]
            out[i] = (pos, fresh_of(pos)._replace(last_switch_at=now), REASON_CENTER_FULL)
        return out

    def load(self, choice: NDArray[np.intp]) -> NDArray[np.float64]:
        routed = choice >= 0
        return np.bincount(choice[routed], weights=self.demand[routed], minlength=self.capacity.size).astype(np.float64)

    def holds_to_let_go(self, current: NDArray[np.intp], stays: NDArray[np.bool_], choice: NDArray[np.intp],
                        id_rank: NDArray[np.intp]) -> set[int]:
        """Cells that may hold their current center (`stays`; `current` its position), where every such cell holding it
        would leave a center beyond its capacity: the largest first (ties by `id_rank`), until it fits. They take their
        fresh center (`choice`), which the shed planned."""
        demand, capacity = self.demand, self.capacity
        load = self.load(np.where(stays, current, choice))  # summed in cell order, as a loop over the cells would
        moved_rows = np.flatnonzero(stays & (current != choice))
        moved_rows = moved_rows[np.lexsort((id_rank[moved_rows], -demand[moved_rows]))]
        order = list(zip(moved_rows.tolist(), current[moved_rows].tolist(), choice[moved_rows].tolist(), strict=True))
        out: set[int] = set()
        # Again until nothing moves: a cell let go onto its fresh center can fill it beyond capacity after one held
        # there was passed over (a reviewer's chain of three centers).
        while True:
            moved = False
            for pos, c, fresh in order:
                if pos in out or load[c] <= capacity[c] * (1 + 1e-9):
                    continue
                load[c] -= demand[pos]
                load[fresh] += demand[pos]
                out.add(pos)
                moved = True
            if not moved:
                return out

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
        entry = self.capacity * (1.0 - self.return_band)  # the most a center may carry for a cell to move onto it
        barred = np.zeros_like(allowed)  # (center, cell): the cell left it
        full = np.zeros_like(allowed)  # (center, cell): found without room for the cell, since the last move
        for _ in range(MAX_ROUNDS):
            load = self.load(choice)
            entering = (choice >= 0) & (current >= 0) & (choice != current) if current is not None else np.zeros(choice.size, dtype=bool)
            has_entering = np.bincount(choice[entering], minlength=self.capacity.size) > 0
            over = np.flatnonzero((load > self.capacity * (1 + 1e-9)) | (has_entering & (load > entry * (1 + 1e-9))))
            if not over.size:
                break
            if current is not None and self._keep_entering_where_they_are(over, entering, load, entry, choice, ranked, ranked_cost,
                                                                          allowed, select, current, moved, barred):
                continue  # loads changed: look again
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
                for n in movable[np.lexsort((regret[movable], stays, ~entering[movable]))]:
                    if load[c] <= entry[c]:
                        break
                    if load[c] <= self.capacity[c] and not entering[n]:
                        continue  # an incumbent: stays while its center is within capacity
                    target = int(alt_choice[n])
                    changed = True
                    # Room up to capacity: relieving an overload, or back to where the cell was, is not a return.
                    if load[target] + self.demand[n] > self.capacity[target]:
                        full[target, n] = True  # no room there: next round, its next center
                        continue
                    self._move(int(n), int(c), target, (choice, ranked, ranked_cost), (alt_ranked[n], alt_cost[n]), load, moved, barred)
                    moved_any = True
            if moved_any:
                full[:] = False  # loads changed: a center full a moment ago may have room now
            if not changed:
                break
        return moved

    def _keep_entering_where_they_are(self, over: NDArray[np.intp], entering: NDArray[np.bool_], load: NDArray[np.float64],
                                      entry: NDArray[np.float64], choice: NDArray[np.intp], ranked: NDArray[np.intp],
                                      ranked_cost: NDArray[np.float64], allowed: NDArray[np.bool_], select: Select,
                                      current: NDArray[np.intp], moved: dict[int, int], barred: NDArray[np.bool_]) -> bool:
        """Cells that would move onto a center over its entry level stay on their current center (where it is
        still allowed and has room), in cell order, until the center is back within it. Before any cell on the
        center is shed: shedding those instead, in regret order, would trade cells across the full center
        every cycle, as measurement noise reorders the regrets. Returns whether any cell stayed."""
        rows = np.flatnonzero(entering & np.isin(choice, over))
        if not rows.size:
            return False
        trial = np.zeros_like(allowed)
        trial[current[rows], rows] = allowed[current[rows], rows]
        back_choice, back_ranked, back_cost = select(trial, rows)
        kept = False
        for c in over:
            for n in rows[choice[rows] == c]:
                if load[c] <= entry[c] * (1 + 1e-9):
                    break
                home = int(back_choice[n])
                if home < 0 or load[home] + self.demand[n] > self.capacity[home] * (1 + 1e-9):
                    continue
                self._move(int(n), int(c), home, (choice, ranked, ranked_cost), (back_ranked[n], back_cost[n]), load, moved, barred)
                kept = True
        return kept

    def _move(self, n: int, off: int, onto: int, plan: tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.float64]],
              found: tuple[NDArray[np.intp], NDArray[np.float64]], load: NDArray[np.float64], moved: dict[int, int],
              barred: NDArray[np.bool_]) -> None:
        """Cell n leaves center `off` for `onto`, with the ranked edges and costs the search found there."""
        choice, ranked, ranked_cost = plan
        moved.setdefault(n, off)
        barred[off, n] = True
        choice[n], ranked[n], ranked_cost[n] = onto, found[0], found[1]
        load[off] -= self.demand[n]
        load[onto] += self.demand[n]
