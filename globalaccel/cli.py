"""The `globalaccel` command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from globalaccel.errors import GlobalaccelError, UsageError
from globalaccel.settings import BackendSettings, LoopSettings, add_arguments, center_pairs, with_overrides
from globalaccel.topology import load_stack

DEFAULT_STACKS = Path("stacks")
LOOP_DEFAULTS = LoopSettings()  # the one place defaults are declared: the settings' fields


def _add_stack_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stack", required=True, help="stack name: reads stacks/Pulumi.<stack>.yaml")
    parser.add_argument("--stacks-dir", type=Path, default=DEFAULT_STACKS, help="folder holding the stack files (default: stacks)")


def backend_for(stack_backend: BackendSettings, args: argparse.Namespace, default_kind: str) -> BackendSettings:
    """The backend a command talks to: `--backend` (or the command's default kind); the stack's
    `loop.backend` block applies only when it names that same kind (its endpoint is that backend's);
    flags override either."""
    kind = getattr(args, "kind", None) or default_kind
    base = stack_backend if stack_backend.kind == kind else BackendSettings(kind=kind)
    return with_overrides(base, args)


def cmd_plan(args: argparse.Namespace) -> int:
    from globalaccel.routing.summary import compute_table, render_text

    topology = load_stack(args.stack, args.stacks_dir)
    _, summary = compute_table(topology)
    if args.format == "json":
        print(json.dumps(summary, indent=2))
    else:
        print(render_text(summary))
    return 1 if summary["residency_violations"] else 0


def cmd_dns_sync(args: argparse.Namespace) -> int:
    from globalaccel.dns.commands import dns_sync, render_sync

    topology = load_stack(args.stack, args.stacks_dir)
    settings = backend_for(topology.loop.backend, args, default_kind="route53")
    if settings.kind == "embedded":
        raise UsageError("dns sync takes --backend route53 or powerdns; the embedded server is `dns serve`")
    result = dns_sync(topology, settings, args.dry_run)
    print(json.dumps(result, indent=2) if args.format == "json" else render_sync(result))
    return 0 if result["converged"] or args.dry_run else 1


def cmd_dns_serve(args: argparse.Namespace) -> int:
    from globalaccel.dns.serve import serve_stack

    topology = load_stack(args.stack, args.stacks_dir)
    if args.zone_file is not None or args.center is not None:
        from globalaccel.dns.serve import serve_center

        if args.zone_file is None or args.center is None:
            raise UsageError("a center's server takes both --center and --zone-file")
        targets, source = None, None
        if args.emulated_port is not None:  # the emulated world: center j listens on its loopback address; probe from ours
            from globalaccel.emulated.world import center_address

            if args.center in topology.center_by_id:
                targets = {c.id: (center_address(j), args.emulated_port) for j, c in enumerate(topology.centers)}
                source = center_address(topology.center_ids.index(args.center))
        return serve_center(topology, args.center, args.zone_file, args.host, args.port, args.local_country, args.duration,
                            center_pairs(tuple(args.nameserver or ()), "--nameserver", "CENTER=ADDRESS"), targets, source)
    return serve_stack(topology, args.host, args.port, args.local_country, args.duration, cache=not args.no_cache)


def cmd_up(args: argparse.Namespace) -> int:
    from globalaccel.app.up import up_stack

    topology = load_stack(args.stack, args.stacks_dir)
    return up_stack(topology, with_overrides(topology.loop, args), args.stacks_dir)


def cmd_audit(args: argparse.Namespace) -> int:
    from globalaccel.audit.report import to_html, to_markdown, write_all
    from globalaccel.audit.run import AuditOptions, run_audit

    if not 0.0 <= args.min_coverage <= 1.0:
        raise UsageError(f"--min-coverage must be a share between 0 and 1; got {args.min_coverage}")
    topology = load_stack(args.stack, args.stacks_dir)
    live = None
    if args.source in ("route53", "powerdns"):  # the live zone, opened as the loop opens it: the stack's backend block + flags
        args.kind = args.source
        live = backend_for(topology.loop.backend, args, default_kind=args.source)
    options = AuditOptions(source=args.source, backend=live, dns=args.dns, state_dir=args.state_dir,
                           what_if=args.what_if, s3_endpoint_url=args.s3_endpoint_url, check_s3=args.s3, manifests=args.manifests,
                           min_coverage=args.min_coverage, log_anchor=_log_anchor(args.log_anchor))
    report = run_audit(topology, options)
    if args.format == "json":
        print(json.dumps(report.to_json(), indent=2))
    elif args.format == "html":
        print(to_html(report, topology))
    else:
        print(to_markdown(report))
    if args.out is not None:
        for path in write_all(report, topology, args.out):
            print(f"wrote {path}", file=sys.stderr)
    return {"COMPLIANT": 0, "VIOLATIONS FOUND": 1}.get(report.verdict, 3)  # 3: NOT VERIFIED (coverage too low)


def _log_anchor(path: Path | None) -> dict[str, object] | None:
    """The decision log head an earlier audit recorded: its audit.json, or {"length": N, "hash": H}."""
    if path is None:
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        head = data.get("decision_log", {}).get("head") if "decision_log" in data else data
        return {"length": int(head["length"]), "hash": str(head["hash"])}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UsageError(f"--log-anchor {path}: not an audit.json with a decision-log head, nor {{length, hash}} ({exc})") from exc


def cmd_rules_diff(args: argparse.Namespace) -> int:
    from globalaccel.rules_diff import diff_rules, read_rules, render_diff

    topology = load_stack(args.stack, args.stacks_dir)
    old, old_label = read_rules(args.old, topology)
    new, new_label = read_rules(args.new, topology) if args.new else (topology.residency, topology.residency.source_file)
    diff = diff_rules(topology, old, new, (old_label, new_label))
    print(json.dumps(diff, indent=2) if args.format == "json" else render_diff(diff))
    return 0


def cmd_preview(args: argparse.Namespace) -> int:
    from globalaccel.iac.preview import run_program, summarise, write_manifests

    project = Path(__file__).resolve().parent.parent
    from globalaccel.iac.deployable import check_deployable

    topology = load_stack(args.stack, args.stacks_dir)  # bad config fails here, before any resource
    check_deployable(topology, args.stacks_dir)  # as the program does: placeholders named before any resource
    resources = run_program(args.stack, project, args.stacks_dir)
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
    add_arguments(dsync, BackendSettings)
    dsync.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    dsync.add_argument("--format", choices=("text", "json"), default="text")
    dsync.set_defaults(func=cmd_dns_sync)
    dserve = dns.add_parser("serve", help="run the embedded authoritative DNS server for the stack's zone")
    _add_stack_args(dserve)
    dserve.add_argument("--host", default="127.0.0.1", help="listen address (default: loopback only)")
    dserve.add_argument("--port", type=int, default=LOOP_DEFAULTS.dns_port)
    dserve.add_argument("--local-country", help="country for clients on loopback/private addresses (default: none, so no answer)")
    dserve.add_argument("--duration", type=float, help="stop after this many seconds (default: until Ctrl-C)")
    dserve.add_argument("--no-cache", action="store_true", help="answer every query from scratch (diagnostics, benchmarks)")
    dserve.add_argument("--center", help="serve as this center's authoritative server, failing over by its own health view")
    dserve.add_argument("--zone-file", type=Path, help="the zone the controller publishes (state/<stack>/published-zone.json)")
    dserve.add_argument("--emulated-port", type=int, help="probe the emulated world's centers on this port (local runs)")
    dserve.add_argument("--nameserver", action="append", metavar="CENTER=ADDRESS",
                        help="a center's authoritative server, named ns-<center> in the zone's NS set (repeat for every center)")
    dserve.set_defaults(func=cmd_dns_serve)

    up = sub.add_parser("up", help="the main job: probe, route, serve DNS and metrics (--local: emulated world on loopback)")
    _add_stack_args(up)
    add_arguments(up)  # every loop setting, generated from globalaccel.settings.LoopSettings
    up.set_defaults(func=cmd_up)

    audit = sub.add_parser("audit", help="prove from live state where every country's traffic and data go (exit 0 / 1 / 2)")
    _add_stack_args(audit)
    audit.add_argument("--source", choices=("plan", "local", "route53", "powerdns"), default="plan")
    audit.add_argument("--endpoint-url", dest="endpoint_url", default=argparse.SUPPRESS,
                       help="Route 53 endpoint (AWS or moto) or PowerDNS API (default: the stack's loop.backend)")
    audit.add_argument("--zone-id", dest="zone_id", default=argparse.SUPPRESS, help="hosted zone id, when several share the zone's name")
    audit.add_argument("--api-key-env", dest="api_key_env", default=argparse.SUPPRESS,
                       help="environment variable holding the PowerDNS API key (default: the stack's, else PDNS_API_KEY)")
    audit.add_argument("--dns", default=f"{LOOP_DEFAULTS.dns_host}:{LOOP_DEFAULTS.dns_port}",
                       help="DNS server to query with ECS (--source local, powerdns)")
    audit.add_argument("--state-dir", type=Path, help="the loop's state folder: decision log and the live table")
    audit.add_argument("--what-if", action="store_true", help="every single and double center failure, and strict countries' edges down")
    audit.add_argument("--s3", action="store_true", help="check the data-store buckets through boto3")
    audit.add_argument("--s3-endpoint-url", help="S3 endpoint (AWS or moto); implies --s3")
    audit.add_argument("--manifests", type=Path, help="a folder of Kubernetes manifests to check, or `program`: the ones the Pulumi "
                       "program renders for the stack")
    audit.add_argument("--log-anchor", type=Path, help="an earlier audit.json (or {length, hash}): the log must still extend "
                       "the head it recorded, so truncation and re-chaining are found")
    audit.add_argument("--min-coverage", type=float, default=0.99,
                       help="share of demand that must be verified to say COMPLIANT (every strict country always must); "
                            "exit 3 (NOT VERIFIED) below it")
    audit.add_argument("--format", choices=("json", "md", "html"), default="md")
    audit.add_argument("--out", type=Path, help="also write audit.json, audit.md, audit.html, countries.csv and map.svg here")
    audit.set_defaults(func=cmd_audit)

    rules = sub.add_parser("rules", help="residency rule sets").add_subparsers(dest="rules_command", required=True)
    rdiff = rules.add_parser("diff", help="countries whose allowed centers or edges change, and the demand that moves")
    _add_stack_args(rdiff)
    rdiff.add_argument("old", help="a residency file, or REV: (the stack's file at git revision REV), or REV:PATH")
    rdiff.add_argument("new", nargs="?", help="the same forms (default: the stack's current file)")
    rdiff.add_argument("--format", choices=("text", "json"), default="text")
    rdiff.set_defaults(func=cmd_rules_diff)

    preview = sub.add_parser("preview", help="run the Pulumi program under the SDK's mocks: what `pulumi up` would create")
    _add_stack_args(preview)
    preview.add_argument("--format", choices=("text", "json"), default="text")
    preview.add_argument("--out", type=Path, help="write resources.json and the Kubernetes manifests (manifests/*.yaml) here")
    preview.set_defaults(func=cmd_preview)
    return parser


def operational(exc: Exception) -> str | None:
    """A one-line reason for failures of the world around us (cloud APIs, credentials, ports, clusters),
    which are the operator's to fix; None for anything else, which is a bug."""
    import errno

    from botocore.exceptions import BotoCoreError, ClientError

    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"AWS refused {exc.operation_name}: {error.get('Code', '?')}: {error.get('Message', '')}"
    if isinstance(exc, BotoCoreError):
        return f"AWS: {exc}"
    if isinstance(exc, OSError) and exc.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL):
        return f"cannot listen: {exc.strerror} ({exc})"
    if type(exc).__name__ == "ConfigException" and type(exc).__module__.startswith("kubernetes"):
        return f"Kubernetes: {exc} (--lease kubernetes runs inside a cluster)"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except GlobalaccelError as exc:  # every operator-facing error carries its exit status; mapped here only
        print(exc.render(), file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:
        # `globalaccel plan | head`: the reader left. Point stdout at /dev/null so the interpreter's
        # final flush does not raise again, and end quietly as other Unix tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a tool killed by the signal
    except Exception as exc:
        reason = operational(exc)
        if reason is None:
            raise  # a bug: keep the traceback
        print(f"globalaccel: {reason}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
