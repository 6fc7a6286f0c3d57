"""`globalaccel dns serve`: the embedded server for a stack's current plan, until Ctrl-C or SIGTERM."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

import dns.name

from globalaccel.answers import Answers
from globalaccel.dns.backend import OwnedZone, publish
from globalaccel.dns.center_watch import CenterWatch
from globalaccel.dns.embedded import ZoneSnapshot
from globalaccel.dns.embedded_backend import EmbeddedBackend, responder_for, snapshot_from_json
from globalaccel.dns.embedded_server import EmbeddedDnsServer, settle_heap
from globalaccel.errors import UsageError
from globalaccel.locate import example_network
from globalaccel.routing.summary import route_table
from globalaccel.stopping import stop_event, wait_until_stopped
from globalaccel.topology import Topology


async def _serve(topology: Topology, host: str, port: int, local_country: str | None, duration: float | None, cache: bool) -> None:
    table = route_table(topology)
    responder = responder_for(topology, host, local_country)
    responder.cache_enabled = cache
    publish(OwnedZone(EmbeddedBackend(topology, responder)), Answers.from_table(table, topology))  # the loop's publish path
    server = EmbeddedDnsServer(responder, host, port)
    await server.start()
    settle_heap()
    print(f"serving {topology.zone} on {host}:{server.port} (UDP and TCP), table {table.content_hash[:16]}", flush=True)
    print(f"  try: dig @{host} -p {server.port} {topology.service_name} A +subnet={example_network(responder.locator)}", flush=True)
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


async def _serve_center(topology: Topology, center: str, zone_file: Path, host: str, port: int,
                        targets: dict[str, tuple[str, int]], source: str | None,
                        local_country: str | None, duration: float | None, nameservers: dict[str, str], tls: bool) -> None:
    """An authoritative server in one center: the zone the controller last published (re-read when the file
    changes, kept when it cannot be read), answered through this server's own view of center health."""
    responder = responder_for(topology, host, local_country)
    origin = dns.name.from_text(topology.zone)
    # The NS set spans the centers: every server names all of them, so a resolver that loses one asks another.
    ns_set = tuple((dns.name.from_text(f"ns-{c}", origin), address) for c, address in sorted(nameservers.items()))
    watch = CenterWatch.for_responder(responder, targets, source=source, tls=tls)
    server = EmbeddedDnsServer(responder, host, port)
    await server.start()
    settle_heap()
    print(f"serving {topology.zone} from {zone_file} in {center} on {host}:{server.port}", flush=True)
    watch.start()
    stop = stop_event()
    seen: tuple[int, int, int] | None = None

    async def follow() -> None:
        nonlocal seen
        while True:
            try:
                stat = zone_file.stat()
                if (stat.st_mtime_ns, stat.st_size, stat.st_ino) != seen:
                    snap = lawful_only(topology, snapshot_from_json(json.loads(zone_file.read_text(encoding="utf-8"))))
                    responder.swap(dataclasses.replace(snap, nameservers=ns_set) if ns_set else snap)
                    seen = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
            except Exception as exc:  # a file being replaced, or a bad one: keep the last good zone, keep watching
                print(f"zone file {zone_file}: {type(exc).__name__}: {exc}; still serving serial {responder.snapshot.serial}", flush=True)
            await asyncio.sleep(0.2)

    follower = asyncio.create_task(follow())
    try:
        await wait_until_stopped(stop, duration)
    finally:
        follower.cancel()
        await watch.stop()
        await server.stop()


def lawful_only(topology: Topology, snap: ZoneSnapshot) -> ZoneSnapshot:
    """The zone as loaded, minus any country whose answers or chain name a center its rule (as this server
    reads the stack) does not allow: such a country gets no answer (fail closed), never the unlawful path."""
    if snap.origin != dns.name.from_text(topology.zone) or snap.service != dns.name.from_text(topology.service_name):
        raise ValueError(f"the zone file is for {snap.origin}, not {topology.zone}")
    residency, paths, cells = topology.residency, topology.path_by_address, topology.cell_by_id
    bad = set()
    for cell, addresses in snap.answers.items():
        if cell not in cells:
            bad.add(cell)  # a cell this server's stack does not have: nobody to judge it for
            continue
        code = cells[cell].country
        chain = snap.paths.get(cell, ())
        every = set(addresses) | {a for _, addrs in chain for a in addrs}
        # Each address names its edge and the center that edge forwards to: the whole path is judged.
        unlawful = [a for a in every
                    if a not in paths or residency.path_violation(code, paths[a][0].country, paths[a][0].role, paths[a][1])]
        if unlawful or any(not residency.allows(code, c) for c, _ in chain):
            bad.add(cell)
    if bad:
        print(f"zone serial {snap.serial}: refusing {', '.join(sorted(bad))}: a path outside the rule", flush=True)
    # The principal map comes from this server's stack, never from the file: a country is answered with a cell of its own.
    return dataclasses.replace(snap, answers={k: v for k, v in snap.answers.items() if k not in bad},
                               paths={k: v for k, v in snap.paths.items() if k not in bad}, principal=dict(topology.principal_cell))


def serve_center(topology: Topology, center: str, zone_file: Path, host: str, port: int, local_country: str | None,
                 duration: float | None, nameservers: dict[str, str] | None = None,
                 targets: dict[str, tuple[str, int]] | None = None, source: str | None = None) -> int:
    """`targets`: each center's health endpoint (default: its address and the stack's probe port); `source`:
    the local address to probe from (this center's)."""
    if center not in topology.center_by_id:
        raise UsageError(f"--center {center!r} is not a center of stack {topology.stack} ({', '.join(topology.center_ids)})")
    # Each center's /healthz where Route 53's checks ask (HTTPS on the probe port, http where the stack probes
    # http); `targets` given (the emulated world) are plain HTTP.
    tls = targets is None and topology.probe.kind != "http"
    targets = targets or {c.id: (c.address, topology.probe.port) for c in topology.centers}
    unknown = sorted(set(nameservers or {}) - set(topology.center_ids))
    if unknown:
        raise UsageError(f"--nameserver names {', '.join(unknown)}, not a center of stack {topology.stack}")
    asyncio.run(_serve_center(topology, center, zone_file, host, port, targets, source, local_country, duration, nameservers or {}, tls))
    return 0
