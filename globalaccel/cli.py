"""The `globalaccel` command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from globalaccel.errors import ConfigError
from globalaccel.topology import load_stack

DEFAULT_STACKS = Path("stacks")


def _add_stack_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stack", required=True, help="stack name: reads stacks/Pulumi.<stack>.yaml")
    parser.add_argument("--stacks-dir", type=Path, default=DEFAULT_STACKS, help="folder holding the stack files (default: stacks)")


def cmd_plan(args: argparse.Namespace) -> int:
    from globalaccel.plan import compute_plan, render_text

    topology = load_stack(args.stack, args.stacks_dir)
    _, summary = compute_plan(topology)
    if args.format == "json":
        print(json.dumps(summary, indent=2))
    else:
        print(render_text(summary))
    return 1 if summary["residency_violations"] else 0


def cmd_dns_sync(args: argparse.Namespace) -> int:
    from globalaccel.dns.commands import render_sync, route53_sync

    topology = load_stack(args.stack, args.stacks_dir)
    if args.backend == "powerdns":
        from globalaccel.dns.commands import powerdns_sync

        key = os.environ.get("PDNS_API_KEY")
        if not args.endpoint_url or not key:
            print("globalaccel: --backend powerdns needs --endpoint-url (the PowerDNS API) and PDNS_API_KEY in the environment",
                  file=sys.stderr)
            return 2
        result = powerdns_sync(topology, args.endpoint_url, key, args.dry_run)
    else:
        result = route53_sync(topology, args.endpoint_url, args.zone_id, args.create_zone, args.dry_run)
    print(json.dumps(result, indent=2) if args.format == "json" else render_sync(result))
    return 0 if result["converged"] or args.dry_run else 1


def cmd_dns_serve(args: argparse.Namespace) -> int:
    from globalaccel.dns.serve import serve_stack

    topology = load_stack(args.stack, args.stacks_dir)
    return serve_stack(topology, args.host, args.port, args.local_country, args.duration, cache=not args.no_cache)


def cmd_up(args: argparse.Namespace) -> int:
    from globalaccel.probe.up import UpConfigError, UpOptions, up_stack

    topology = load_stack(args.stack, args.stacks_dir)
    peers: dict[str, str] = {}
    for item in args.peer or []:
        center, sep, url = item.partition("=")
        if not sep or not url:
            print(f"globalaccel: --peer takes CENTER=URL, got {item!r}", file=sys.stderr)
            return 2
        peers[center] = url
    if not args.local and args.vantage is None:
        print("globalaccel: without --local, name this prober's center with --vantage (and its peers with --peer CENTER=URL)",
              file=sys.stderr)
        return 2
    options = UpOptions(stacks_dir=args.stacks_dir, local=args.local, duration=args.duration, interval=args.interval, once=args.once,
                        dry_run=args.dry_run, dns_host=args.dns_host, dns_port=args.dns_port, metrics_port=args.metrics_port,
                        state_dir=args.state_dir, scenario=args.scenario, world_port=args.world_port, control_port=args.control_port,
                        vantage=args.vantage, source_address=args.source_address, peers=peers,
                        measurements_host=args.measurements_host, measurements_port=args.measurements_port, backend=args.backend,
                        endpoint_url=args.endpoint_url, create_zone=args.create_zone, zone_id=args.zone_id, lease=args.lease,
                        lease_namespace=args.lease_namespace, lease_name=args.lease_name, identity=args.identity)
    try:
        return up_stack(topology, options)
    except UpConfigError as exc:
        print(f"globalaccel: {exc}", file=sys.stderr)
        return 2


def cmd_audit(args: argparse.Namespace) -> int:
    from globalaccel.audit.report import to_html, to_markdown, write_all
    from globalaccel.audit.run import AuditCannotRun, AuditOptions, run_audit

    try:
        topology = load_stack(args.stack, args.stacks_dir)
        options = AuditOptions(source=args.source, endpoint_url=args.endpoint_url, dns=args.dns, state_dir=args.state_dir,
                               what_if=args.what_if, s3_endpoint_url=args.s3_endpoint_url, check_s3=args.s3, manifests=args.manifests)
        report = run_audit(topology, options)
    except (AuditCannotRun, ConfigError) as exc:
        print(f"globalaccel audit: could not run: {exc}", file=sys.stderr)
        return 2
    if args.format == "json":
        print(json.dumps(report.to_json(), indent=2))
    elif args.format == "html":
        print(to_html(report, topology))
    else:
        print(to_markdown(report))
    if args.out is not None:
        for path in write_all(report, topology, args.out):
            print(f"wrote {path}", file=sys.stderr)
    return 1 if report.violations else 0


def cmd_preview(args: argparse.Namespace) -> int:
    from globalaccel.iac.preview import run_program, summarise, write_manifests

    project = Path(__file__).resolve().parent.parent
    topology = load_stack(args.stack, args.stacks_dir)  # bad config fails here, before any resource
    resources = run_program(args.stack, project)
    sys.path.insert(0, str(project))
    from policy.validators import validate

    violations = [v.__dict__ for v in validate(resources, topology)]
    summary = summarise(args.stack, resources, list(topology.center_ids), violations)
    if args.out is not None:
        manifests = write_manifests(resources, args.out / "manifests")
        (args.out / "resources.json").write_text(json.dumps([r.__dict__ for r in resources], indent=1, default=str))
        summary["manifests"] = len(manifests)
    if args.format == "json":
        print(json.dumps(summary, indent=2))
    else:
        print(f"stack {args.stack}: {summary['total_resources']} resources, {len(violations)} policy violations")
        for kind, count in summary["by_type"].items():
            print(f"  {count:>4}  {kind}")
    return 1 if violations else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="globalaccel", description="Residency-constrained latency routing for a global device cloud.")
    sub = parser.add_subparsers(dest="command", required=True)
    plan = sub.add_parser("plan", help="compute the routing table for a stack and summarise it")
    _add_stack_args(plan)
    plan.add_argument("--format", choices=("text", "json"), default="text")
    plan.set_defaults(func=cmd_plan)

    dns = sub.add_parser("dns", help="DNS backends: sync records, serve locally").add_subparsers(dest="dns_command", required=True)
    dsync = dns.add_parser("sync", help="compile the routing table into records and push the minimal changes")
    _add_stack_args(dsync)
    dsync.add_argument("--backend", choices=("route53", "powerdns"), default="route53")
    dsync.add_argument("--endpoint-url", help="API endpoint (e.g. a moto server); default: the real service")
    dsync.add_argument("--zone-id", help="hosted zone id; default: look the stack's zone up by name")
    dsync.add_argument("--create-zone", action="store_true", help="create the hosted zone when it does not exist")
    dsync.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    dsync.add_argument("--format", choices=("text", "json"), default="text")
    dsync.set_defaults(func=cmd_dns_sync)
    dserve = dns.add_parser("serve", help="run the embedded authoritative DNS server for the stack's zone")
    _add_stack_args(dserve)
    dserve.add_argument("--host", default="127.0.0.1", help="listen address (default: loopback only)")
    dserve.add_argument("--port", type=int, default=5353)
    dserve.add_argument("--local-country", help="country for clients on loopback/private addresses (default: none, so no answer)")
    dserve.add_argument("--duration", type=float, help="stop after this many seconds (default: until Ctrl-C)")
    dserve.add_argument("--no-cache", action="store_true", help="answer every query from scratch (diagnostics, benchmarks)")
    dserve.set_defaults(func=cmd_dns_serve)

    up = sub.add_parser("up", help="the main job: probe, route, serve DNS and metrics (--local: emulated world on loopback)")
    _add_stack_args(up)
    up.add_argument("--local", action="store_true", help="emulate every edge and center on loopback and serve DNS locally")
    up.add_argument("--duration", type=float, help="stop after this many seconds (default: until Ctrl-C)")
    up.add_argument("--interval", type=float, default=5.0, help="seconds per probe cycle (every path once)")
    up.add_argument("--once", action="store_true", help="one probe cycle and one routing cycle, then exit")
    up.add_argument("--dry-run", action="store_true", help="compute and log, but do not publish to DNS")
    up.add_argument("--dns-host", default="127.0.0.1")
    up.add_argument("--dns-port", type=int, default=5353)
    up.add_argument("--metrics-port", type=int, default=9464)
    up.add_argument("--state-dir", type=Path, help="default: state/<stack>")
    up.add_argument("--scenario", type=Path, help="YAML file of timed faults for the emulated world")
    up.add_argument("--world-port", type=int, default=18080)
    up.add_argument("--control-port", type=int, default=18079)
    real = up.add_argument_group("without --local: this process probes from one center; the lease holder publishes")
    real.add_argument("--vantage", help="the center this prober runs in")
    real.add_argument("--source-address", help="local address to probe from (default: any)")
    real.add_argument("--peer", action="append", metavar="CENTER=URL", help="another center's prober results endpoint (repeat)")
    real.add_argument("--measurements-host", default="127.0.0.1", help="address to serve this prober's results on")
    real.add_argument("--measurements-port", type=int, help="port to serve this prober's results on (for peers)")
    real.add_argument("--backend", choices=("embedded", "route53", "powerdns"), default="embedded")
    real.add_argument("--endpoint-url", help="DNS API endpoint (Route 53 / moto, or the PowerDNS API)")
    real.add_argument("--create-zone", action="store_true")
    real.add_argument("--zone-id", help="hosted zone id (skips looking the zone up by name)")
    real.add_argument("--lease", choices=("file", "kubernetes"), default="file", help="leader election (kubernetes: in-cluster Lease)")
    real.add_argument("--lease-namespace", default="globalaccel")
    real.add_argument("--lease-name", default="globalaccel-loop")
    real.add_argument("--identity", help="lease holder identity (default: host name)")
    up.set_defaults(func=cmd_up)

    audit = sub.add_parser("audit", help="prove from live state where every country's traffic and data go (exit 0 / 1 / 2)")
    _add_stack_args(audit)
    audit.add_argument("--source", choices=("plan", "local", "route53", "powerdns"), default="plan")
    audit.add_argument("--endpoint-url", help="Route 53 endpoint (AWS or moto) or PowerDNS API")
    audit.add_argument("--dns", default="127.0.0.1:5353", help="embedded server to query with ECS (--source local)")
    audit.add_argument("--state-dir", type=Path, help="the loop's state folder: decision log and the live table")
    audit.add_argument("--what-if", action="store_true", help="every single and double center failure, and strict countries' edges down")
    audit.add_argument("--s3", action="store_true", help="check the data-store buckets through boto3")
    audit.add_argument("--s3-endpoint-url", help="S3 endpoint (AWS or moto); implies --s3")
    audit.add_argument("--manifests", type=Path, help="rendered Kubernetes manifests to check")
    audit.add_argument("--format", choices=("json", "md", "html"), default="md")
    audit.add_argument("--out", type=Path, help="also write audit.json, audit.md, audit.html, countries.csv and map.svg here")
    audit.set_defaults(func=cmd_audit)

    preview = sub.add_parser("preview", help="run the Pulumi program under the SDK's mocks: what `pulumi up` would create")
    _add_stack_args(preview)
    preview.add_argument("--format", choices=("text", "json"), default="text")
    preview.add_argument("--out", type=Path, help="write resources.json and the Kubernetes manifests (manifests/*.yaml) here")
    preview.set_defaults(func=cmd_preview)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"globalaccel: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # report operational failures plainly; the traceback helps nobody at 3 a.m.
        from globalaccel.dns.commands import DnsCommandError
        from globalaccel.dns.powerdns import LuaValidationError, PowerDnsError
        from globalaccel.dns.route53 import ZoneOwnedByAnother
        from globalaccel.dns.route53_validate import Route53ValidationError

        if isinstance(exc, DnsCommandError | ZoneOwnedByAnother | Route53ValidationError | PowerDnsError | LuaValidationError):
            print(f"globalaccel: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
