"""Compliance audit: prove from live state where every country's traffic and data go.

What is checked, each against globalaccel.residency (the one implementation of the rules):
- answers: per country, the addresses a client there is given, from the source (the compiled plan,
  Route 53 through boto3, PowerDNS through its API, or the embedded server through real ECS queries);
  each answered address names an edge and the center that edge forwards to, so the whole path is read
  from live DNS: the center must be one the country's rule allows (else out_of_region_answer), the edge
  may not stand in a forbidden jurisdiction nor terminate outside the allowed ones (edge_jurisdiction),
  an address that is no edge's is unknown_answer, an answer the table does not give is drift
  (answer_not_in_table), and a country the table fails closed must get nothing. Route 53 zones are read whole (not only our
  records) and evaluated with Route 53's semantics with every health check failing, so a fallback
  record that would fail open is found.
- what-if: every single and double center failure, and "all edges of country X down" for every strict
  country: every answer stays compliant or the country fails closed. Who loses service is reported.
- data stores: S3 buckets (region, residency tags, replication targets, public access, encryption,
  versioning) and Kubernetes volumes/stateful workloads from manifests.
- decision log: the hash chain end to end, and that no logged route ever broke residency.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from globalaccel.answers import Answers, Served
from globalaccel.audit.findings import CountryResult, Scenario
from globalaccel.audit.sources import AnswerSource, route53_answers, route53_current
from globalaccel.control.decisionlog import DecisionEntry, read_entries, replay, verify_chain
from globalaccel.dns.route53_cells import cidr_selection
from globalaccel.dns.route53_compile import compile_route53
from globalaccel.findings import Finding
from globalaccel.residency import Mode
from globalaccel.routing import REASON_FAIL_CLOSED, Health, Router
from globalaccel.routing.fallback import FallbackOrder
from globalaccel.routing.summary import route_table
from globalaccel.topology import Edge, Topology

# ---- the checks ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Expected:
    """What the table says a country gets: an explicit state, never inferred from absence."""

    state: str  # served | fail_closed | no_path | unknown (the log has no decision for it)
    center: str | None = None
    addresses: frozenset[str] = frozenset()


def expected_from_table(answers: Answers) -> dict[str, Expected]:
    """Per country, every address the zone may answer its clients: each of its cells' chosen path and failover
    chain (a server locating by network answers each cell its own; one locating by country, the principal
    cell's). The state and center are the principal cell's: what a country-level answer gives."""
    out: dict[str, Expected] = {}
    for code, decision in answers.countries():
        if isinstance(decision, Served):
            every = frozenset(a for cell in answers.cells_of_country[code] for d in [answers.cell(cell)] if isinstance(d, Served)
                              for p in d.paths for a in p.addresses)
            out[code] = Expected("served", decision.center, every)
        else:
            out[code] = Expected(decision.state)
    return out


def expected_from_log(path: Path, topology: Topology) -> dict[str, Expected]:
    """The live table, replayed from the decision log (each entry holds the routes of the cells that
    changed), per country through its cells. A country not every cell of which the log decided is unknown."""
    entries, _ = read_entries(path)
    routes = replay(entries)
    edges = topology.edge_by_id
    fallback = FallbackOrder(topology)
    cells: dict[str, list[str]] = {}
    for cell in topology.cells:
        cells.setdefault(cell.country, []).append(cell.id)
    by_id = topology.cell_by_id
    out: dict[str, Expected] = {}
    for code in topology.countries:
        mine = cells.get(code, [])
        if not mine or any(c not in routes for c in mine):
            out[code] = Expected("unknown")
            continue
        principal = routes[topology.principal_cell[code]]
        if principal.center is None or not principal.edges:
            out[code] = Expected("fail_closed" if principal.reason == REASON_FAIL_CLOSED else "no_path")
            continue
        every: set[str] = set()
        for cid in mine:
            route = routes[cid]
            if route.center is None:
                continue
            # The chain the zone carries with it is a function of the stack (routing.fallback), not logged.
            centers = (route.center, *fallback.after(by_id[cid], route.center))
            every |= {edges[e].address_for(c) for c in centers for e in route.edges if e in edges}
        out[code] = Expected("served", principal.center, frozenset(every))
    return out


def describe_paths(topology: Topology, addresses: Iterable[str]) -> list[str]:
    """Evidence for each answered address: the edge it names, where that edge stands and what it does,
    and the center it forwards to."""
    out = []
    for address in sorted(addresses):
        path = topology.path_by_address.get(address)
        if path is None:
            out.append(f"{address} -> no edge of the catalog")
        else:
            edge, center = path
            out.append(f"{address} -> {edge.id} ({edge.country}, {edge.role.value}) -> {center}")
    return out


def check_answers(topology: Topology, expected: Mapping[str, Expected], answer: AnswerSource,
                  asked: Mapping[str, str] | None = None) -> tuple[list[CountryResult], list[Finding]]:
    path_by_address = topology.path_by_address  # an answer's address names its edge and the center it forwards to
    results: list[CountryResult] = []
    findings: list[Finding] = []
    for code in sorted(topology.countries):
        rule = topology.residency.rule_for(code)
        want = expected[code]  # every country has an explicit expectation: a missing one is a bug, not a state
        center, addresses = want.center, set(want.addresses)
        got = answer(code)
        allowed = list(topology.residency.permitted_centers(code, topology.center_ids))
        if got is None:
            results.append(CountryResult(code, rule.name, rule.mode.value, center, [], "not_locatable", allowed,
                                         (asked or {}).get(code, "")))
            continue
        if got:
            status = "served"
        elif want.state == "unknown":
            status = "not_logged"  # the loop's log holds no decision for it: reported, not judged against a guess
        elif want.state == "served":
            status = "lost_service"  # the table serves it; live state answers nothing. Never called fail-closed.
            findings.append(Finding("lost_service", code, f"the table routes {code} to {center} through {len(addresses)} answers; "
                                    "live state gives no answer", code))
        else:
            status = want.state  # fail_closed (the rule refuses: lawful) or no_path (nothing healthy it may use)
        results.append(CountryResult(code, rule.name, rule.mode.value, center, sorted(got), status, allowed,
                                     (asked or {}).get(code, ""), describe_paths(topology, got)))
        if center is not None and not topology.residency.allows(code, center):
            findings.append(Finding("out_of_region_answer", code, f"table routes {code} to {center}, which rule {rule.name!r} forbids"))
        # Residency of what live state answers needs no table: each address names its path. Judged always,
        # also for a country the loop's log has no decision for.
        findings.extend(_path_findings(topology, code, got, path_by_address))
        if rule.mode is Mode.STRICT and not topology.residency.permitted_centers(code, topology.center_ids) and got:
            findings.append(Finding("fail_closed_violated", code, f"{code} may never be served (rule {rule.name!r}) but got {sorted(got)}"))
            continue
        if want.state == "unknown":
            continue
        if center is None and got:
            findings.append(Finding("fail_closed_violated", code, f"{code} must get no answer (rule {rule.name!r}) but got {sorted(got)}"))
            continue
        stray = got - addresses
        if stray:
            names = [f"{path_by_address[a][0].id}->{path_by_address[a][1]}" if a in path_by_address else a for a in sorted(stray)]
            findings.append(Finding("answer_not_in_table", code, f"answered {names}, which the routing table does not give {code} "
                                    f"(its center {center}; allowed {allowed})"))
    return results, findings


def _path_findings(topology: Topology, code: str, got: Iterable[str], path_by_address: Mapping[str, tuple[Edge, str]]) -> list[Finding]:
    """Residency of each answered path as live DNS states it: the address names the edge and the center
    it forwards to, so the whole path is judged from the answer alone, whatever the table says."""
    residency = topology.residency
    rule = residency.rule_for(code)
    out = []
    for address in sorted(got):
        path = path_by_address.get(address)
        if path is None:
            out.append(Finding("unknown_answer", code, f"answered {address}, which is no edge's address for any center"))
            continue
        edge, center = path
        if not residency.allows(code, center):
            out.append(Finding("out_of_region_answer", code, f"answered {address}: {edge.id} forwards to {center}, "
                               f"which rule {rule.name!r} forbids (a transfer out of the allowed set)"))
        why = residency.edge_violation(code, edge.country, edge.role)
        if why is not None:
            out.append(Finding("edge_jurisdiction", code, f"answered {address}: {why}"))
    return out


def what_if(topology: Topology, include_edge_scenarios: bool = True,
            before: AnswerSource | None = None) -> tuple[list[Scenario], list[Finding]]:
    """Every single and double center failure, and all edges of each strict country down: each table
    is compiled to Route 53 records and every country resolved with every health check failing.
    `before` is where traffic goes now, from the audited source (live answers); without it, the zone
    the stack's files compile to."""
    scenarios: list[Scenario] = []
    findings: list[Finding] = []
    all_edges = frozenset(e.id for e in topology.edges)
    cases: list[tuple[str, frozenset[str], frozenset[str], str | None]] = []
    for n in (1, 2):
        for down in itertools.combinations(topology.center_ids, n):
            cases.append((f"centers down: {', '.join(down)}", all_edges, frozenset(topology.center_ids) - set(down), None))
    if include_edge_scenarios:
        for code in topology.residency.strict_countries(topology.countries):
            mine = frozenset(e.id for e in topology.edges if e.country == code)
            if mine:
                cases.append((f"all edges of {code} down", all_edges - mine, frozenset(topology.center_ids), code))
    router = Router(topology)  # one router for every scenario: its geometry does not depend on health
    baseline = route_table(topology, router=router)
    # Served before = answered by the zone all healthy, as Route 53 resolves it (a location Route 53 cannot
    # place gets nothing in every scenario, and does not "lose" service to a failure).
    cells = cidr_selection(topology)
    baseline_records = compile_route53(topology, Answers.from_table(baseline, topology), cells=cells)
    baseline_answer = before or route53_answers(baseline_records, topology)[0]
    served_before = {c for c in topology.countries if baseline_answer(c)}
    now = route53_current(baseline_records, topology)

    def centers_of(addresses: Iterable[str]) -> list[str]:
        return sorted({topology.path_by_address[a][1] for a in addresses if a in topology.path_by_address})
    for name, edges, centers, country in cases:
        table = route_table(topology, Health(edges, centers), router)
        answers = Answers.from_table(table, topology)
        answer, fallbacks = route53_answers(compile_route53(topology, answers, cells=cells), topology)
        results, problems = check_answers(topology, expected_from_table(answers), answer)
        problems += fallbacks
        for p in problems:
            findings.append(Finding(p.kind, p.subject, f"[{name}] {p.evidence}"))
        losing = sorted(r.country for r in results if r.status in ("fail_closed", "no_path", "lost_service") and r.country in served_before)
        down_centers = sorted(set(topology.center_ids) - centers)
        # Where traffic goes: each country whose center changes, as the answers after the failure state it
        # (each answered address names the center its edge forwards to).
        moves: dict[str, str] = {}
        after = route53_current(compile_route53(topology, answers, cells=cells), topology, down_centers)
        for r in results:
            was = centers_of(now.get(r.country, ()))
            goes = centers_of(after.get(r.country, ()))
            if was != goes:
                moves[r.country] = f"{'+'.join(was) or 'none'} -> {'+'.join(goes) or r.status.replace('_', ' ')}"
        # The data plane alone (no controller): the all-healthy zone, the down centers' checks failing. Every
        # answer must still be a lawful path; a country whose chain holds no live center keeps its answer.
        unattended: dict[str, str] = {}
        if down_centers and country is None:
            for code, addresses in route53_current(baseline_records, topology, down_centers).items():
                for address in addresses:
                    edge, center = topology.path_by_address[address]
                    why = topology.residency.path_violation(code, edge.country, edge.role, center)
                    if why is not None:
                        findings.append(Finding("out_of_region_answer", code, f"[{name}, before the controller reacts] {address} "
                                                f"-> {edge.id} -> {center}: {why}", code))
                was, goes = centers_of(now.get(code, ())), centers_of(addresses)
                if was != goes:
                    unattended[code] = f"{'+'.join(was) or 'none'} -> {'+'.join(goes) or 'no answer'}"
        scenarios.append(Scenario(name, down_centers, country, losing, len(problems), moves, unattended))
    return scenarios, findings


def check_decision_log(path: Path, topology: Topology,
                       anchors: Mapping[str, Mapping[str, Any]] | None = None) -> tuple[dict[str, Any], list[Finding]]:
    """The chain end to end, no logged route outside its rule, and, for every anchor kept outside the log
    (named by where it was kept: the live zone, an earlier audit), that the log still extends it: a chain
    cut short, or entries removed and the rest re-chained, keeps an intact chain but not the anchor."""
    raw, problems = verify_chain(path)
    entries = [DecisionEntry.from_json(e) for e in raw]
    findings = list(problems)
    head = {"length": len(raw), "hash": raw[-1].get("hash") if raw else None}
    for where, anchor in (anchors or {}).items():
        length, digest = int(anchor.get("length", 0)), anchor.get("hash")
        if length < 1 or not digest:
            findings.append(Finding("log_anchor_invalid", path.name, f"the anchor in {where} names no entry ({dict(anchor)})"))
        elif len(raw) < length:
            findings.append(Finding("log_truncated", path.name, f"the log has {len(raw)} entries; {where} anchored "
                                    f"{length} with head {str(digest)[:16]}"))
        elif raw[length - 1].get("hash") != digest:
            findings.append(Finding("log_rechained", path.name, f"entry {length} is not the one {where} anchored "
                                    f"({str(digest)[:16]}): entries were removed or the chain was rewritten"))
    for number, entry in enumerate(entries, start=1):
        for route in entry.routes.values():
            center, country = route.center, route.country
            if center is not None and country in topology.countries and not topology.residency.allows(country, center):
                findings.append(Finding("log_residency", f"{path.name} entry {number}",
                                        f"generation {entry.generation} routed {country} to {center}"))
    newest = max((int(a.get("length", 0)) for a in (anchors or {}).values()), default=0)
    return {"path": str(path), "entries": len(entries), "chain_intact": not problems, "head": head,
            "anchors": {where: dict(a) for where, a in (anchors or {}).items()},
            "beyond_anchor": len(raw) - newest if anchors else None}, findings


def summarise_centers(results: Iterable[CountryResult]) -> Mapping[str, int]:
    out: dict[str, int] = {}
    for r in results:
        out[r.center or "(none)"] = out.get(r.center or "(none)", 0) + 1
    return out
