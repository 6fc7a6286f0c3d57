"""Quiet when nothing changes: route changes per hour on the real loop, fault-free, after warm-up.

    .venv/bin/python benchmarks/bench_stability.py [--stack prod] [--minutes 15] [--warmup-minutes 5]

Runs `globalaccel up --stack <stack> --local` (the real probe loop against the emulated world on loopback,
nothing injected) for --minutes, then reads its decision log. A route change is a cell whose published
center or edge set differs from the previous generation's; the log records each cycle's changed cells
with the router's reason. Counted only after --warmup-minutes (the first cycles move every cell from
physics estimates to measurements, which is not churn). Reported: changes per hour, the share of cells
that changed per hour (goal: under 1%), the distinct cells that changed, and the reasons. Also read from the
loop's own /metrics every 30 s: the share of routed demand beyond edge budgets and each limited center's load,
at the end of warm-up and at the end (quiet routes must not be bought with overload).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from globalaccel.topology import load_stack  # noqa: E402
from tests.services import free_port, free_service_port  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stack", default="prod")
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--warmup-minutes", type=float, default=5.0)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep-log", type=Path, help="copy the loop's decision log here, to study the changes")
    args = parser.parse_args()
    topology = load_stack(args.stack, ROOT / "stacks")
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        cli = Path(sys.executable).parent / "globalaccel"
        started = time.time()
        metrics_port = free_port()
        capacity: dict[str, dict[str, float]] = {}  # "warmup" / "end" -> metric -> value
        done = threading.Event()

        def watch() -> None:
            while not done.wait(30.0):
                sample = scrape_capacity(metrics_port)
                if not sample:
                    continue
                key = "warmup" if time.time() - started < args.warmup_minutes * 60 else "end"
                capacity[key] = sample

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            subprocess.run([str(cli), "up", "--stack", args.stack, "--local", "--duration", str(args.minutes * 60), "--state-dir",
                            str(state), "--dns-port", str(free_port()), "--metrics-port", str(metrics_port), "--world-port",
                            str(free_service_port()), "--control-port", str(free_port())],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
        finally:
            done.set()
        ended = time.time()
        log = (state / "decisions.jsonl").read_text()
        if args.keep_log is not None:
            args.keep_log.write_text(log)
        entries = [json.loads(line) for line in log.splitlines() if line.strip()]
    cycles = [e for e in entries if "routes" in e]
    if not cycles:
        raise SystemExit("the loop logged no generation")
    first = cycles[0]["time"]
    after = [e for e in cycles if e["time"] - first >= args.warmup_minutes * 60]
    # From the end of warm-up to the end of the run (not to the last generation logged: a quiet end is observed too).
    observed_s = max(1.0, ended - first - args.warmup_minutes * 60)
    reasons: Counter[str] = Counter()
    cells: set[str] = set()
    changes = 0
    for entry in after:
        for cell, route in entry["routes"].items():
            changes += 1
            cells.add(cell)
            reasons[str(route.get("reason"))] += 1
    per_hour = changes * 3600 / observed_s
    out = {"stack": args.stack, "cells": len(topology.cells), "run_minutes": args.minutes, "warmup_minutes": args.warmup_minutes,
           "observed_s": round(observed_s), "generations_after_warmup": len(after), "changes": changes,
           "changes_per_hour": round(per_hour, 1), "cells_changed_share_per_hour": round(per_hour / len(topology.cells), 4),
           "distinct_cells": len(cells), "reasons": dict(reasons), "capacity": capacity, "wall_s": round(time.time() - started)}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"{args.stack}: {out['changes']} route changes in {out['observed_s']} s after {args.warmup_minutes} min of warm-up "
              f"({out['generations_after_warmup']} new generations): {out['changes_per_hour']} per hour = "
              f"{out['cells_changed_share_per_hour']:.2%} of {out['cells']} cells per hour (goal < 1%); "
              f"{out['distinct_cells']} distinct cells; reasons {out['reasons']}; capacity {capacity}")
    return 0


def scrape_capacity(port: int) -> dict[str, float]:
    """The loop's capacity gauges from its /metrics (empty while it is not up yet)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        if line.startswith(("globalaccel_capacity_overflow_ratio", "globalaccel_center_load_ratio")):
            name, value = line.rsplit(" ", 1)
            out[name] = round(float(value), 5)
    return out


if __name__ == "__main__":
    sys.exit(main())
