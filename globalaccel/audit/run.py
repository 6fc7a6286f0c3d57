"""`globalaccel audit`: gather live state from a source, run every check, build the report."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from globalaccel.answers import Answers
from globalaccel.audit.checks import check_answers, check_decision_log, expected_from_log, expected_from_table, what_if
from globalaccel.audit.drift import published_table, record_drift
from globalaccel.audit.findings import DRIFT_KINDS, AuditReport, CountryResult, Scenario
from globalaccel.audit.manifests import check_manifests
from globalaccel.audit.sources import cell_networks, country_networks, ecs_answers, powerdns_ecs_answers, route53_answers
from globalaccel.audit.stores import check_buckets
from globalaccel.control.decisionlog import LOG_NAME
from globalaccel.dns.backend import claim_record, read_anchor
from globalaccel.dns.records import CIDR_TYPE, Record
from globalaccel.dns.route53_cells import cidr_selection
from globalaccel.dns.route53_compile import compile_route53, layout_for
from globalaccel.errors import GlobalaccelError
from globalaccel.findings import Finding
from globalaccel.routing import RoutingTable
from globalaccel.routing.summary import route_table
from globalaccel.settings import BackendSettings, LoopSettings
from globalaccel.topology import Topology

PROGRAM = "program"  # --manifests program: render the stack's own manifests with the Pulumi program


class AuditCannotRun(GlobalaccelError):
    """The audit itself could not run (missing source, unreachable endpoint, bad arguments): exit 2."""

    prefix = "globalaccel audit: could not run"


@dataclass
class AuditOptions:
    source: str  # plan | local | route53 | powerdns
    backend: BackendSettings | None = None  # the live zone's backend (route53 | powerdns), as the loop opens it
    dns: str = f"{LoopSettings().dns_host}:{LoopSettings().dns_port}"
    state_dir: Path | None = None
    what_if: bool = False
    s3_endpoint_url: str | None = None
    check_s3: bool = False
    manifests: Path | None = None
    min_coverage: float = 0.99  # share of demand whose answers must be verified for the audit to say COMPLIANT
    log_anchor: dict[str, Any] | None = None  # the decision log's head as an earlier audit recorded it


def _live_records(topology: Topology, settings: BackendSettings) -> list[Record]:
    """Every record in the live zone, ours or not (a foreign fallback record matters too), read through
    the same backend the loop publishes with."""
    from globalaccel.dns.factory import open_backend

    try:
        zone = open_backend(topology, settings, dry_run=True)
        if settings.kind == "route53" and getattr(zone.backend, "zone_id", None) is None:
            raise AuditCannotRun(f"no hosted zone {topology.zone} at {settings.endpoint_url or 'AWS'}")
        return zone.backend.records()
    except GlobalaccelError as exc:
        if isinstance(exc, AuditCannotRun):
            raise
        raise AuditCannotRun(str(exc)) from exc


def _drift_table(topology: Topology, options: AuditOptions, from_files: RoutingTable) -> tuple[RoutingTable, str]:
    """The table the live zone should hold: the loop's published one when its state folder is given."""
    if options.state_dir is not None:
        published = published_table(options.state_dir, topology)
        if published is not None:
            return published, f"the table the loop last published (generation {published.generation}, its saved state)"
    return from_files, "the table computed from the stack's files (no loop state given)"


def run_audit(topology: Topology, options: AuditOptions) -> AuditReport:
    table = route_table(topology)
    log = options.state_dir / LOG_NAME if options.state_dir else None
    if log is not None and not log.exists():
        raise AuditCannotRun(f"{log}: no decision log there (is --state-dir the loop's state folder?)")
    answers = Answers.from_table(table, topology)
    expected = expected_from_log(log, topology) if log is not None else expected_from_table(answers)
    findings: list[Finding] = []
    notes: list[str] = []
    live_anchor: dict[str, Any] | None = None  # the log head the loop published into the live zone
    zone_read = {"plan": "the zone the stack's table compiles to", "route53": "the live Route 53 zone"}
    if options.source in zone_read:
        asked = {code: f"{zone_read[options.source]}, resolved with Route 53's semantics for a client in {code} on its continent "
                       "and every continent whose branch names it (A, and AAAA where the zone has any; every record of every "
                       "routing policy)" for code in topology.countries}
    else:
        # The embedded server locates by the stack's network database when it has one; PowerDNS by its own.
        networks = (cell_networks(topology) if options.source == "local" else None) or country_networks()
        asked = {code: f"ECS queries (A, AAAA) from {len(networks[code])} networks ({' '.join(networks[code])}) to {options.dns}"
                 if code in networks else "no IPv4 network of its own" for code in topology.countries}
    if options.source == "plan":
        answer, fallbacks = route53_answers(compile_route53(topology, answers, cells=cidr_selection(topology)), topology)
        findings += fallbacks
    elif options.source == "route53":
        try:
            live = _live_records(topology, options.backend or BackendSettings(kind="route53"))
            records = [r for r in live if r.type in ("A", "AAAA", "CNAME", CIDR_TYPE)]
        except AuditCannotRun:
            raise
        except Exception as exc:
            raise AuditCannotRun(f"Route 53 at {(options.backend and options.backend.endpoint_url) or 'AWS'}: {exc}") from exc
        answer, fallbacks = route53_answers(records, topology)
        findings += fallbacks
        drift_table, drift_from = _drift_table(topology, options, table)
        layout = layout_for(topology)
        findings += record_drift(live, [claim_record(layout), *compile_route53(topology, Answers.from_table(drift_table, topology),
                                                                                    cells=cidr_selection(topology))],
                                 lambda r: layout.owns(r) and r.name != layout.anchor_name)
        live_anchor = read_anchor(live, layout)
        notes.append(f"drift: the live zone compared with {drift_from}")
    elif options.source == "local":
        if log is None:
            raise AuditCannotRun("--source local needs --state-dir (the running loop's state folder, for the live table)")
        host, _, port = options.dns.rpartition(":")
        ask = ecs_answers(host or "127.0.0.1", int(port), topology, networks)
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
        import urllib.parse

        from globalaccel.audit.powerdns_latent import latent_paths
        from globalaccel.audit.powerdns_shapes import uncompiled_records
        from globalaccel.dns.powerdns import compile_powerdns
        from globalaccel.dns.powerdns import layout_for as powerdns_layout

        pdns_layout = powerdns_layout(topology)
        records = _live_records(topology, options.backend or BackendSettings(kind="powerdns"))
        drift_table, drift_from = _drift_table(topology, options, table)
        settings = options.backend or BackendSettings(kind="powerdns")
        desired = [claim_record(pdns_layout), *compile_powerdns(topology, Answers.from_table(drift_table, topology),
                                                                health=settings.center_health_endpoints)]
        findings += record_drift(records, desired, pdns_layout.owns)
        notes.append(f"drift: the live zone compared with {drift_from}")
        # Every path each country's record may answer under any health state, not only the one answered now.
        health = [urllib.parse.urlsplit(u).hostname or "" for u in settings.center_health_endpoints.values()]
        findings += latent_paths(topology, records, pdns_layout, [*health, *(c.address for c in topology.centers)])
        findings += uncompiled_records(records, pdns_layout)  # code that builds what it answers hides it from the line above
        live_anchor = read_anchor(records, pdns_layout)
        if not any(r.name == pdns_layout.geo_probe for r in records):
            raise AuditCannotRun(f"no {pdns_layout.geo_probe} record in PowerDNS: sync the zone with globalaccel first")
        host, _, port = options.dns.rpartition(":")
        # Real queries with ECS. PowerDNS locates clients with its own GeoIP data, which can disagree with
        # ours for a network, so each answer is judged against the country PowerDNS itself reports.
        seen, placed = powerdns_ecs_answers(host or "127.0.0.1", int(port), topology, pdns_layout.geo_probe)
        for code, where in sorted(placed.items()):
            if where != code:  # its geo data disagrees with ours for this network: not a test of this country
                seen[code] = None
                notes.append(f"{code}: PowerDNS places our network for it in {where or 'no country'}; not audited via PowerDNS")
        answer = seen.get
    else:
        raise AuditCannotRun(f"unknown source {options.source!r}")
    results, problems = check_answers(topology, expected, answer, asked)
    findings += problems
    scenarios: list[Scenario] = []
    if options.what_if:
        scenarios, scenario_findings = what_if(topology, before=answer)
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
    scope: dict[str, Any] = {"answers": options.source,
                             "what_if": ("each failure's table computed by the router from the stack's files; 'before' is the "
                                         f"answers read from the {options.source} source") if options.what_if else False,
                             "s3": bool(options.check_s3 or options.s3_endpoint_url), "manifests": None}
    if options.manifests is not None:
        folder = options.manifests
        with tempfile.TemporaryDirectory() as tmp:
            if str(folder) == PROGRAM:  # the manifests the Pulumi program renders for this stack
                from globalaccel.iac.preview import run_program, write_manifests

                folder = Path(tmp)
                write_manifests(run_program(topology.stack, Path(topology.source_files[0]).resolve().parent.parent), folder)
            elif not folder.is_dir():
                raise AuditCannotRun(f"{folder}: not a folder of rendered manifests (or '{PROGRAM}')")
            manifest_records, manifest_findings, scope["manifests"] = check_manifests(folder, topology)
        if str(options.manifests) == PROGRAM:
            scope["manifests"]["folder"] = "rendered by the Pulumi program"
        stores += manifest_records
        findings += manifest_findings
    log_summary = None
    if log is not None:
        anchors: dict[str, dict[str, Any]] = {}
        if live_anchor is not None:
            anchors["the live zone's _globalaccel-log record"] = live_anchor
        if options.log_anchor is not None:
            anchors["the earlier audit given with --log-anchor"] = options.log_anchor
        log_summary, log_findings = check_decision_log(log, topology, anchors)
        if (options.source in ("route53", "powerdns") and live_anchor is None and options.state_dir is not None
                and published_table(options.state_dir, topology) is not None):
            # The loop published from this state folder, and every publish anchors the log's head in the zone.
            log_findings.append(Finding("log_anchor_missing", LOG_NAME, "the loop's state shows a published table but the live "
                                        "zone holds no _globalaccel-log record: the anchor was removed, or the zone is not the "
                                        "one this loop publishes to"))
        findings += log_findings
    unique = list({(f.kind, f.subject, f.evidence): f for f in findings}.values())
    violations = [f for f in unique if f.kind not in DRIFT_KINDS]
    drift = [f for f in unique if f.kind in DRIFT_KINDS]
    return AuditReport(topology.stack, options.source, len(topology.countries), results, scenarios, violations, stores, log_summary,
                       table.content_hash, notes, topology.residency.describe(topology.countries), drift,
                       coverage(topology, results, options.min_coverage), provenance(topology), scope)


UNVERIFIED = ("not_locatable",)  # the source could not place a client there: its answers were not seen


def coverage(topology: Topology, results: list[CountryResult], min_share: float) -> dict[str, Any]:
    """Coverage is a verdict input: every strict country and `min_share` of demand must have been verified."""
    demand = {code: float(max(c.population, 1)) for code, c in topology.countries.items()}
    unverified = sorted(r.country for r in results if r.status in UNVERIFIED)
    strict_unverified = [c for c in topology.residency.strict_countries(unverified)]
    share = 1.0 - sum(demand[c] for c in unverified) / (sum(demand.values()) or 1.0)
    return {"verified_demand_share": round(share, 6), "required_share": min_share, "unverified": unverified,
            "strict_unverified": strict_unverified, "sufficient": share >= min_share and not strict_unverified}


def provenance(topology: Topology) -> dict[str, Any]:
    """What produced the report: when, which tool and commit, and the hash of every input file."""
    import datetime as dt
    import hashlib
    import subprocess
    from importlib import metadata

    files = {}
    for name in topology.source_files:
        path = Path(name)
        files[path.name] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "missing"
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=Path(__file__).resolve().parent,
                                    capture_output=True, text=True, timeout=10, check=True).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "unknown (not a git checkout)", False
    try:
        version = metadata.version("globalaccel")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return {"time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "tool": f"globalaccel {version}",
            "commit": commit + (" (with uncommitted changes)" if dirty else ""), "rules_hash": topology.residency.rules_hash,
            "input_sha256": files}
