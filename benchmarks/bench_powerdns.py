"""PowerDNS answering prod: queries/s with dnsperf, per country, the layout `globalaccel dns sync` publishes.

    .venv/bin/python benchmarks/bench_powerdns.py [--seconds 8]

A real PowerDNS (Debian's, tests/services.py launcher: gsqlite3, geoip, LUA records, caches off) on
loopback holds prod's table as the PowerDNS backend publishes it. Its health endpoints are closed
loopback ports, so PowerDNS sees every center down and each country answers its chosen path through
the chain code (the ifurlup branch included). dnsperf sends one query name with a fixed ECS option per
country (16 outstanding, 4 clients). Reported: the largest record, and queries/s and losses per country.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from globalaccel.answers import Answers  # noqa: E402
from globalaccel.dns.backend import OwnedZone, publish  # noqa: E402
from globalaccel.dns.powerdns import PowerDnsBackend, layout_for  # noqa: E402
from globalaccel.routing.summary import route_table  # noqa: E402
from globalaccel.topology import load_stack  # noqa: E402
from tests.services import free_port, powerdns_server  # noqa: E402

# /24s (what resolvers send) that Debian's GeoIP data places in these countries
NETWORKS = {"DE": "85.214.0.0/24", "US": "8.8.8.0/24", "IN": "103.21.124.0/24"}


def ecs_option(network: str) -> str:
    """dnsperf's -E argument: EDNS option 8 (client subnet), IPv4, source prefix, scope 0, address bytes."""
    address, prefix = network.split("/")
    length = int(prefix)
    raw = bytes(int(x) for x in address.split("."))[: (length + 7) // 8]
    return "8:" + (bytes([0, 1, length, 0]) + raw).hex()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=8)
    args = parser.parse_args()
    prod = load_stack("prod", ROOT / "stacks")
    answers = Answers.from_table(route_table(prod), prod)
    with tempfile.TemporaryDirectory() as tmp, powerdns_server(Path(tmp)) as (port, api, key):
        closed = free_port()
        backend = PowerDnsBackend(api, key, layout_for(prod), prod,
                                  health={c.id: f"http://127.0.99.{j + 1}:{closed}" for j, c in enumerate(prod.centers)})
        backend.ensure_zone()
        publish(OwnedZone(backend), answers)
        records = backend.records()
        print(f"prod on PowerDNS: {len(records)} records, the largest {max(len(v) for r in records for v in r.values):,} bytes")
        queries = Path(tmp) / "queries.txt"
        queries.write_text(f"{prod.service_name} A\n")
        for code, network in NETWORKS.items():
            out = subprocess.run(["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(queries), "-l", str(args.seconds), "-c", "4",
                                  "-q", "16", "-t", "5", "-E", ecs_option(network)], capture_output=True, text=True, check=True).stdout
            qps = re.search(r"Queries per second:\s+([\d.]+)", out)
            lost = re.search(r"Queries lost:\s+(\d+)", out)
            print(f"  {code} ({network}): {float(qps[1]) if qps else float('nan'):,.0f} queries/s, lost {lost[1] if lost else '?'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
