"""`globalaccel plan`: compute the routing table for a stack from its files and summarise it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from globalaccel.answers import Answers, Decision, FailClosed, Served
from globalaccel.dns.records import CIDR_TYPE
from globalaccel.latency import LatencyModel, PhysicsModel
from globalaccel.routing import REASON_FAIL_CLOSED, CellRoute, Health, Router, RoutingTable
from globalaccel.topology import Topology
from globalaccel.verify import RESIDENCY_KINDS, verify_table


def weighted_quantile(values: list[float], weights: list[float], q: float) -> float:
    order = np.argsort(values, kind="stable")
    v = np.asarray(values)[order]
    w = np.cumsum(np.asarray(weights)[order])
    return float(v[np.searchsorted(w, q * w[-1])])


def route_table(topology: Topology, health: Health | None = None, router: Router | None = None) -> RoutingTable:
    """The table for `health` (all up by default) on the stack's modelled latencies. Pass `router` to reuse
    its geometry across many tables of one topology (what-if scenarios)."""
    table, _ = (router or Router(topology)).compute(LatencyModel(topology), health or Health.all_up(topology))
    return table


def compute_table(topology: Topology, health: Health | None = None) -> tuple[RoutingTable, dict[str, Any]]:
    """The table and `plan`'s summary of it."""
    health = health or Health.all_up(topology)
    table = route_table(topology, health)
    return table, summarise(topology, table, health)


def center_demand(table: RoutingTable, demand: dict[str, float]) -> dict[str, float]:
    """Demand routed to each center (by the cells' demand), for `plan` and the loop's metrics alike."""
    load: dict[str, float] = {}
    for cid, route in table.routes.items():
        if route.center is not None:
            load[route.center] = load.get(route.center, 0.0) + demand.get(cid, 0.0)
    return load


def summarise(topology: Topology, table: RoutingTable, health: Health) -> dict[str, Any]:
    demand = {c.id: c.demand for c in topology.cells}
    routed = [r for r in table.routes.values() if r.center is not None]
    rtts = [r.rtt_ms or 0.0 for r in routed]
    weights = [demand[r.cell_id] for r in routed]
    total_routed = sum(weights) or 1.0
    per_center: dict[str, dict[str, Any]] = {}
    by_center = center_demand(table, demand)
    for center in topology.center_ids:
        mine = [r for r in routed if r.center == center]
        load = by_center.get(center, 0.0)
        capacity = topology.center_by_id[center].capacity
        per_center[center] = {"cells": len(mine), "demand_share": round(load / total_routed, 4), "demand": round(load),
                              "capacity": capacity, "load_over_capacity": round(load / capacity, 4) if capacity else None}
    violations = verify_table(table, topology, health)
    carrying = sum(1 for e in topology.edges if table.edge_load.get(e.id, 0.0) > 0.0)
    total_demand = sum(demand.values()) or 1.0
    residency = topology.residency
    as_of = residency.as_of
    return {
        "stack": topology.stack,
        "service_name": topology.service_name,
        "zone": topology.zone,
        "centers": len(topology.centers),
        "edges": len(topology.edges),
        "countries": len(topology.countries),
        "edge_countries": len({e.country for e in topology.edges}),
        "cells": len(topology.cells),
        "generation": table.generation,
        "table_hash": table.content_hash,
        "fail_closed": table.fail_closed(),
        "strict_countries": topology.residency.strict_countries(topology.countries),
        "rules_hash": residency.rules_hash,
        "rules_as_of": as_of.isoformat() if as_of else None,
        "default_rule": residency.default.name,
        "default_countries": residency.default_countries(topology.countries),
        "unreviewed_rules": residency.unreviewed_rules(),
        "upcoming_rule_changes": [{"date": d.isoformat(), "country": c, "from": a, "to": b}
                                  for d, c, a, b in (residency.upcoming(as_of, topology.countries) if as_of else [])],
        "residency_violations": sum(1 for v in violations if v.kind in RESIDENCY_KINDS),
        "violations": [v.__dict__ for v in violations],
        "estimated_rtt_ms": {
            "p50": round(weighted_quantile(rtts, weights, 0.5), 2) if rtts else None,
            "p95": round(weighted_quantile(rtts, weights, 0.95), 2) if rtts else None,
        },
        "capacity_overflow_share": round(table.overflow / total_demand, 4),
        "edges_carrying_demand": carrying,
        "edge_demand_share": round(carrying / max(len(topology.edges), 1), 4),
        "country_answers_extra_rtt_ms": country_answers_extra_rtt(topology, table),
        "route53": route53_summary(topology, table),
        "per_center": per_center,
        "routes": {code: _route_json(decision) for code, decision in Answers.from_table(table, topology).countries()},
    }


def route53_summary(topology: Topology, table: RoutingTable) -> dict[str, Any]:
    """What the Route 53 zone answers per cell: the cells it routes by network (IP-based routing within the stack's
    quotas: globalaccel.dns.route53_cells), its records against the zone's quota, and the extra RTT every other
    cell still pays for its country's answer."""
    from globalaccel.dns.route53_cells import cidr_selection
    from globalaccel.dns.route53_compile import compile_route53

    selection = cidr_selection(topology)
    answers = Answers.from_table(table, topology)
    records = [r for r in compile_route53(topology, answers, cells=selection) if r.type != CIDR_TYPE]
    settings = topology.route53
    # Cells answered by their own chain: those whose location's record leads to it (the rest lead to the country tree);
    # a US state's cells, by its subdivision record, its largest cell's chain.
    chains = {r.alias.split(".cell.", 1)[0] for r in records if r.cidr is not None and r.alias and ".cell." in r.alias}
    states = {r.geo.subdivision: r.alias.split(".cell.", 1)[0] for r in records
              if r.geo is not None and r.geo.country == "US" and r.geo.subdivision and r.alias}
    stand_in = {c.id: states[c.subdivision] for c in topology.cells if c.country == "US" and c.subdivision in states}
    stand_in.update({c: c for c in chains})
    return {
        "cells_by_network": len(chains),
        "us_states_by_subdivision": len(states),
        "cells_chosen": len(selection.cells) if selection else 0,
        "cidr_blocks": selection.block_count if selection else 0,
        "cidr_blocks_quota": settings.cidr_blocks,
        "records": len(records),
        "records_quota": settings.max_records,
        "extra_rtt_ms": country_answers_extra_rtt(topology, table, stand_in),
    }


def route_rtt_estimator(topology: Topology) -> Callable[[float, float, CellRoute], float]:
    """RTT of a route's answers for a client at (lat, lon), weight-averaged, physics estimate: client -> edge
    on the public Internet, edge -> center on the backbone. For comparing answers from where clients are."""
    public, backbone = PhysicsModel(topology.latency), PhysicsModel(topology.latency, backbone=True)
    edges, centers = topology.edge_by_id, topology.center_by_id

    def rtt(lat: float, lon: float, route: CellRoute) -> float:
        c = centers[route.center]  # type: ignore[index]
        return sum(a.weight * (public.rtt_ms(lat, lon, edges[a.edge_id].lat, edges[a.edge_id].lon)
                               + backbone.rtt_ms(edges[a.edge_id].lat, edges[a.edge_id].lon, c.lat, c.lon)) for a in route.answers)

    return rtt


def country_answers_extra_rtt(topology: Topology, table: RoutingTable,
                              stand_in: Mapping[str, str] | None = None) -> dict[str, float] | None:
    """What backends that locate clients only by country (Route 53 geolocation, PowerDNS by country) cost:
    every cell gets its country's principal cell's answer, but the cells `stand_in` names another's (Route 53:
    cells answered by network get their own, a US state's cells its largest cell's). Demand-weighted mean and
    p95 of the extra RTT against the cell's own answer, physics estimate (client -> edge on the public Internet,
    edge -> center on the backbone). None with one cell per country (nothing lost)."""
    if len(topology.cells) == len(topology.countries):
        return None
    rtt = route_rtt_estimator(topology)

    extra: list[float] = []
    weights: list[float] = []
    principal = topology.principal_cell
    for cell in topology.cells:
        mine, given = table.routes[cell.id], table.routes[(stand_in or {}).get(cell.id, principal[cell.country])]
        if mine.center is None or given.center is None:
            continue
        extra.append(max(0.0, rtt(cell.lat, cell.lon, given) - rtt(cell.lat, cell.lon, mine)))
        weights.append(cell.demand)
    if not extra:
        return None
    mean = sum(e * w for e, w in zip(extra, weights, strict=True)) / sum(weights)
    return {"mean": round(mean, 2), "p95": round(weighted_quantile(extra, weights, 0.95), 2)}


def _route_json(decision: Decision) -> dict[str, Any]:
    """One country's decision as `plan` prints it: read through Answers, so every country has an explicit state."""
    if isinstance(decision, Served):
        answers = decision.answers
        return {"state": decision.state, "center": decision.center, "reason": decision.reason,
                "edges": [a.edge_id for a in answers], "addresses": [a.address for a in answers],
                "weights": [round(a.weight, 4) for a in answers],
                "rtt_ms": round(sum(a.weight * a.rtt_ms for a in answers), 2)}
    reason = REASON_FAIL_CLOSED if isinstance(decision, FailClosed) else decision.why
    return {"state": decision.state, "center": None, "reason": reason, "edges": [], "addresses": [], "weights": [], "rtt_ms": None}


def render_text(summary: dict[str, Any]) -> str:
    lines = [
        f"stack {summary['stack']}: {summary['service_name']} (zone {summary['zone']})",
        f"  {summary['centers']} centers, {summary['edges']} edges in {summary['edge_countries']} countries, "
        f"{summary['countries']} countries, {summary['cells']} cells",
        f"  table {summary['table_hash'][:16]} generation {summary['generation']}",
        f"  estimated RTT (demand-weighted): p50 {summary['estimated_rtt_ms']['p50']} ms, p95 {summary['estimated_rtt_ms']['p95']} ms",
        f"  rules {summary['rules_hash']} as of {summary['rules_as_of']}; "
        f"{len(summary['default_countries'])} countries fall to the default rule {summary['default_rule']!r}: "
        f"{' '.join(summary['default_countries']) or 'none'}",
        f"  rules whose sources were not re-checked (reviewed: null): {', '.join(summary['unreviewed_rules']) or 'none'}",
        *(f"  rule change on {c['date']}: {c['country']} {c['from']} -> {c['to']}" for c in summary["upcoming_rule_changes"]),
        f"  residency violations (centers, edges, forwarding): {summary['residency_violations']}",
        f"  fail closed (strict, no healthy allowed center): {', '.join(summary['fail_closed']) or 'none'}",
        f"  demand beyond edge capacity shares: {summary['capacity_overflow_share']:.1%}; "
        f"edges carrying demand: {summary['edges_carrying_demand']} ({summary['edge_demand_share']:.1%})",
        *([f"  answering by country instead of by cell costs: +{x['mean']} ms mean, +{x['p95']} ms p95 (PowerDNS by country)"]
          if (x := summary["country_answers_extra_rtt_ms"]) else []),
        *([f"  Route 53: {r['cells_by_network']} cells answered by network ({r['cidr_blocks']}/{r['cidr_blocks_quota']} CIDR blocks), "
           f"{r['us_states_by_subdivision']} US states by subdivision ({r['records']}/{r['records_quota']} records); "
           f"the others' country answers cost +{x['mean']} ms mean, +{x['p95']} ms p95"]
          if (r := summary["route53"]) and (x := r["extra_rtt_ms"]) else []),
        "  per center: " + ", ".join(f"{c} {v['cells']} cells {v['demand_share']:.1%}"
                                     + (f" ({v['load_over_capacity']:.0%} of capacity)" if v["load_over_capacity"] is not None else "")
                                     for c, v in summary["per_center"].items()),
        "",
        f"{'country':<8}{'center':<16}{'reason':<20}{'rtt ms':>8}  edges",
    ]
    for code, route in summary["routes"].items():
        rtt = "-" if route["rtt_ms"] is None else f"{route['rtt_ms']:.1f}"
        lines.append(f"{code:<8}{route['center'] or '-':<16}{route['reason']:<20}{rtt:>8}  {' '.join(route['edges'])}")
    return "\n".join(lines)
