"""`globalaccel audit`: gather live state from a source, run every check, build the report."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from globalaccel.audit.checks import (
    AuditReport,
    Finding,
    Scenario,
    check_answers,
    check_buckets,
    check_decision_log,
    check_manifests,
    ecs_answers,
    expected_from_log,
    expected_from_table,
    powerdns_ecs_answers,
    route53_answers,
    what_if,
)
from globalaccel.dns.records import Record
from globalaccel.dns.route53_compile import compile_route53
from globalaccel.plan import compute_plan
from globalaccel.topology import Topology


class AuditCannotRun(Exception):
    """The audit itself could not run (missing source, unreachable endpoint, bad arguments): exit 2."""


@dataclass
class AuditOptions:
    source: str  # plan | local | route53 | powerdns
    endpoint_url: str | None = None
    dns: str = "127.0.0.1:5353"
    state_dir: Path | None = None
    what_if: bool = False
    s3_endpoint_url: str | None = None
    check_s3: bool = False
    manifests: Path | None = None


def _route53_zone_records(topology: Topology, endpoint_url: str | None) -> list[Record]:
    from globalaccel.dns.commands import DnsCommandError, find_zone, route53_client
    from globalaccel.dns.route53 import from_route53

    client = route53_client(endpoint_url)
    try:
        zone = find_zone(client, topology.zone, create=False)
    except DnsCommandError as exc:
        raise AuditCannotRun(str(exc)) from exc
    records: list[Record] = []
    kwargs: dict[str, Any] = {"HostedZoneId": zone}
    while True:  # every record in the zone, not only ours: a foreign fallback matters too
        page = client.list_resource_record_sets(**kwargs)
        records.extend(from_route53(r) for r in page["ResourceRecordSets"] if r["Type"] in ("A", "AAAA", "CNAME"))
        if not page.get("IsTruncated"):
            break
        kwargs = {"HostedZoneId": zone, "StartRecordName": page["NextRecordName"], "StartRecordType": page["NextRecordType"]}
        if page.get("NextRecordIdentifier"):
            kwargs["StartRecordIdentifier"] = page["NextRecordIdentifier"]
    return list({r.key: r for r in records}.values())


def run_audit(topology: Topology, options: AuditOptions) -> AuditReport:
    table, _ = compute_plan(topology)
    log = options.state_dir / "decisions.jsonl" if options.state_dir else None
    if log is not None and not log.exists():
        raise AuditCannotRun(f"{log}: no decision log there (is --state-dir the loop's state folder?)")
    expected = expected_from_log(log, topology) if log is not None else expected_from_table(table, topology)
    findings: list[Finding] = []
    notes: list[str] = []
    if options.source == "plan":
        answer, fallbacks = route53_answers(compile_route53(topology, table), topology)
        findings += fallbacks
    elif options.source == "route53":
        try:
            answer, fallbacks = route53_answers(_route53_zone_records(topology, options.endpoint_url), topology)
        except AuditCannotRun:
            raise
        except Exception as exc:
            raise AuditCannotRun(f"Route 53 at {options.endpoint_url or 'AWS'}: {exc}") from exc
        findings += fallbacks
    elif options.source == "local":
        if log is None:
            raise AuditCannotRun("--source local needs --state-dir (the running loop's state folder, for the live table)")
        host, _, port = options.dns.rpartition(":")
        ask = ecs_answers(host or "127.0.0.1", int(port), topology)
        # A consistent snapshot of a running loop: the table from the log, every country's answer, and
        # the log again; if the loop published a new table meanwhile, take it all again.
        for _attempt in range(5):
            before = log.read_bytes()
            try:
                seen = {code: ask(code) for code in topology.countries}
            except Exception as exc:
                raise AuditCannotRun(f"no DNS server answering at {options.dns}: {exc}") from exc
            if log.read_bytes() == before:
                break
        else:
            raise AuditCannotRun("the loop changed its table during every one of 5 attempts; audit a quieter moment")
        expected = expected_from_log(log, topology)
        answer = seen.get
    elif options.source == "powerdns":
        import os

        from globalaccel.dns.powerdns import PowerDnsError, PowerDnsProvider, layout_for

        key = os.environ.get("PDNS_API_KEY")
        if not options.endpoint_url or not key:
            raise AuditCannotRun("--source powerdns needs --endpoint-url (the PowerDNS API), PDNS_API_KEY and --dns (its DNS address)")
        layout = layout_for(topology)
        try:
            records = PowerDnsProvider(options.endpoint_url, key, layout).records()
        except PowerDnsError as exc:
            raise AuditCannotRun(str(exc)) from exc
        if not any(r.name == layout.geo_probe for r in records):
            raise AuditCannotRun(f"no {layout.geo_probe} record in PowerDNS: sync the zone with globalaccel first")
        host, _, port = options.dns.rpartition(":")
        # Real queries with ECS. PowerDNS locates clients with its own GeoIP data, which can disagree with
        # ours for a network, so each answer is judged against the country PowerDNS itself reports.
        seen, placed = powerdns_ecs_answers(host or "127.0.0.1", int(port), topology, layout.geo_probe)
        for code, where in sorted(placed.items()):
            if where != code:  # its geo data disagrees with ours for this network: not a test of this country
                seen[code] = None
                notes.append(f"{code}: PowerDNS places our network for it in {where or 'no country'}; not audited via PowerDNS")
        answer = seen.get
    else:
        raise AuditCannotRun(f"unknown source {options.source!r}")
    results, problems = check_answers(topology, expected, answer)
    findings += problems
    scenarios: list[Scenario] = []
    if options.what_if:
        scenarios, scenario_findings = what_if(topology)
        findings += scenario_findings
    stores: list[dict[str, Any]] = []
    if options.check_s3 or options.s3_endpoint_url:
        import boto3

        s3 = boto3.client("s3", endpoint_url=options.s3_endpoint_url)
        try:
            bucket_records, bucket_findings = check_buckets(s3, topology)
        except Exception as exc:
            raise AuditCannotRun(f"S3 at {options.s3_endpoint_url or 'AWS'}: {exc}") from exc
        stores += bucket_records
        findings += bucket_findings
    if options.manifests is not None:
        if not options.manifests.is_dir():
            raise AuditCannotRun(f"{options.manifests}: not a folder of rendered manifests")
        manifest_records, manifest_findings = check_manifests(options.manifests, topology)
        stores += manifest_records
        findings += manifest_findings
    log_summary = None
    if log is not None:
        log_summary, log_findings = check_decision_log(log, topology)
        findings += log_findings
    unique = list({(f.kind, f.subject, f.evidence): f for f in findings}.values())
    return AuditReport(topology.stack, options.source, len(topology.countries), results, scenarios, unique, stores, log_summary,
                       table.content_hash, notes)
