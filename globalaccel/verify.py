"""Check a RoutingTable against residency and health. Used by `plan`, the loop and the auditor.

The check asks globalaccel.residency (the one implementation of the rules) about every answer; it
shares no code path with the router's choice, so a router bug shows up here as a violation.
"""

from __future__ import annotations

from dataclasses import dataclass

from globalaccel.routing import Health, RoutingTable
from globalaccel.topology import Topology


@dataclass(frozen=True)
class Violation:
    kind: str  # residency | unhealthy_edge | unhealthy_center | unknown_edge
    cell: str
    country: str
    detail: str


def verify_table(table: RoutingTable, topology: Topology, health: Health | None = None) -> list[Violation]:
    health = health or Health.all_up(topology)
    found: list[Violation] = []
    for cell_id, route in sorted(table.routes.items()):
        if route.center is None:
            continue
        if not topology.residency.allows(route.country, route.center):
            rule = topology.residency.rule_for(route.country)
            found.append(Violation("residency", cell_id, route.country,
                                   f"center {route.center} not allowed by rule {rule.name!r} ({rule.mode.value})"))
        if route.center not in health.centers:
            found.append(Violation("unhealthy_center", cell_id, route.country, f"center {route.center} is down"))
        for answer in route.answers:
            if answer.edge_id not in topology.edge_by_id:
                found.append(Violation("unknown_edge", cell_id, route.country, f"edge {answer.edge_id} not in catalog"))
            elif answer.edge_id not in health.edges:
                found.append(Violation("unhealthy_edge", cell_id, route.country, f"edge {answer.edge_id} is down"))
    return found
