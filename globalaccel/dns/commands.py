"""What `globalaccel dns sync` does, separate from argument parsing: table -> Answers -> backend sync."""

from __future__ import annotations

from typing import Any

from globalaccel.answers import Answers
from globalaccel.dns.backend import sync
from globalaccel.dns.factory import open_backend
from globalaccel.routing.summary import route_table
from globalaccel.settings import BackendSettings
from globalaccel.topology import Topology


def dns_sync(topology: Topology, settings: BackendSettings, dry_run: bool) -> dict[str, Any]:
    """Plan (and unless dry_run, apply) the records for the stack's table on the backend `settings` names."""
    table = route_table(topology)
    zone = open_backend(topology, settings, dry_run=dry_run)
    desired = zone.render(Answers.from_table(table, topology))
    report = sync(zone, desired, dry_run=dry_run)
    estimate = zone.estimate(report.changes) if report.changes is not None else {"requests": 0, "tokens": 0}
    where = getattr(zone.backend, "zone_id", None) or "(not created yet)" if settings.kind == "route53" else settings.endpoint_url
    return {
        "backend": zone.name, "zone": zone.ownership.zone, "zone_id": where, "table_hash": table.content_hash,
        "desired_records": len(desired), "plan": report.planned, "planned_change_requests": estimate["requests"],
        "planned_change_tokens": estimate["tokens"], "dry_run": dry_run,
        "applied_change_requests": report.stats.requests, "change_tokens": report.stats.change_tokens,
        "throttle_retries": report.stats.retries, "rounds": report.rounds,
        "converged": report.converged or (dry_run and report.changes is not None),
    }


def render_sync(result: dict[str, Any]) -> str:
    p = result["plan"]
    lines = [
        f"{result['backend']} zone {result['zone']} ({result['zone_id']}): table {result['table_hash'][:16]}, "
        f"{result['desired_records']} desired records",
        f"  plan: {p['create']} create, {p['update']} update, {p['delete']} delete -> "
        f"{result['planned_change_requests']} change requests, {result['planned_change_tokens']} change tokens",
    ]
    if result["dry_run"]:
        lines.append("  dry run: nothing applied")
    else:
        lines.append(f"  applied: {result['applied_change_requests']} change requests, {result['change_tokens']} change tokens, "
                     f"converged: {result['converged']}")
    return "\n".join(lines)
