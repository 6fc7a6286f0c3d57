"""`globalaccel up`: the main job. With --local: the emulated world, probers for every center, the
control loop, the embedded DNS server and the metrics endpoint, all on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from globalaccel.control.http import LoopHttpServer
from globalaccel.control.loop import ControlLoop, CycleReport, Lease
from globalaccel.control.metrics import LoopMetrics
from globalaccel.control.state import FileLease
from globalaccel.dns.embedded_backend import ZONE_FILE, EmbeddedBackend, responder_for
from globalaccel.dns.embedded_server import EmbeddedDnsServer, settle_heap
from globalaccel.dns.factory import open_backend
from globalaccel.emulated.world import center_address, down_centers, edge_address
from globalaccel.errors import UsageError
from globalaccel.locate import example_network
from globalaccel.measure.peers import PeerPuller, ResultBuffer, serve_results
from globalaccel.measure.prober import ProbePath, Prober
from globalaccel.settings import HealthSettings, LoopSettings
from globalaccel.stopping import stop_event
from globalaccel.topology import Topology


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


def check_settings(topology: Topology, settings: LoopSettings) -> None:
    """Combinations the fields alone cannot validate; raises UsageError naming the flags."""
    if settings.local:
        return
    centers = set(topology.center_ids)
    if settings.vantage is None:
        raise UsageError("without --local, name this prober's center with --vantage (and its peers with --peer CENTER=URL)")
    if settings.vantage not in centers:
        raise UsageError(f"--vantage must name this prober's center, one of {', '.join(topology.center_ids)}")
    for center in settings.peer_urls:
        if center not in centers or center == settings.vantage:
            raise UsageError(f"--peer {center}=...: must be another center of the stack")
    if (settings.peers or settings.measurements_port) and not os.environ.get(settings.peer_key_env):
        raise UsageError(f"probers exchange results signed with a shared key: set {settings.peer_key_env} "
                         "(or name another variable with --peer-key-env)")


def peer_key(settings: LoopSettings) -> bytes:
    return os.environ.get(settings.peer_key_env, "").encode()


def make_lease(settings: LoopSettings, state_dir: Path) -> Lease:
    if settings.lease.kind == "kubernetes":
        import socket

        from globalaccel.control.lease import KubernetesLease

        lease = settings.lease
        return KubernetesLease.in_cluster(lease.namespace, lease.name, lease.identity or socket.gethostname())
    if settings.lease.kind == "etcd":
        from globalaccel.control.etcd_lease import EtcdLease

        lease = settings.lease
        if not lease.etcd_endpoints:
            raise UsageError("--lease etcd needs --etcd-endpoints URL[,URL...]")
        endpoints = [u.strip() for u in lease.etcd_endpoints.split(",") if u.strip()]
        key = f"/globalaccel/{lease.namespace}/{lease.name}"
        return EtcdLease(endpoints, key, lease.identity or socket.gethostname(), ttl_s=lease.ttl_s)
    return FileLease(state_dir)


def health_settings(topology: Topology, settings: LoopSettings) -> HealthSettings:
    """The stack's latency staleAfterS is also the health staleness unless the loop block sets its own."""
    if settings.health.stale_after_s == HealthSettings().stale_after_s:
        return dataclasses.replace(settings.health, stale_after_s=topology.latency.stale_after_s)
    return settings.health


def start_world(topology: Topology, options: LoopSettings, stacks_dir: Path) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "globalaccel.emulated.world", "--stack", topology.stack, "--stacks-dir", str(stacks_dir),
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


def status_line(cycle: int, report: CycleReport, probes_per_s: float, total_edges: int, total_centers: int) -> str:
    return (f"cycle {cycle} | {probes_per_s:,.0f} probes/s | edges {report.healthy_edges}/{total_edges} up | "
            f"centers {report.healthy_centers}/{total_centers} | table gen {report.generation} | "
            f"route changes {len(report.changed_cells)} | fail closed {len(report.fail_closed)}"
            + (f" | {report.error}" if report.error else ""))


async def run_up(topology: Topology, options: LoopSettings, stacks_dir: Path, out: IO[str] = sys.stdout) -> int:
    check_settings(topology, options)
    state_dir = options.state_dir or Path("state") / topology.stack
    metrics = LoopMetrics()
    responder = responder_for(topology, options.dns_host)  # fail closed until the first measured table
    backend_settings = dataclasses.replace(options.backend, kind="embedded") if options.local else options.backend
    backend = open_backend(topology, backend_settings, responder, dry_run=options.dry_run)  # a dry run creates no zone
    if isinstance(backend.backend, EmbeddedBackend):
        # What the authoritative servers in the other centers answer from (`dns serve --zone-file`).
        state_dir.mkdir(parents=True, exist_ok=True)
        backend.backend.zone_file = state_dir / ZONE_FILE
    loop = ControlLoop(topology, backend, state_dir, make_lease(options, state_dir), metrics,
                       health_settings=health_settings(topology, options), dry_run=options.dry_run,
                       min_fresh_share=options.min_fresh_share, max_withdraw_share=options.max_withdraw_share)
    world = start_world(topology, options, stacks_dir) if options.local else None
    serve_dns = backend.name == "embedded"
    server = EmbeddedDnsServer(responder, options.dns_host, options.dns_port)
    http_server: LoopHttpServer | None = None
    results_server = None
    peers = [PeerPuller(center, url, peer_key(options)) for center, url in sorted(options.peer_urls.items())]
    try:
        if serve_dns:
            await server.start()
            settle_heap()
        http_server = LoopHttpServer(options.metrics_host, options.metrics_port, metrics.registry, loop.status,
                                     lambda: loop.last_cycle_at, stale_after=max(60.0, 10 * options.interval))
        metrics_port = http_server.port
        sink: Callable[[ProbePath, float | None, float], None] = loop.record
        silent: set[str] = set()  # emulated: vantages whose center is down report nothing, as a dead prober would
        if options.local:
            paths = emulated_paths(topology, options.world_port)

            def record_unless_silent(path: ProbePath, rtt: float | None, now: float) -> None:
                if path.vantage not in silent:
                    loop.record(path, rtt, now)

            sink = record_unless_silent
        else:
            assert options.vantage is not None
            paths = real_paths(topology, options.vantage, options.source_address)
            buffer = ResultBuffer(options.vantage)

            def record_and_share(path: ProbePath, rtt: float | None, now: float) -> None:
                loop.record(path, rtt, now)
                buffer.add(path.target, rtt, now)

            sink = record_and_share

            if options.measurements_port is not None:
                results_server = serve_results(buffer, options.measurements_host, options.measurements_port, peer_key(options))
        kind = "http" if options.local else topology.probe.kind
        prober = Prober(paths, sink, interval=options.interval, timeout=min(options.probe_timeout, options.interval), kind=kind)
        where = ("EMULATED world on loopback" if options.local
                 else f"vantage {options.vantage}, {len(peers)} peers, backend {backend.name}")
        print(f"globalaccel up: stack {topology.stack}, {len(topology.centers)} centers, {len(topology.edges)} edges "
              f"({where}, {len(paths)} probe paths every {options.interval:g} s"
              f"{', dry run' if options.dry_run else ''})", file=out, flush=True)
        if serve_dns:
            print(f"  DNS      {options.dns_host}:{server.port}   dig @{options.dns_host} -p {server.port} {topology.service_name} A "
                  f"+subnet={example_network(responder.locator)}", file=out, flush=True)
        print(f"  metrics  http://{options.metrics_host}:{metrics_port}/metrics   (status: /status, liveness: /healthz)", file=out,
              flush=True)
        if results_server is not None:
            results_url = f"http://{options.measurements_host}:{results_server.server_port}/measurements"
            print(f"  results  {results_url} (for peers)", file=out, flush=True)
        if options.local:
            fault = json.dumps({"kind": "center_down", "target": "eu-central-1"})
            print(f"  faults   curl -s -XPOST 127.0.0.1:{options.control_port}/faults -d '{fault}'", file=out, flush=True)
        print(f"  state    {state_dir} (decision log: {state_dir / 'decisions.jsonl'})", file=out, flush=True)
        if loop.restored:
            report = loop.cycle(restoring=True)  # serve the persisted view at once: a restart neither flaps nor starts empty
            print(f"  restored state: table gen {report.generation}, {report.healthy_edges} edges up", file=out, flush=True)

        stop = stop_event()
        started = time.monotonic()
        cycle = 0
        tty = out.isatty()
        while not stop.is_set():
            sent_before, t0 = prober.sent, time.monotonic()
            if options.local:
                silent = await asyncio.to_thread(down_centers, options.control_port, silent)
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
                    try:
                        peer.feed(data, loop.record)
                    except (KeyError, TypeError, ValueError):  # a signed but malformed batch: no vote, never a crash
                        peer.failures += 1
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


def up_stack(topology: Topology, options: LoopSettings, stacks_dir: Path) -> int:
    return asyncio.run(run_up(topology, options, stacks_dir))
