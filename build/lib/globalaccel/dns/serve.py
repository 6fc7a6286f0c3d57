"""`globalaccel dns serve`: the embedded server for a stack's current plan, until Ctrl-C or SIGTERM."""

from __future__ import annotations

import asyncio

from globalaccel.answers import Answers
from globalaccel.dns.backend import OwnedZone, publish
from globalaccel.dns.embedded import DnsResponder, EmbeddedDnsServer
from globalaccel.dns.embedded_backend import EmbeddedBackend, empty_snapshot
from globalaccel.routing.summary import compute_table
from globalaccel.stopping import stop_event, wait_until_stopped
from globalaccel.topology import Topology


async def _serve(topology: Topology, host: str, port: int, local_country: str | None, duration: float | None, cache: bool) -> None:
    table, _ = compute_table(topology)
    responder = DnsResponder(empty_snapshot(topology, host), local_country=local_country)
    responder.cache_enabled = cache
    publish(OwnedZone(EmbeddedBackend(topology, responder)), Answers.from_table(table, topology))  # the loop's publish path
    server = EmbeddedDnsServer(responder, host, port)
    await server.start()
    print(f"serving {topology.zone} on {host}:{server.port} (UDP and TCP), table {table.content_hash[:16]}", flush=True)
    print(f"  try: dig @{host} -p {server.port} {topology.service_name} A +subnet=85.214.0.0/16   (a German network)", flush=True)
    stop = stop_event()
    try:
        await wait_until_stopped(stop, duration)
    finally:
        await server.stop()
        stats = responder.stats
        print(f"stopped: {stats.queries} queries, {stats.answered} answered, {stats.nodata} NODATA, "
              f"{stats.nxdomain} NXDOMAIN, {stats.refused} REFUSED, {stats.cache_hits} from cache", flush=True)


def serve_stack(topology: Topology, host: str, port: int, local_country: str | None, duration: float | None, cache: bool = True) -> int:
    asyncio.run(_serve(topology, host, port, local_country, duration, cache))
    return 0
