"""The probe loop: probing cost, failover time, stability under oscillation, routing quality. One run.

    .venv/bin/python benchmarks/bench_probe.py [--trials 24]

1. Probes per CPU-second: one full prod cycle (12,812 paths) against the emulated world running in its
   own process; CPU of the prober process measured with getrusage. Goal >= 2,000 per core
   (blackbox_exporter's own figure is ~1,000 per core; cited, not measured here).
2. Failover: `globalaccel up --stack dev --local --interval 1` as a real process; each trial kills the
   first edge of some country's DNS answer through the fault API and polls DNS (every 20 ms) until
   that edge's address is gone. p50 and p99 over the trials, in seconds and probe intervals.
   Goal: within 3 probe intervals.
3. Oscillation: the router and its hysteresis over 2 simulated hours at the prod settings (5 s cycles,
   300 s hold-down), with DE's first edge oscillating by +30 % every 30 s. Goal: at most one route
   change per hold window for any cell.
4. Quality: prod, 10 % of edges congested by +40..160 ms (seeded); extra RTT over an oracle that knows
   true latencies, demand-weighted mean and p95 over routed countries, for this router (measured
   latencies, as the loop sees them) and for a geo-nearest baseline (nearest edges by distance, as
   PowerDNS pickclosest / Route 53 geoproximity would pick). Capacity is out of the comparison
   (headroom 1000) so it measures latency steering.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from globalaccel.app.up import emulated_paths  # noqa: E402
from globalaccel.geo import angles_between, unit_vectors  # noqa: E402
from globalaccel.latency import LatencyModel  # noqa: E402
from globalaccel.measure.prober import Prober  # noqa: E402
from globalaccel.routing import Health, Router  # noqa: E402
from globalaccel.topology import load_stack  # noqa: E402
from tests.services import free_port, free_service_port  # noqa: E402


def probes_per_cpu_second(interval: float) -> dict[str, float]:
    prod = load_stack("prod", ROOT / "stacks")
    port, control = free_service_port(), free_port()
    world = subprocess.Popen([sys.executable, "-m", "globalaccel.emulated.world", "--stack", "prod", "--port", str(port),
                              "--control-port", str(control)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert world.stdout is not None
        assert json.loads(world.stdout.readline())["ready"]
        results: list[float | None] = []
        prober = Prober(emulated_paths(prod, port), lambda p, rtt, now: results.append(rtt), interval=interval, timeout=2.0)
        before = resource.getrusage(resource.RUSAGE_SELF)
        start = time.perf_counter()
        asyncio.run(prober.run_cycle())
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        lost = sum(1 for r in results if r is None)
        return {"probes": len(results), "lost": lost, "wall_s": wall, "prober_cpu_s": cpu, "probes_per_cpu_s": len(results) / cpu,
                "probes_per_wall_s": len(results) / wall}
    finally:
        world.terminate()
        world.wait(10)


def failover(trials: int, tmp: Path) -> dict[str, Any]:
    from tests.test_up import UpProcess

    up = UpProcess(tmp / "state", interval=1.0)
    countries = ["DE", "US", "GB", "IN"]
    times: list[float] = []
    try:
        up.wait_for(lambda: up.cycles() >= 3, timeout=60, what="warm-up")
        for trial in range(trials):
            country = countries[trial % len(countries)]
            answer = sorted(up.answers(country))
            current = [e for e in load_stack("dev", ROOT / "stacks").edges if e.address in answer]
            victim = min(current, key=lambda e: e.id)  # deterministic pick among the answer's edges
            start = time.monotonic()
            up.fault({"kind": "edge_down", "target": victim.id})
            while victim.address in up.answers(country):
                if time.monotonic() - start > 30:
                    raise TimeoutError(f"{victim.id} still answered after 30 s")
                time.sleep(0.02)
            times.append(time.monotonic() - start)
    finally:
        up.stop()
    ordered = sorted(times)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {"trials": len(times), "p50_s": statistics.median(times), "p99_s": p99, "max_s": max(times), "interval_s": 1.0,
            "p50_intervals": statistics.median(times) / 1.0, "p99_intervals": p99 / 1.0}


def oscillation(hours: float = 2.0) -> dict[str, Any]:
    prod = load_stack("prod", ROOT / "stacks")
    router, latency = Router(prod), LatencyModel(prod)
    state = None
    table, state = router.compute(latency, now=0.0)
    victim = table.routes["DE"].answers[0].edge_id
    vi = [e.id for e in prod.edges].index(victim)
    hold = prod.routing.hysteresis.hold_down_s
    changes: dict[str, list[float]] = {}
    previous = {cid: (r.center, r.edge_ids) for cid, r in table.routes.items()}
    now = 0.0
    while now < hours * 3600:
        now += 5.0
        factor = 1.3 if int(now // 30) % 2 else 1.0
        for ci, center in enumerate(prod.center_ids):
            for ei, edge in enumerate(prod.edges):
                base = float(latency.physics_center_edge[ci, ei])
                latency.record(center, edge.id, base * factor if ei == vi else base, now)
        table, state = router.compute(latency, now=now, state=state)
        for cid, r in table.routes.items():
            key = (r.center, r.edge_ids)
            if previous[cid] != key:
                changes.setdefault(cid, []).append(now)
                previous[cid] = key
    worst = 0
    for stamps in changes.values():
        for t in stamps:
            worst = max(worst, sum(1 for u in stamps if t <= u < t + hold))
    return {"simulated_s": hours * 3600, "hold_window_s": hold, "cells_that_changed": len(changes),
            "total_changes": sum(len(v) for v in changes.values()), "max_changes_in_any_hold_window": worst, "victim": victim}


def quality(seed: int = 11) -> dict[str, Any]:
    base = load_stack("prod", ROOT / "stacks")
    prod = dataclasses.replace(base, routing=dataclasses.replace(base.routing, capacity_headroom=1000.0))
    rng = random.Random(seed)
    n_edges = len(prod.edges)
    congested = rng.sample(range(n_edges), n_edges // 10)
    extra = np.zeros(n_edges)
    for i in congested:
        extra[i] = rng.uniform(40, 160)
    latency = LatencyModel(prod)
    true_center_edge = latency.physics_center_edge + extra[None, :]  # congestion at the edge delays every path through it
    for ci, center in enumerate(prod.center_ids):
        for ei, edge in enumerate(prod.edges):
            latency.record(center, edge.id, float(true_center_edge[ci, ei]), 0.0)
    table, _ = Router(prod).compute(latency, now=1.0)

    cells = [c for c in prod.cells if table.routes[c.id].center is not None]
    cell_xyz = unit_vectors(np.array([c.lat for c in cells]), np.array([c.lon for c in cells]))
    edge_xyz = unit_vectors(np.array([e.lat for e in prod.edges]), np.array([e.lon for e in prod.edges]))
    client_leg = latency.physics.rtt_from_angles(angles_between(cell_xyz, edge_xyz)) + extra[None, :]  # (N, E) true
    edge_pos = {e.id: i for i, e in enumerate(prod.edges)}
    health = Health.all_up(prod)
    ours, geo, weights = [], [], []
    k = prod.routing.answers
    nearest = np.argsort(angles_between(cell_xyz, edge_xyz), axis=1)[:, :k]
    for n, cell in enumerate(cells):
        allowed = [prod.center_ids.index(c) for c in prod.residency.eligibility(cell.country, health.centers, prod.center_ids).centers]
        true_cost = client_leg[n][None, :] + true_center_edge[allowed]  # (allowed, E)
        oracle = float(true_cost.min())
        route = table.routes[cell.id]
        ci = prod.center_ids.index(route.center)
        served = sum(a.weight * (client_leg[n, edge_pos[a.edge_id]] + true_center_edge[ci, edge_pos[a.edge_id]]) for a in route.answers)
        geo_cost = min(float(np.mean(client_leg[n, nearest[n]] + true_center_edge[c, nearest[n]])) for c in allowed)
        ours.append(served - oracle)
        geo.append(geo_cost - oracle)
        weights.append(cell.demand)

    def summary(values: list[float]) -> dict[str, float]:
        order = np.argsort(values)
        v = np.asarray(values)[order]
        w = np.cumsum(np.asarray(weights)[order])
        return {"mean_ms": float(np.average(values, weights=weights)), "p95_ms": float(v[np.searchsorted(w, 0.95 * w[-1])])}

    return {"congested_edges": len(congested), "cells": len(cells), "router": summary(ours), "geo_nearest": summary(geo)}


def main() -> None:
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    out: dict[str, Any] = {"probing": probes_per_cpu_second(interval=3.0)}
    with tempfile.TemporaryDirectory() as tmp:
        out["failover"] = failover(args.trials, Path(tmp))
    out["oscillation"] = oscillation()
    out["quality"] = quality()
    if args.json:
        print(json.dumps(out, indent=2))
        return
    p, f, o, q = out["probing"], out["failover"], out["oscillation"], out["quality"]
    print(f"probing: {p['probes']} probes ({p['lost']} lost) in {p['wall_s']:.1f} s wall, prober {p['prober_cpu_s']:.2f} CPU-s "
          f"-> {p['probes_per_cpu_s']:,.0f} probes per CPU-second (goal >= 2,000)")
    print(f"failover: {f['trials']} trials, p50 {f['p50_s']:.2f} s ({f['p50_intervals']:.1f} intervals), p99 {f['p99_s']:.2f} s "
          f"({f['p99_intervals']:.1f} intervals), max {f['max_s']:.2f} s (goal <= 3 intervals)")
    print(f"oscillation: {o['simulated_s'] / 3600:.0f} h simulated, {o['cells_that_changed']} cells changed route "
          f"{o['total_changes']} times; max changes in any {o['hold_window_s']:.0f} s hold window: {o['max_changes_in_any_hold_window']} "
          f"(goal <= 1)")
    print(f"quality ({q['congested_edges']} congested edges, {q['cells']} routed countries), extra RTT over the oracle:")
    print(f"  router       mean {q['router']['mean_ms']:.2f} ms  p95 {q['router']['p95_ms']:.2f} ms")
    print(f"  geo-nearest  mean {q['geo_nearest']['mean_ms']:.2f} ms  p95 {q['geo_nearest']['p95_ms']:.2f} ms")


if __name__ == "__main__":
    main()
