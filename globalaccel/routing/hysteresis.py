"""Hysteresis: keep a valid current route unless a better one persists.

A route is replaced only when the new one is better by max(absolute ms, relative %) beyond the noise
of both routes' measurements, for N evaluations in a row, and not within the hold-down after the
cell's last switch. The noise is each route's measured jitter (half the median step between successive
samples of its paths, weighted like its cost), and both routes are costed on each path's median of its
last `steady_samples` (router: LatencyModel.center_edge_steady_ms): a better route must win on the
measured distribution, not on one noisy sample, a few slow cycles or a moving average's wobble (NS1's
Performance Stabilize band does the same for its answers). A route whose edge or center went down, or whose center or edge the
rule no longer allows, moves at once. A route placed before the measurements settled (a cold start's first
cycles: one noisy sample per path) is provisional: it is not held, and each evaluation places it afresh until they have.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum

import numpy as np
from numpy.typing import NDArray

from globalaccel.residency import Eligibility
from globalaccel.routing.table import REASON_BEST, REASON_HELD, CellState, Health
from globalaccel.settings import HysteresisSettings


class Case(Enum):
    """What a cell's current route is, against its fresh one, before any cost is compared."""

    FIRST = "first"  # no current route: the fresh one is placed (a cell's very first is not a switch)
    PROVISIONAL = "provisional"  # the current route was placed before the measurements settled: the fresh one is placed
    INVALID = "invalid"  # the current route may not stay (down, or no longer allowed): it moves at once
    SAME = "same"  # the fresh route is the current one
    JUDGE = "judge"  # both valid and different: costs decide (judge)


def still_valid(prev: CellState, elig: Eligibility, health: Health, allowed_edges: frozenset[str] | None = None,
                spilled: bool = False) -> bool:
    """A held route must still be allowed right now (center and every edge) and fully healthy;
    otherwise it moves at once. Its center must be in the preferred tier, unless the fresh route is itself
    spilled to a later tier (a full center): then any healthy center the rule allows may hold it, or every
    cycle would move spilled cells afresh, edges and all."""
    allowed = any(prev.center in tier for tier in elig.tiers) if spilled else prev.center in elig.centers
    return (allowed and bool(prev.edges) and health.edges.issuperset(prev.edges)
            and (allowed_edges is None or allowed_edges.issuperset(prev.edges)))


def classify(prev: CellState | None, fresh: CellState, elig: Eligibility, health: Health,
             allowed_edges: frozenset[str] | None = None) -> Case:
    if prev is None or prev.center is None:
        return Case.FIRST
    if prev.provisional:
        return Case.PROVISIONAL
    return compare(prev, fresh, still_valid(prev, elig, health, allowed_edges, spilled=fresh.center not in elig.centers))


def compare(prev: CellState, fresh: CellState, valid: bool) -> Case:
    """The case of a cell with a current route whose validity (still_valid) is known."""
    if not valid:
        return Case.INVALID
    if (prev.center, prev.edges) == (fresh.center, fresh.edges):
        return Case.SAME
    return Case.JUDGE


def settle(case: Case, prev: CellState | None, fresh: CellState, now: float) -> CellState:
    """The route of a cell whose case is not JUDGE. (Constructed, not _replace'd: this runs for every cell of
    every cycle, and _replace costs several times as much.)"""
    if case is Case.FIRST:
        return CellState(fresh.center, fresh.edges, fresh.weights, fresh.pending, None if prev is None else now, fresh.provisional)
    if case is Case.PROVISIONAL and prev is not None:  # not a switch: the hold-down runs from the last real one
        return CellState(fresh.center, fresh.edges, fresh.weights, 0, prev.last_switch_at, fresh.provisional)
    if case is Case.INVALID or prev is None:
        return CellState(fresh.center, fresh.edges, fresh.weights, fresh.pending, now, fresh.provisional)
    # Same route: keep its capacity shares. The greedy split is sensitive to rank order, and measurement
    # noise must not churn the table (a new generation, a republish). Shares are recomputed whenever the
    # route itself changes; overflow is always reported from the shares actually served.
    return CellState(fresh.center, fresh.edges, prev.weights, fresh.pending, prev.last_switch_at)


def judge(current_cost: NDArray[np.float64], fresh_cost: NDArray[np.float64], spread: NDArray[np.float64],
          pending: NDArray[np.int64], last_switch_at: NDArray[np.float64], now: float,
          hyst: HysteresisSettings) -> tuple[NDArray[np.bool_], NDArray[np.int64]]:
    """For cells whose current and fresh routes are both valid and differ (arrays, one entry per cell):
    (switch now, the pending count it keeps). The fresh route must be better by max(absolute ms, relative %)
    plus both routes' noise, for `consecutive` evaluations in a row, and not within the hold-down after the
    last switch (`last_switch_at` NaN: never switched)."""
    better = current_cost - fresh_cost >= np.maximum(hyst.absolute_ms, hyst.relative * current_cost) + spread
    new_pending = np.where(better, pending + 1, 0)
    held_down = ~np.isnan(last_switch_at) & (now - last_switch_at < hyst.hold_down_s)
    return better & (new_pending >= hyst.consecutive) & ~held_down, new_pending


def decide(
    prev: CellState | None,
    fresh: CellState,
    fresh_cost: float | Callable[[], float],  # a callable is asked only when the route changes
    prev_cost: Callable[[CellState], float],
    elig: Eligibility,
    health: Health,
    now: float,
    hyst: HysteresisSettings,
    allowed_edges: frozenset[str] | None = None,  # edges the cell's rule lets on its path (None: all)
    noise: Callable[[CellState], float] | None = None,  # a route's measured spread in ms (None: no measurements)
) -> tuple[CellState, str]:
    """One cell: keep a valid current route unless the fresh one is better by the margin for `consecutive`
    evaluations in a row and the hold-down since the last switch has passed. (The router decides every cell
    at once, with its own array form of still_valid and compare (Router._still_valid, checked against these in
    tests/test_hysteresis.py), settle and judge; this is the same rule for one.)"""
    case = classify(prev, fresh, elig, health, allowed_edges)
    if case is not Case.JUDGE or prev is None:
        return settle(case, prev, fresh, now), REASON_BEST
    spread = noise(prev) + noise(fresh) if noise is not None else 0.0
    switch, pending = judge(np.array([prev_cost(prev)]), np.array([fresh_cost() if callable(fresh_cost) else fresh_cost]),
                            np.array([spread]), np.array([prev.pending]),
                            np.array([np.nan if prev.last_switch_at is None else prev.last_switch_at]), now, hyst)
    if switch[0]:
        return fresh._replace(last_switch_at=now), REASON_BEST
    return prev._replace(pending=int(pending[0])), REASON_HELD
