"""PowerDNS answering prod: queries/s with dnsperf, per country, the layout `globalaccel dns sync` publishes.

    .venv/bin/python benchmarks/bench_powerdns.py [--seconds 8]

Run twice in one go: PowerDNS's geoip backend reading Debian's country database (every client of a country
gets its principal cell's answer: one LUA hop after the dispatch), then the stack's own city-level network
database (a country of several cells adds the nearest-cell LUA CNAME: two hops), asked from a network of a
non-principal cell of the same countries.

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
from globalaccel.locate import NetworkMap, locator_for  # noqa: E402
from globalaccel.routing.summary import route_table  # noqa: E402
from globalaccel.topology import Topology, load_stack  # noqa: E402
from tests.services import free_port, powerdns_server  # noqa: E402

# /24s (what resolvers send) that Debian's GeoIP data places in these countries
NETWORKS = {"DE": "85.214.0.0/24", "US": "8.8.8.0/24", "IN": "103.21.124.0/24"}


def ecs_option(network: str) -> str:
    """dnsperf's -E argument: EDNS option 8 (client subnet), IPv4, source prefix, scope 0, address bytes."""
    address, prefix = network.split("/")
    length = int(prefix)
    raw = bytes(int(x) for x in address.split("."))[: (length + 7) // 8]
    return "8:" + (bytes([0, 1, length, 0]) + raw).hex()


def cell_networks(prod: Topology) -> dict[str, str]:
    """Per country of NETWORKS: the /24 of a network the stack's database places in a cell that is not the
    country's principal one (the per-cell path)."""
    located = locator_for(prod)
    assert isinstance(located, NetworkMap)
    out: dict[str, str] = {}
    for location, nets in sorted(located.sample_networks(1).items(), key=lambda kv: kv[0].key):
        code = location.countries[0]
        if code in NETWORKS and code not in out and location.cell not in (None, prod.principal_cell[code]) and ":" not in nets[0]:
            out[code] = f"{nets[0].split('/')[0]}/24"
    return out


def run(prod: Topology, answers: Answers, geoip: str, networks: dict[str, str], seconds: int) -> dict[str, float]:
    rates: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp, powerdns_server(Path(tmp), geoip=geoip) as (port, api, key):
        closed = free_port()
        backend = PowerDnsBackend(api, key, layout_for(prod), prod,
                                  health={c.id: f"http://127.0.99.{j + 1}:{closed}" for j, c in enumerate(prod.centers)})
        backend.ensure_zone()
        stats = publish(OwnedZone(backend), answers).stats
        records = backend.records()
        print(f"prod on PowerDNS ({Path(geoip).name}): {len(records)} records in {stats.requests} PATCHes, "
              f"the largest {max(len(v) for r in records for v in r.values):,} bytes")
        queries = Path(tmp) / "queries.txt"
        queries.write_text(f"{prod.service_name} A\n")
        for code, network in networks.items():
            out = subprocess.run(["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(queries), "-l", str(seconds), "-c", "4",
                                  "-q", "16", "-t", "5", "-E", ecs_option(network)], capture_output=True, text=True, check=True).stdout
            qps = re.search(r"Queries per second:\s+([\d.]+)", out)
            lost = re.search(r"Queries lost:\s+(\d+)", out)
            rates[code] = float(qps[1]) if qps else float("nan")
            print(f"  {code} ({network}): {rates[code]:,.0f} queries/s, lost {lost[1] if lost else '?'}")
    return rates


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=8)
    args = parser.parse_args()
    prod = load_stack("prod", ROOT / "stacks")
    answers = Answers.from_table(route_table(prod), prod)
    assert prod.client_networks is not None
    by_country = run(prod, answers, "/usr/share/GeoIP/GeoIP.dat", NETWORKS, args.seconds)
    by_cell = run(prod, answers, str(prod.client_networks), cell_networks(prod), args.seconds)
    for code in NETWORKS:
        if code in by_cell:
            print(f"  {code}: per-cell / per-country queries/s = {by_cell[code] / by_country[code]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
