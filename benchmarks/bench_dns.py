"""DNS: Route 53 API budget for syncs, and authoritative queries/s, in one run.

    .venv/bin/python benchmarks/bench_dns.py [--seconds 10]

1. Against a real moto server over HTTP: API requests and change tokens for a full prod sync and for a
   one-edge change (an edge behind German users goes down), for globalaccel's batched reconciler and
   for a naive program that sends one ChangeResourceRecordSets call per record (what one
   `aws.route53.Record` per record does). Goals: full sync within ceil(values/500) requests, a
   one-edge change in 1 request.
2. dnsperf (Debian) against the embedded server (`globalaccel dns serve`, a separate process) and
   PowerDNS 4.7 with the same table, same machine, same query (the service name, ECS for a German
   /16), each with its caches on and off. Goal: embedded at least 10,000 qps.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from globalaccel.answers import Answers, Served  # noqa: E402
from globalaccel.dns.backend import claim_record, publish, sync  # noqa: E402
from globalaccel.dns.budget import ApiBudget  # noqa: E402
from globalaccel.dns.health_checks import ensure_center_checks  # noqa: E402
from globalaccel.dns.plan import plan  # noqa: E402
from globalaccel.dns.powerdns import PowerDnsBackend  # noqa: E402
from globalaccel.dns.powerdns import layout_for as pdns_layout  # noqa: E402
from globalaccel.dns.route53 import Route53Backend, order_changes, to_route53  # noqa: E402
from globalaccel.dns.route53_compile import compile_route53, layout_for  # noqa: E402
from globalaccel.routing import Health  # noqa: E402
from globalaccel.routing.summary import route_table  # noqa: E402
from globalaccel.topology import load_stack  # noqa: E402
from tests.services import free_port, moto_server, powerdns_server, route53_client, wait_for_port  # noqa: E402

ECS_DE = "8:0001100055d6"  # EDNS option 8 (client subnet): IPv4, /16, scope 0, 85.214.0.0 (Germany)


def api_budget() -> dict[str, Any]:
    prod = load_stack("prod", ROOT / "stacks")
    table = route_table(prod)
    layout = layout_for(prod)
    answers = Answers.from_table(table, prod)
    records = [claim_record(layout), *compile_route53(prod, answers)]
    germany = answers.country("DE")
    assert isinstance(germany, Served)
    victim = germany.answers[0].edge_id
    after = route_table(prod, Health(frozenset(e.id for e in prod.edges) - {victim}, frozenset(prod.center_ids)))
    records_after = [claim_record(layout), *compile_route53(prod, Answers.from_table(after, prod))]
    out: dict[str, Any] = {"records": len(records), "values": sum(r.value_count for r in records)}
    with moto_server() as url:
        client = route53_client(url)
        fast_budget = ApiBudget.route53(requests_per_s=1000, tokens_per_s=100_000)  # moto has no limits; counts are what matter

        zone = client.create_hosted_zone(Name=prod.zone, CallerReference=str(uuid.uuid4()))["HostedZone"]["Id"]
        ours = Route53Backend(client, zone, layout, budget=fast_budget,
                              health_checks=ensure_center_checks(client, prod.stack, prod.centers, 443))
        start = time.perf_counter()
        full = sync(ours, records)
        elapsed = time.perf_counter() - start
        out["ours_full"] = {"requests": full.stats.requests, "change_tokens": full.stats.change_tokens, "seconds": elapsed}
        one = sync(ours, records_after)
        out["ours_one_edge"] = {"requests": one.stats.requests, "change_tokens": one.stats.change_tokens, "changes": one.planned}

        naive_zone = client.create_hosted_zone(Name=prod.zone, CallerReference=str(uuid.uuid4()))["HostedZone"]["Id"]
        start = time.perf_counter()
        requests = tokens = 0
        for change in order_changes(plan([], records, layout.owns), layout):
            client.change_resource_record_sets(HostedZoneId=naive_zone, ChangeBatch={"Changes": [
                {"Action": "CREATE", "ResourceRecordSet": to_route53(change.record, naive_zone.split("/")[-1])}]})
            requests += 1
            tokens += 1
        out["naive_full"] = {"requests": requests, "change_tokens": tokens, "seconds": time.perf_counter() - start}
        changes = order_changes(plan(records, records_after, layout.owns), layout)
        out["naive_one_edge"] = {"requests": len(changes), "change_tokens": sum(c.tokens for c in changes)}
    out["goal_full_requests"] = math.ceil(out["values"] / 500)
    # At Route 53's ~10 requests/s and 100 change tokens/s (burst 1,500), the time each takes at least:
    for key in ("ours_full", "naive_full"):
        r, t = out[key]["requests"], out[key]["change_tokens"]
        out[key]["min_seconds_at_aws_limits"] = max(r / 10, max(0.0, t - 1500) / 100)
    return out


def dnsperf(port: int, seconds: int) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as fh:
        fh.write("edge.accel.example.net A\n")
    out = subprocess.run(["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", fh.name, "-l", str(seconds), "-c", "4", "-E", ECS_DE],
                         capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    qps = float(re.search(r"Queries per second:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lost = float(re.search(r"Queries lost:\s+\d+ \(([\d.]+)%\)", out).group(1))  # type: ignore[union-attr]
    latency = float(re.search(r"Average Latency \(s\):\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    return {"qps": qps, "lost_pct": lost, "avg_latency_ms": latency * 1000}


def query_rates(seconds: int) -> dict[str, Any]:
    prod = load_stack("prod", ROOT / "stacks")
    table = route_table(prod)
    out: dict[str, Any] = {}
    for cache in (True, False):
        port = free_port()
        cmd = [str(ROOT / ".venv/bin/globalaccel"), "dns", "serve", "--stack", "prod", "--port", str(port), "--duration", str(seconds + 30)]
        proc = subprocess.Popen([*cmd, *([] if cache else ["--no-cache"])], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_port(port)
            out[f"embedded_cache_{'on' if cache else 'off'}"] = dnsperf(port, seconds)
        finally:
            proc.terminate()
            proc.wait(10)
        with tempfile.TemporaryDirectory() as tmp, powerdns_server(Path(tmp), caches=cache) as (pdns_port, api, key):
            provider = PowerDnsBackend(api, key, pdns_layout(prod), prod)
            provider.ensure_zone()
            publish(provider, Answers.from_table(table, prod))
            out[f"powerdns_cache_{'on' if cache else 'off'}"] = dnsperf(pdns_port, seconds)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    budget = api_budget()
    rates = query_rates(args.seconds)
    if args.json:
        print(json.dumps({"api": budget, "qps": rates}, indent=2))
        return
    print(f"Route 53 API, prod: {budget['records']} records, {budget['values']} values "
          f"(goal: full sync <= {budget['goal_full_requests']} requests)")
    for name in ("ours_full", "naive_full"):
        b = budget[name]
        print(f"  {name:<11} {b['requests']:>5} requests {b['change_tokens']:>5} change tokens  "
              f"(>= {b['min_seconds_at_aws_limits']:.0f} s at AWS limits; {b['seconds']:.1f} s against moto)")
    for name in ("ours_one_edge", "naive_one_edge"):
        b = budget[name]
        print(f"  {name:<15} {b['requests']:>3} requests {b['change_tokens']:>3} change tokens")
    print(f"  ratio: full sync {budget['naive_full']['requests'] / budget['ours_full']['requests']:.0f}x fewer requests; "
          f"one-edge change {budget['naive_one_edge']['requests'] / max(1, budget['ours_one_edge']['requests']):.0f}x")
    print(f"dnsperf, {args.seconds} s each, 4 clients, service name with ECS 85.214.0.0/16:")
    for name, r in rates.items():
        print(f"  {name:<22} {r['qps']:>9.0f} qps  lost {r['lost_pct']:.2f}%  avg latency {r['avg_latency_ms']:.2f} ms")


if __name__ == "__main__":
    main()
