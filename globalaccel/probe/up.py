"""`globalaccel up`: the main job. With --local: the emulated world, probers for every center, the
control loop, the embedded DNS server and the metrics endpoint, all on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from prometheus_client import start_http_server

from globalaccel.dns.embedded import DnsResponder, EmbeddedDnsServer, ZoneSnapshot
from globalaccel.probe.loop import ControlLoop, CycleReport, Lease
from globalaccel.probe.metrics import LoopMetrics
from globalaccel.probe.peers import PeerPuller, ResultBuffer, serve_results
from globalaccel.probe.prober import ProbePath, Prober
from globalaccel.probe.sinks import EmbeddedSink, PowerDnsSink, Route53Sink, TableSink
from globalaccel.probe.state import FileLease
from globalaccel.probe.world import center_address, edge_address
from globalaccel.stopping import stop_event
from globalaccel.topology import Topology


@dataclass
class UpOptions:
    stacks_dir: Path
    local: bool = True
    duration: float | None = None
    interval: float = 5.0
    once: bool = False
    dry_run: bool = False
    dns_host: str = "127.0.0.1"
    dns_port: int = 5353
    metrics_port: int = 9464
    state_dir: Path | None = None
    scenario: Path | None = None
    world_port: int = 18080
    control_port: int = 18079
    probe_timeout: float = 2.0
    # Without --local: this process is the prober of one center, and maybe the leader.
    vantage: str | None = None
    source_address: str | None = None
    peers: dict[str, str] = field(default_factory=dict)  # center -> base URL of its prober's /measurements
    measurements_host: str = "127.0.0.1"
    measurements_port: int | None = None
    backend: str = "embedded"
    endpoint_url: str | None = None
    create_zone: bool = False
    zone_id: str | None = None
    lease: str = "file"
    lease_namespace: str = "globalaccel"
    lease_name: str = "globalaccel-loop"
    identity: str | None = None


def emulated_paths(topology: Topology, port: int) -> list[ProbePath]:
    """Every center probes every edge and every other center, from its own loopback address."""
    paths: list[ProbePath] = []
    for j, center in enumerate(topology.centers):
        source = center_address(j)
        paths.extend(ProbePath(center.id, source, edge.id, edge_address(i), port) for i, edge in enumerate(topology.edges))
        paths.extend(ProbePath(center.id, source, other.id, center_address(k), port)
                     for k, other in enumerate(topology.centers) if k != j)
    return paths


def real_paths(topology: Topology, vantage: str, source: str | None) -> list[ProbePath]:
    """One center's view: its prober probes every edge and every other center at their catalog addresses."""
    port = topology.probe.port
    paths = [ProbePath(vantage, source, edge.id, edge.address, port) for edge in topology.edges]
    paths += [ProbePath(vantage, source, c.id, c.address, port) for c in topology.centers if c.id != vantage]
    return paths


class UpConfigError(ValueError):
    pass


def check_options(topology: Topology, options: UpOptions) -> None:
    if options.local:
        return
    centers = set(topology.center_ids)
    if options.vantage not in centers:
        raise UpConfigError(f"--vantage must name this prober's center, one of {', '.join(topology.center_ids)}")
    for center in options.peers:
        if center not in centers or center == options.vantage:
            raise UpConfigError(f"--peer {center}=...: must be another center of the stack")
    if options.backend not in ("embedded", "route53", "powerdns"):
        raise UpConfigError("--backend must be embedded, route53 or powerdns")
    if options.backend == "powerdns" and not options.endpoint_url:
        raise UpConfigError("--backend powerdns needs --endpoint-url (and PDNS_API_KEY)")


def make_sink(topology: Topology, options: UpOptions, responder: DnsResponder) -> TableSink:
    if options.local or options.backend == "embedded":
        return EmbeddedSink(topology, responder)
    if options.backend == "route53":
        from globalaccel.dns.commands import find_zone, route53_client
        from globalaccel.dns.route53 import Route53Provider
        from globalaccel.dns.route53_compile import layout_for

        client = route53_client(options.endpoint_url)
        zone = options.zone_id or find_zone(client, topology.zone, options.create_zone)
        return Route53Sink(topology, Route53Provider(client, zone, layout_for(topology)))
    import os

    from globalaccel.dns.powerdns import PowerDnsProvider
    from globalaccel.dns.powerdns import layout_for as pdns_layout

    key = os.environ.get("PDNS_API_KEY")
    if not key:
        raise UpConfigError("--backend powerdns needs PDNS_API_KEY in the environment")
    provider = PowerDnsProvider(str(options.endpoint_url), key, pdns_layout(topology))
    provider.ensure_zone()
    return PowerDnsSink(topology, provider)


def make_lease(options: UpOptions, state_dir: Path) -> Lease:
    if options.lease == "kubernetes":
        import socket

        from globalaccel.probe.lease import KubernetesLease

        return KubernetesLease.in_cluster(options.lease_namespace, options.lease_name, options.identity or socket.gethostname())
    return FileLease(state_dir)


def start_world(topology: Topology, options: UpOptions) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "globalaccel.probe.world", "--stack", topology.stack, "--stacks-dir", str(options.stacks_dir),
           "--port", str(options.world_port), "--control-port", str(options.control_port)]
    if options.scenario:
        cmd += ["--scenario", str(options.scenario)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # the world prints one JSON line when every listener is bound
    if not line or not json.loads(line).get("ready"):
        proc.kill()
        err = proc.stderr.read() if proc.stderr else ""
        raise RuntimeError(f"emulated world failed to start: {err.strip()[-2000:]}")
    return proc


def empty_snapshot(topology: Topology, host: str) -> ZoneSnapshot:
    import dns.name

    origin = dns.name.from_text(topology.zone)
    return ZoneSnapshot(origin, dns.name.from_text(topology.service_name), dns.name.from_text("ns1", origin), host, {})


def status_line(cycle: int, report: CycleReport, probes_per_s: float, total_edges: int, total_centers: int) -> str:
    return (f"cycle {cycle} | {probes_per_s:,.0f} probes/s | edges {report.healthy_edges}/{total_edges} up | "
            f"centers {report.healthy_centers}/{total_centers} | table gen {report.generation} | "
            f"route changes {len(report.changed_cells)} | fail closed {len(report.fail_closed)}"
            + (f" | {report.error}" if report.error else ""))


async def run_up(topology: Topology, options: UpOptions, out: IO[str] = sys.stdout) -> int:
    check_options(topology, options)
    state_dir = options.state_dir or Path("state") / topology.stack
    metrics = LoopMetrics()
    responder = DnsResponder(empty_snapshot(topology, options.dns_host))  # fail closed until the first measured table
    loop = ControlLoop(topology, make_sink(topology, options, responder), state_dir, make_lease(options, state_dir), metrics,
                       dry_run=options.dry_run)
    world = start_world(topology, options) if options.local else None
    serve_dns = options.local or options.backend == "embedded"
    server = EmbeddedDnsServer(responder, options.dns_host, options.dns_port)
    http_server = results_server = None
    peers = [PeerPuller(center, url) for center, url in sorted(options.peers.items())]
    try:
        if serve_dns:
            await server.start()
        http_server, _thread = start_http_server(options.metrics_port, addr="127.0.0.1", registry=metrics.registry)
        metrics_port = http_server.server_port
        sink: Callable[[ProbePath, float | None, float], None] = loop.record
        if options.local:
            paths = emulated_paths(topology, options.world_port)
        else:
            assert options.vantage is not None
            paths = real_paths(topology, options.vantage, options.source_address)
            buffer = ResultBuffer(options.vantage)

            def record_and_share(path: ProbePath, rtt: float | None, now: float) -> None:
                loop.record(path, rtt, now)
                buffer.add(path.target, rtt, now)

            sink = record_and_share

            if options.measurements_port is not None:
                results_server = serve_results(buffer, options.measurements_host, options.measurements_port)
        kind = "http" if options.local else topology.probe.kind
        prober = Prober(paths, sink, interval=options.interval, timeout=min(options.probe_timeout, options.interval), kind=kind)
        where = ("EMULATED world on loopback" if options.local
                 else f"vantage {options.vantage}, {len(peers)} peers, backend {options.backend}")
        print(f"globalaccel up: stack {topology.stack}, {len(topology.centers)} centers, {len(topology.edges)} edges "
              f"({where}, {len(paths)} probe paths every {options.interval:g} s"
              f"{', dry run' if options.dry_run else ''})", file=out, flush=True)
        if serve_dns:
            print(f"  DNS      {options.dns_host}:{server.port}   dig @{options.dns_host} -p {server.port} {topology.service_name} A "
                  f"+subnet=85.214.0.0/16", file=out, flush=True)
        print(f"  metrics  http://127.0.0.1:{metrics_port}/metrics", file=out, flush=True)
        if results_server is not None:
            results_url = f"http://{options.measurements_host}:{results_server.server_port}/measurements"
            print(f"  results  {results_url} (for peers)", file=out, flush=True)
        if options.local:
            fault = json.dumps({"kind": "center_down", "target": "eu-central-1"})
            print(f"  faults   curl -s -XPOST 127.0.0.1:{options.control_port}/faults -d '{fault}'", file=out, flush=True)
        print(f"  state    {state_dir} (decision log: {state_dir / 'decisions.jsonl'})", file=out, flush=True)
        if loop.restored:
            report = loop.cycle()  # serve the persisted view at once: a restart neither flaps nor starts empty
            print(f"  restored state: table gen {report.generation}, {report.healthy_edges} edges up", file=out, flush=True)

        stop = stop_event()
        started = time.monotonic()
        cycle = 0
        tty = out.isatty()
        while not stop.is_set():
            sent_before, t0 = prober.sent, time.monotonic()
            probing = asyncio.create_task(prober.run_cycle())
            waiter = asyncio.create_task(stop.wait())
            await asyncio.wait({probing, waiter}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            if not probing.done():  # SIGTERM mid-probe: stop probing; nothing half-applied exists
                probing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await probing
                break
            for peer in peers:  # the other centers' results: fetched off the event loop, fed on it
                data = await asyncio.to_thread(peer.fetch)
                if data is not None:
                    peer.feed(data, loop.record)
            report = loop.cycle()  # evaluation and apply run to completion even if a signal arrives now
            cycle += 1
            rate = (prober.sent - sent_before) / max(1e-9, time.monotonic() - t0)
            line = status_line(cycle, report, rate, len(topology.edges), len(topology.centers))
            print(("\r" + line.ljust(150)) if tty else line, end="" if tty else "\n", file=out, flush=True)
            if options.once or (options.duration is not None and time.monotonic() - started >= options.duration):
                break
        if tty:
            print(file=out)
        print(f"stopped after {cycle} cycles; {prober.sent} probes, {prober.lost} lost; DNS answered {responder.stats.queries} queries",
              file=out, flush=True)
        return 0
    finally:
        await server.stop()
        if http_server is not None:
            http_server.shutdown()
        if results_server is not None:
            results_server.shutdown()
        if world is not None:
            world.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                world.wait(10)
        loop.lease.release()


def up_stack(topology: Topology, options: UpOptions) -> int:
    return asyncio.run(run_up(topology, options))


def describe(report: CycleReport) -> dict[str, Any]:
    return {"generation": report.generation, "table_hash": report.table_hash, "healthy_edges": report.healthy_edges,
            "healthy_centers": report.healthy_centers, "fail_closed": report.fail_closed, "violations": report.violations}
