"""Fallback order: where the DNS data plane sends a cell when its center fails, with no controller.

The controller picks each cell's center; the published zone also carries, per cell, the other centers
its residency rule allows, in the order a failure of the chosen one should fall through them
(Route 53 failover records on per-center health checks; a self-hosted server's own health view). The
order is a pure function of the stack (rule tiers, then distance from the cell to the center, then
id), never of measurements: it does not churn with noise, and the audit rebuilds it from the stack
alone. A center the rule refuses (not listed for a strict rule, or where it forbids termination) is
never in it, so no failover can leave the allowed set.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache

from globalaccel.cells import Cell
from globalaccel.geo import great_circle_km
from globalaccel.topology import Topology


class FallbackOrder:
    """Per topology: cell + chosen center -> the allowed other centers, best first."""

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self._tiers = lru_cache(maxsize=None)(self._allowed_tiers)
        self._after: dict[tuple[str, str], tuple[str, ...]] = {}

    def _allowed_tiers(self, country: str) -> tuple[tuple[str, ...], ...]:
        ids = self.topology.center_ids
        # Every center counted healthy: the question is which the rule allows at all, not which are up now.
        return self.topology.residency.eligibility(country, ids, ids).tiers

    def allowed(self, country: str) -> tuple[str, ...]:
        return tuple(c for tier in self._tiers(country) for c in tier)

    def after_each(self, cells: Sequence[Cell], center_ids: Sequence[str]) -> Callable[[int, int], tuple[str, ...]]:
        """after() by cell position in `cells` and center position in `center_ids`, for a caller that asks for every
        cell each evaluation: a list lookup rather than a dict lookup keyed by a new tuple."""
        known: list[list[tuple[str, ...] | None]] = [[None] * len(center_ids) for _ in cells]

        def lookup(pos: int, center: int) -> tuple[str, ...]:
            found = known[pos][center]
            if found is None:
                found = known[pos][center] = self.after(cells[pos], center_ids[center])
            return found

        return lookup

    def after(self, cell: Cell, center: str) -> tuple[str, ...]:
        # A pure function of the stack: computed once per (cell, center), every later cycle reads it.
        key = (cell.id, center)
        found = self._after.get(key)
        if found is None:
            found = self._after[key] = self._compute_after(cell, center)
        return found

    def _compute_after(self, cell: Cell, center: str) -> tuple[str, ...]:
        centers = self.topology.center_by_id
        out: list[str] = []
        for tier in self._tiers(cell.country):
            out += sorted((c for c in tier if c != center),
                          key=lambda c: (round(great_circle_km(cell.lat, cell.lon, centers[c].lat, centers[c].lon)), c))
        return tuple(out)
