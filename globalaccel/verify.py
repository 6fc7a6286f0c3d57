"""Check a RoutingTable against residency and health. Used by `plan`, the loop and the auditor.

The check asks globalaccel.residency (the one implementation of the rules) about every element of
every answer's path: the center, each edge's jurisdiction and role, and the address the answer names
(which decides the center the edge forwards to). It shares no code path with the router's choice, so a
router bug shows up here as a violation.
"""

from __future__ import annotations

from globalaccel.findings import Finding
from globalaccel.routing import Health, RoutingTable
from globalaccel.topology import Topology

RESIDENCY_KINDS = ("residency", "residency_edge", "forwarding")


def verify_table(table: RoutingTable, topology: Topology, health: Health | None = None) -> list[Finding]:
    """Findings on the cell, of kind:
    residency        the center is not allowed by the country's rule;
    residency_edge   an edge on the path stands where the rule forbids it (never_transit), or terminates
                     outside the rule's terminate_in;
    forwarding       the answer's address does not lead to the route's center through that edge;
    unhealthy_center | unhealthy_edge | unknown_edge."""
    health = health or Health.all_up(topology)
    residency = topology.residency
    found: list[Finding] = []
    for cell_id, route in sorted(table.routes.items()):
        if route.center is None:
            continue
        if not residency.allows(route.country, route.center):
            rule = residency.rule_for(route.country)
            found.append(Finding("residency", cell_id, f"center {route.center} not allowed by rule {rule.name!r} ({rule.mode.value})",
                                 route.country))
        for fallback in route.fallback:  # the data plane fails over to these on its own: each must be lawful too
            if not residency.allows(route.country, fallback):
                rule = residency.rule_for(route.country)
                found.append(Finding("residency", cell_id, f"failover center {fallback} not allowed by rule {rule.name!r}",
                                     route.country))
        if route.center not in health.centers:
            found.append(Finding("unhealthy_center", cell_id, f"center {route.center} is down", route.country))
        for answer in route.answers:
            edge = topology.edge_by_id.get(answer.edge_id)
            if edge is None:
                found.append(Finding("unknown_edge", cell_id, f"edge {answer.edge_id} not in catalog", route.country))
                continue
            why = residency.edge_violation(route.country, edge.country, edge.role)
            if why is not None:
                found.append(Finding("residency_edge", cell_id, f"edge {edge.id}: {why}", route.country))
            leads_to = topology.path_by_address.get(answer.address)
            if leads_to is None or leads_to[0].id != edge.id or leads_to[1] != route.center:
                where = "no edge" if leads_to is None else f"{leads_to[0].id} -> {leads_to[1]}"
                found.append(Finding("forwarding", cell_id, f"answer {answer.address} leads to {where}, not {edge.id} -> {route.center}",
                                     route.country))
            if answer.edge_id not in health.edges:
                found.append(Finding("unhealthy_edge", cell_id, f"edge {answer.edge_id} is down", route.country))
    return found
