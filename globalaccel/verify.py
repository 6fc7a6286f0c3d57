"""Check a RoutingTable against residency and health. Used by `plan`, the loop and the auditor.

The check asks globalaccel.residency (the one implementation of the rules) about every answer; it
shares no code path with the router's choice, so a router bug shows up here as a violation.
"""

from __future__ import annotations

from globalaccel.findings import Finding
from globalaccel.routing import Health, RoutingTable
from globalaccel.topology import Topology


def verify_table(table: RoutingTable, topology: Topology, health: Health | None = None) -> list[Finding]:
    """Findings of kind residency | unhealthy_edge | unhealthy_center | unknown_edge, on the cell."""
    health = health or Health.all_up(topology)
    found: list[Finding] = []
    for cell_id, route in sorted(table.routes.items()):
        if route.center is None:
            continue
        if not topology.residency.allows(route.country, route.center):
            rule = topology.residency.rule_for(route.country)
            found.append(Finding("residency", cell_id, f"center {route.center} not allowed by rule {rule.name!r} ({rule.mode.value})",
                                 route.country))
        if route.center not in health.centers:
            found.append(Finding("unhealthy_center", cell_id, f"center {route.center} is down", route.country))
        for answer in route.answers:
            if answer.edge_id not in topology.edge_by_id:
                found.append(Finding("unknown_edge", cell_id, f"edge {answer.edge_id} not in catalog", route.country))
            elif answer.edge_id not in health.edges:
                found.append(Finding("unhealthy_edge", cell_id, f"edge {answer.edge_id} is down", route.country))
    return found
