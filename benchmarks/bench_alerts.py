"""Alerts end to end: a real Prometheus loading monitoring/rules.yml unmodified, scraping a real
`globalaccel up --stack dev --local`, with every fault kind of the emulated world injected through its
control API, plus a stopped (SIGSTOP) loop process. One run.

    .venv/bin/python benchmarks/bench_alerts.py [--quiet-minutes 60] [--interval 5] [--only NAME ...]

For each scenario: which alerts fire, seconds from the fault to firing, seconds from clearing the fault
to resolution, and every alert that fired that was not expected. Beside the fault sequence, a second
loop and Prometheus run fault-free for --quiet-minutes and report every alert that fired there (the
latency alert must stay quiet through a fault-free hour).

Prometheus as monitoring/prometheus.yml configures it: scrape every 5 s, evaluate every 15 s. The loop
at its production interval (5 s). Everything on loopback.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from globalaccel.topology import load_stack  # noqa: E402
from tests.services import free_port  # noqa: E402
from tests.test_up import UpProcess  # noqa: E402

DEV = load_stack("dev", ROOT / "stacks")
EU_EDGES = [e.id for e in DEV.edges if DEV.countries[e.country].continent == "EU"]


@dataclass
class Scenario:
    name: str
    faults: list[dict[str, Any]]
    expected: set[str]
    observe_s: float  # how long to wait for the expected alerts (or, when none, to watch for any)
    stop_process: bool = False  # SIGSTOP the loop instead of a world fault


SCENARIOS = [
    Scenario("center_down eu-central-1", [{"kind": "center_down", "target": "eu-central-1"}], {"GlobalaccelCenterDown"}, 240),
    Scenario("center_down me-central-1", [{"kind": "center_down", "target": "me-central-1"}],
             {"GlobalaccelCenterDown", "GlobalaccelCountriesLosingService"}, 240),
    Scenario("edge_down (one edge)", [{"kind": "edge_down", "target": DEV.edges[0].id}], set(), 240),
    Scenario("congestion +150 ms on every EU edge", [{"kind": "congestion", "target": e, "ms": 150} for e in EU_EDGES],
             {"GlobalaccelRegionLatencyRegression", "GlobalaccelCountryLatencyRegression"}, 720),
    # 30% loss on one edge: it goes down now and then (two losses in a row on a quorum of vantages) and comes
    # back, again and again: damping holds it and GlobalaccelFlapping (warn) says so (measured).
    Scenario("loss 30% on one edge", [{"kind": "loss", "target": DEV.edges[1].id, "rate": 0.3}], {"GlobalaccelFlapping"}, 420),
    # A 10 s flap at the 5 s probe interval never comes back up (3 successes in a row are needed), so health
    # sees it as down, not flapping (measured). 40 s down / 40 s up is a real flap at this interval.
    Scenario("flap (40 s) on two edges", [{"kind": "flap", "target": e.id, "period_s": 40} for e in DEV.edges[2:4]],
             {"GlobalaccelFlapping"}, 600),
    Scenario("oscillate +20 ms (10 s) on one edge", [{"kind": "oscillate", "target": DEV.edges[4].id, "ms": 20, "period_s": 10}],
             set(), 300),
    Scenario("cut_vantage us-east-1", [{"kind": "cut_vantage", "target": "us-east-1"}], {"GlobalaccelProberBlind"}, 240),
    Scenario("loop process stopped (SIGSTOP)", [], {"GlobalaccelLoopDown", "GlobalaccelNoLeader"}, 300, stop_process=True),
]


class Monitored:
    """A loop and a Prometheus scraping it with the project's rules."""

    def __init__(self, folder: Path, interval: float) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.up = UpProcess(folder / "state", interval=interval)
        port = free_port()
        config = folder / "prometheus.yml"
        config.write_text(yaml.safe_dump({
            "global": {"scrape_interval": "5s", "evaluation_interval": "15s"},
            "rule_files": [str(ROOT / "monitoring" / "rules.yml")],
            "scrape_configs": [{"job_name": "globalaccel",
                                "static_configs": [{"targets": [f"127.0.0.1:{self.up.metrics_port}"], "labels": {"stack": "dev"}}]}],
        }))
        self.prometheus = subprocess.Popen(["prometheus", f"--config.file={config}", f"--storage.tsdb.path={folder / 'tsdb'}",
                                            f"--web.listen-address=127.0.0.1:{port}"], stdout=subprocess.DEVNULL,
                                           stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{port}"
        self.up.wait_for(lambda: self.up.cycles() >= 3, timeout=120, what="three cycles")

    def alerts(self) -> list[dict[str, Any]]:
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/alerts", timeout=10) as response:
                data: list[dict[str, Any]] = json.loads(response.read())["data"]["alerts"]
                return data
        except OSError:
            return []

    def firing(self) -> set[str]:
        return {a["labels"]["alertname"] for a in self.alerts() if a["state"] == "firing"}

    def stop(self) -> None:
        self.prometheus.terminate()
        self.prometheus.wait(10)
        self.up.stop()


@dataclass
class Outcome:
    name: str
    expected: set[str]
    fired_after: dict[str, float] = field(default_factory=dict)
    resolved_after: dict[str, float] = field(default_factory=dict)
    unexpected: set[str] = field(default_factory=set)

    @property
    def ok(self) -> bool:
        return self.expected <= set(self.fired_after) and not self.unexpected and set(self.fired_after) <= set(self.resolved_after)


def wait_quiet(m: Monitored, timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while m.firing() and time.monotonic() < deadline:
        time.sleep(5)


def poll(m: Monitored, until: Callable[[set[str]], bool], timeout: float, seen: dict[str, float], start: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name in m.firing():
            seen.setdefault(name, time.monotonic() - start)
        if until(set(seen)):
            return
        time.sleep(5)


def run_scenario(m: Monitored, s: Scenario) -> Outcome:
    wait_quiet(m)
    out = Outcome(s.name, s.expected)
    start = time.monotonic()
    if s.stop_process:
        m.up.proc.send_signal(signal.SIGSTOP)
    else:
        m.up.fault(*s.faults)
    if s.expected:
        poll(m, lambda seen: s.expected <= seen, s.observe_s, out.fired_after, start)
        time.sleep(30)  # anything else that would fire alongside gets its chance
        poll(m, lambda _: False, 0.1, out.fired_after, start)
    else:
        poll(m, lambda _: False, s.observe_s, out.fired_after, start)
    cleared = time.monotonic()
    if s.stop_process:
        m.up.proc.send_signal(signal.SIGCONT)
    else:
        m.up.fault({"kind": "clear"})
    deadline = cleared + 900
    while time.monotonic() < deadline:
        firing = m.firing()
        for name in firing:
            out.fired_after.setdefault(name, time.monotonic() - start)
        for name in set(out.fired_after) - firing:
            out.resolved_after.setdefault(name, time.monotonic() - cleared)
        if not firing:
            break
        time.sleep(5)
    out.unexpected = set(out.fired_after) - s.expected
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quiet-minutes", type=float, default=60.0)
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--only", nargs="*", help="scenario names (prefixes) to run")
    args = parser.parse_args()
    scenarios = [s for s in SCENARIOS if not args.only or any(s.name.startswith(o) for o in args.only)]
    with TemporaryDirectory() as tmp:
        quiet_fired: dict[str, float] = {}
        quiet = Monitored(Path(tmp) / "quiet", args.interval) if args.quiet_minutes > 0 else None
        quiet_start = time.monotonic()

        def watch_quiet() -> None:
            assert quiet is not None
            while time.monotonic() - quiet_start < args.quiet_minutes * 60:
                for name in quiet.firing():
                    quiet_fired.setdefault(name, time.monotonic() - quiet_start)
                time.sleep(15)

        watcher = threading.Thread(target=watch_quiet, daemon=True)
        if quiet is not None:
            watcher.start()
        faulted = Monitored(Path(tmp) / "faults", args.interval)
        print("warming up: 6 minutes of fault-free data for the baselines", flush=True)
        time.sleep(360)
        results = []
        try:
            for s in scenarios:
                outcome = run_scenario(faulted, s)
                results.append(outcome)
                fired = ", ".join(f"{k} {v:.0f} s" for k, v in sorted(outcome.fired_after.items())) or "none"
                resolved = ", ".join(f"{k} {v:.0f} s" for k, v in sorted(outcome.resolved_after.items())) or "-"
                print(f"{'OK  ' if outcome.ok else 'FAIL'} {s.name}: expected {sorted(s.expected) or 'none'}; fired {fired}; "
                      f"resolved {resolved}; unexpected {sorted(outcome.unexpected) or 'none'}", flush=True)
        finally:
            faulted.stop()
        if quiet is not None:
            watcher.join()
            quiet.stop()
            print(f"fault-free {args.quiet_minutes:g} min: alerts fired: "
                  f"{', '.join(f'{k} at {v / 60:.1f} min' for k, v in sorted(quiet_fired.items())) or 'none'}", flush=True)
        print("| fault | expected alerts | fired (s after fault) | resolved (s after clearing) | unexpected |")
        print("|---|---|---|---|---|")
        for o in results:
            print(f"| {o.name} | {', '.join(sorted(o.expected)) or 'none'} | "
                  f"{', '.join(f'{k} {v:.0f}' for k, v in sorted(o.fired_after.items())) or 'none'} | "
                  f"{', '.join(f'{k} {v:.0f}' for k, v in sorted(o.resolved_after.items())) or '-'} | "
                  f"{', '.join(sorted(o.unexpected)) or 'none'} |")


if __name__ == "__main__":
    main()
