"""`globalaccel up`: the main job. With --local: the emulated world, probers for every center, the
control loop, the embedded DNS server and the metrics endpoint, all on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from prometheus_client import start_http_server

from globalaccel.dns.embedded import DnsResponder, EmbeddedDnsServer, ZoneSnapshot
from globalaccel.probe.loop import ControlLoop, CycleReport
from globalaccel.probe.metrics import LoopMetrics
from globalaccel.probe.prober import ProbePath, Prober
from globalaccel.probe.sinks import EmbeddedSink
from globalaccel.probe.state import FileLease
from globalaccel.probe.world import center_address, edge_address
from globalaccel.topology import Topology


@dataclass
class UpOptions:
    stacks_dir: Path
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


def emulated_paths(topology: Topology, port: int) -> list[ProbePath]:
    """Every center probes every edge and every other center, from its own loopback address."""
    paths: list[ProbePath] = []
    for j, center in enumerate(topology.centers):
        source = center_address(j)
        paths.extend(ProbePath(center.id, source, edge.id, edge_address(i), port) for i, edge in enumerate(topology.edges))
        paths.extend(ProbePath(center.id, source, other.id, center_address(k), port)
                     for k, other in enumerate(topology.centers) if k != j)
    return paths


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
    state_dir = options.state_dir or Path("state") / topology.stack
    metrics = LoopMetrics()
    responder = DnsResponder(empty_snapshot(topology, options.dns_host))  # fail closed until the first measured table
    loop = ControlLoop(topology, EmbeddedSink(topology, responder), state_dir, FileLease(state_dir), metrics, dry_run=options.dry_run)
    world = start_world(topology, options)
    server = EmbeddedDnsServer(responder, options.dns_host, options.dns_port)
    http_server = None
    try:
        await server.start()
        http_server, _thread = start_http_server(options.metrics_port, addr="127.0.0.1", registry=metrics.registry)
        metrics_port = http_server.server_port
        paths = emulated_paths(topology, options.world_port)
        prober = Prober(paths, loop.record, interval=options.interval, timeout=min(options.probe_timeout, options.interval))
        print(f"globalaccel up: stack {topology.stack}, {len(topology.centers)} centers, {len(topology.edges)} edges "
              f"(EMULATED world on loopback, {len(paths)} probe paths every {options.interval:g} s"
              f"{', dry run' if options.dry_run else ''})", file=out, flush=True)
        print(f"  DNS      {options.dns_host}:{server.port}   dig @{options.dns_host} -p {server.port} {topology.service_name} A "
              f"+subnet=85.214.0.0/16", file=out, flush=True)
        print(f"  metrics  http://127.0.0.1:{metrics_port}/metrics", file=out, flush=True)
        fault = json.dumps({"kind": "center_down", "target": "eu-central-1"})
        print(f"  faults   curl -s -XPOST 127.0.0.1:{options.control_port}/faults -d '{fault}'", file=out, flush=True)
        print(f"  state    {state_dir} (decision log: {state_dir / 'decisions.jsonl'})", file=out, flush=True)
        if loop.restored:
            report = loop.cycle()  # serve the persisted view at once: a restart neither flaps nor starts empty
            print(f"  restored state: table gen {report.generation}, {report.healthy_edges} edges up", file=out, flush=True)

        stop = asyncio.Event()
        aloop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            aloop.add_signal_handler(sig, stop.set)
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
        world.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            world.wait(10)
        loop.lease.release()


def up_stack(topology: Topology, options: UpOptions) -> int:
    return asyncio.run(run_up(topology, options))


def describe(report: CycleReport) -> dict[str, Any]:
    return {"generation": report.generation, "table_hash": report.table_hash, "healthy_edges": report.healthy_edges,
            "healthy_centers": report.healthy_centers, "fail_closed": report.fail_closed, "violations": report.violations}
