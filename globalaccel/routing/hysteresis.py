"""Hysteresis: keep a valid current route unless a better one persists.

A route is replaced only when the new one is better by max(absolute ms, relative %) beyond the noise
of both routes' measurements, for N evaluations in a row, and not within the hold-down after the
cell's last switch. The noise is each route's measured jitter (half the median step between successive
samples of its paths, weighted like its cost), and both routes are costed on each path's recent median
(router: LatencyModel.center_edge_steady_ms): a better route must win on the measured distribution,
not on one noisy sample or a moving average's wobble (NS1's Performance Stabilize band
does the same for its answers). A route whose edge or center went down, or whose center or edge the
rule no longer allows, moves at once.
"""

from __future__ import annotations

from collections.abc import Callable

from globalaccel.residency import Eligibility
from globalaccel.routing.table import REASON_BEST, REASON_HELD, CellState, Health
from globalaccel.settings import HysteresisSettings


def still_valid(prev: CellState, elig: Eligibility, health: Health, allowed_edges: frozenset[str] | None = None,
                spilled: bool = False) -> bool:
    """A held route must still be allowed right now (center and every edge) and fully healthy;
    otherwise it moves at once. Its center must be in the preferred tier, unless the fresh route is itself
    spilled to a later tier (a full center): then any healthy center the rule allows may hold it, or every
    cycle would move spilled cells afresh, edges and all."""
    centers = {c for tier in elig.tiers for c in tier} if spilled else set(elig.centers)
    return (prev.center in centers and bool(prev.edges) and all(e in health.edges for e in prev.edges)
            and (allowed_edges is None or all(e in allowed_edges for e in prev.edges)))


def decide(
    prev: CellState | None,
    fresh: CellState,
    fresh_cost: float | Callable[[], float],  # a callable is asked only when the route changes (the router's case)
    prev_cost: Callable[[CellState], float],
    elig: Eligibility,
    health: Health,
    now: float,
    hyst: HysteresisSettings,
    allowed_edges: frozenset[str] | None = None,  # edges the cell's rule lets on its path (None: all)
    noise: Callable[[CellState], float] | None = None,  # a route's measured spread in ms (None: no measurements)
) -> tuple[CellState, str]:
    """Keep a valid current route unless the fresh one is better by the margin for `consecutive`
    evaluations in a row and the hold-down since the last switch has passed."""
    if prev is None or prev.center is None:
        first_placement = prev is None  # a cell's first route is not a switch
        return fresh._replace(last_switch_at=None if first_placement else now), REASON_BEST
    if not still_valid(prev, elig, health, allowed_edges, spilled=fresh.center not in elig.centers):
        return fresh._replace(last_switch_at=now), REASON_BEST
    if (prev.center, prev.edges) == (fresh.center, fresh.edges):
        # Same route: keep its capacity shares. The greedy split is sensitive to rank order, and
        # measurement noise must not churn the table (a new generation, a republish). Shares are
        # recomputed whenever the route itself changes; overflow is always reported from the
        # shares actually served.
        return fresh._replace(weights=prev.weights, last_switch_at=prev.last_switch_at), REASON_BEST
    current_cost = prev_cost(prev)
    fresh_cost = fresh_cost() if callable(fresh_cost) else fresh_cost
    spread = noise(prev) + noise(fresh) if noise is not None else 0.0
    better = current_cost - fresh_cost >= max(hyst.absolute_ms, hyst.relative * current_cost) + spread
    pending = prev.pending + 1 if better else 0
    held_down = prev.last_switch_at is not None and now - prev.last_switch_at < hyst.hold_down_s
    if better and pending >= hyst.consecutive and not held_down:
        return fresh._replace(last_switch_at=now), REASON_BEST
    return prev._replace(pending=pending), REASON_HELD
