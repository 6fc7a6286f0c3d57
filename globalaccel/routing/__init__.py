"""Routing: topology + residency + latency + health -> RoutingTable.

Rooms by step: `table` (the artifact), `candidates` (center and ranked edges per cell), `capacity`
(demand split within edge budgets), `hysteresis` (when a route may change), `router` (one evaluation
through all of them), `summary` (the table computed from a stack's files, summarised for `plan`).
"""

from globalaccel.routing.router import Router
from globalaccel.routing.table import (
    REASON_BEST,
    REASON_CENTER_FULL,
    REASON_EDGE_FULL,
    REASON_FAIL_CLOSED,
    REASON_FALLBACK,
    REASON_HELD,
    REASON_NO_PATH,
    REASONS,
    Answer,
    CellRoute,
    CellState,
    Health,
    RouterState,
    RoutingTable,
    table_hash,
)

__all__ = [
    "REASONS", "REASON_BEST", "REASON_CENTER_FULL", "REASON_EDGE_FULL", "REASON_FAIL_CLOSED", "REASON_FALLBACK", "REASON_HELD",
    "REASON_NO_PATH",
    "Answer", "CellRoute", "CellState", "Health", "Router", "RouterState", "RoutingTable", "table_hash",
]
