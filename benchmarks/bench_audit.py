"""Full prod compliance audit with what-if, timed. Goal: under 30 s on this machine.

    .venv/bin/python benchmarks/bench_audit.py

Runs the audit from `plan` and from a real moto server holding the synced prod zone (`route53`),
each with the what-if scenarios (4 single + 6 double center failures + all edges down for every
strict country that has edges), every country resolved in each.
"""

from __future__ import annotations

import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from globalaccel.answers import Answers  # noqa: E402
from globalaccel.audit.run import AuditOptions, run_audit  # noqa: E402
from globalaccel.dns.backend import sync  # noqa: E402
from globalaccel.dns.budget import ApiBudget  # noqa: E402
from globalaccel.dns.health_checks import ensure_center_checks  # noqa: E402
from globalaccel.dns.route53 import Route53Backend  # noqa: E402
from globalaccel.dns.route53_compile import compile_route53, layout_for  # noqa: E402
from globalaccel.routing.summary import route_table  # noqa: E402
from globalaccel.settings import BackendSettings  # noqa: E402
from globalaccel.topology import load_stack  # noqa: E402
from tests.services import moto_server, route53_client  # noqa: E402


def main() -> None:
    import os

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    prod = load_stack("prod", ROOT / "stacks")
    start = time.perf_counter()
    report = run_audit(prod, AuditOptions(source="plan", what_if=True))
    plan_s = time.perf_counter() - start
    resolutions = report.countries * (1 + len(report.scenarios))
    print(f"plan:    {plan_s:.1f} s, {len(report.scenarios)} scenarios x {report.countries} countries "
          f"({resolutions} resolutions), {len(report.violations)} violations (goal < 30 s)")
    with moto_server() as url:
        client = route53_client(url)
        zone = client.create_hosted_zone(Name=prod.zone, CallerReference=str(uuid.uuid4()))["HostedZone"]["Id"]
        table = route_table(prod)
        fast = ApiBudget.route53(1000, 100_000, 100_000)  # moto has no limits; the audit is what is timed
        checks = ensure_center_checks(client, prod.stack, prod.centers, 443)
        backend = Route53Backend(client, zone, layout_for(prod), budget=fast, health_checks=checks)
        sync(backend, compile_route53(prod, Answers.from_table(table, prod)))
        settings = BackendSettings(kind="route53", endpoint_url=url, health_checks=tuple(f"{c}={i}" for c, i in checks.items()))
        start = time.perf_counter()
        report = run_audit(prod, AuditOptions(source="route53", backend=settings, what_if=True))
        r53_s = time.perf_counter() - start
    print(f"route53: {r53_s:.1f} s (moto over HTTP, whole zone listed), {len(report.scenarios)} scenarios, "
          f"{len(report.violations)} violations (goal < 30 s)")


if __name__ == "__main__":
    main()
