"""What `globalaccel dns ...` does, separate from argument parsing."""

from __future__ import annotations

import math
import uuid
from typing import Any

import boto3
from botocore.config import Config

from globalaccel.dns.budget import ApiBudget
from globalaccel.dns.plan import plan
from globalaccel.dns.records import fqdn
from globalaccel.dns.route53 import Route53Provider, order_changes, sync
from globalaccel.dns.route53_compile import compile_route53, layout_for
from globalaccel.dns.route53_validate import validate_records
from globalaccel.plan import compute_plan
from globalaccel.topology import Topology


class DnsCommandError(Exception):
    pass


def route53_client(endpoint_url: str | None) -> Any:
    # botocore's retries off: the provider retries, budgets and counts every request itself.
    return boto3.client("route53", endpoint_url=endpoint_url, config=Config(retries={"total_max_attempts": 1}))


def find_zone(client: Any, zone: str, create: bool) -> str:
    name = fqdn(zone)
    found = client.list_hosted_zones_by_name(DNSName=name, MaxItems="1").get("HostedZones", [])
    if found and fqdn(found[0]["Name"]) == name:
        return str(found[0]["Id"]).split("/")[-1]
    if not create:
        raise DnsCommandError(f"no hosted zone {name}; pass --create-zone to create it (or --zone-id)")
    return str(client.create_hosted_zone(Name=name, CallerReference=str(uuid.uuid4()))["HostedZone"]["Id"]).split("/")[-1]


def route53_sync(topology: Topology, endpoint_url: str | None, zone_id: str | None, create_zone: bool,
                 dry_run: bool, requests_per_s: float = 10.0) -> dict[str, Any]:
    table, _ = compute_plan(topology)
    desired = compile_route53(topology, table)
    layout = layout_for(topology)
    validate_records(desired, layout.zone, topology.countries)
    client = route53_client(endpoint_url)
    try:
        zone = zone_id or find_zone(client, topology.zone, create_zone and not dry_run)
    except DnsCommandError:
        if not dry_run:
            raise
        zone = "(not created yet)"  # a dry run plans against the empty zone it would create
    provider = Route53Provider(client, zone, layout, budget=ApiBudget.route53(requests_per_s=requests_per_s))
    current = [] if zone.startswith("(") else provider.records()
    provider.check_owner(current)
    changes = plan(current, desired, layout.owns)
    ordered = order_changes(changes, layout)
    expected_tokens = sum(c.tokens for c in ordered)
    expected_requests = math.ceil(sum(c.values for c in ordered) / 1000) if ordered else 0
    result: dict[str, Any] = {
        "backend": "route53",
        "zone": layout.zone,
        "zone_id": zone,
        "table_hash": table.content_hash,
        "desired_records": len(desired),
        "plan": changes.summary,
        "planned_change_requests": expected_requests,
        "planned_change_tokens": expected_tokens,
        "dry_run": dry_run,
    }
    if dry_run or not changes:
        result.update(applied_change_requests=0, change_tokens=0, converged=not changes)
        return result
    report = sync(provider, desired)
    result.update(applied_change_requests=report.stats.requests, change_tokens=report.stats.change_tokens,
                  throttle_retries=report.stats.retries, rounds=report.rounds, list_requests=report.list_requests,
                  converged=report.converged)
    return result


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


def powerdns_sync(topology: Topology, api_url: str, api_key: str, dry_run: bool) -> dict[str, Any]:
    from globalaccel.dns.powerdns import PowerDnsError, PowerDnsProvider, compile_powerdns
    from globalaccel.dns.powerdns import layout_for as pdns_layout

    table, _ = compute_plan(topology)
    desired = compile_powerdns(topology, table)
    provider = PowerDnsProvider(api_url, api_key, pdns_layout(topology))
    created = False if dry_run else provider.ensure_zone()
    try:
        current = provider.records()
    except PowerDnsError:
        if not dry_run:
            raise
        current = []  # a dry run against a zone that does not exist yet plans everything
    provider.check_owner(current)
    changes = plan(current, desired, provider.layout.owns)
    applied = 0 if dry_run else provider.apply(changes)
    return {
        "backend": "powerdns", "zone": provider.layout.zone, "zone_id": api_url, "table_hash": table.content_hash,
        "desired_records": len(desired), "plan": changes.summary, "planned_change_requests": 1 if changes else 0,
        "planned_change_tokens": 0, "dry_run": dry_run, "applied_change_requests": applied, "change_tokens": 0,
        "converged": dry_run or not changes or applied == 1, "zone_created": created,
    }
