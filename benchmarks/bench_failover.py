"""Failover without the controller, self-hosted: seconds until every country is answered through its
first live allowed center after a center is lost, and residency violations meanwhile.

    .venv/bin/python benchmarks/bench_failover.py [--stack prod] [--trials 3] [--json]

Measured in one run, on loopback, for the stack's whole zone: the emulated world (every edge and center a
listener), four `globalaccel dns serve --center` processes answering from the zone the controller last
published (written once; no controller runs), each probing the centers from its own address. For each
center in turn (the controller's, us-east-1, included: losing it also loses its DNS server and the
controller), `trials` times: the center's listener and its DNS server are killed, then every country (one
ECS network each, one the stack's network database places in the country's principal cell) is asked of
every other server every 0.1 s until each answers through the first live center of the country's chain;
every answer seen is checked against the country's rule (center and edge). "Controller's center down and
the DNS API failing" is the controller's center row: a self-hosted data plane makes no API call to fail
over. Against: the same servers given the zone without chains (how it was published before), one trial
per center with a 20 s limit.

"Restart everything at once": the world and all four servers killed together; the servers start again
3 s later, the world 5 s after them; every server asked for 24 countries in rounds throughout (a round of all
238 would take longer than the seconds watched); reported: seconds from the kill until
every server answers every country as chosen (to the end of a 30 s watch), the share of samples with no
answer, and residency violations over the whole timeline.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from globalaccel.emulated.failover import data_plane, lose_center, principal_networks, restart_everything  # noqa: E402
from globalaccel.topology import load_stack  # noqa: E402
from tests.services import free_port, free_service_port  # noqa: E402


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stack", default="prod")
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    stacks = ROOT / "stacks"
    topology = load_stack(args.stack, stacks)
    networks = principal_networks(topology)  # one network per country, in its principal cell
    out: dict[str, object] = {"stack": args.stack, "countries_asked": len(networks), "trials": args.trials,
                              "control_center": topology.iac.control_center or topology.centers[0].id}
    rows: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        zone = Path(tmp) / "zone.json"
        with data_plane(topology, stacks, zone, networks, (free_service_port(), free_port(), free_service_port())) as plane:
            for center in topology.center_ids:
                times: list[float] = []
                violations: list[str] = []
                missed = 0
                for _ in range(args.trials):
                    took, wrong = lose_center(plane, center, stacks, zone, timeout_s=60)
                    violations += wrong
                    if took is None:
                        missed += 1
                    else:
                        times.append(took)
                moved = sum(1 for code, c in plane.expected({center}).items() if c != plane.expected(set())[code])
                rows[center] = {"p50_s": round(statistics.median(times), 2) if times else None,
                                "p99_s": round(quantile(times, 0.99), 2) if times else None,
                                "trials": args.trials, "not_converged": missed, "violations": len(violations),
                                "countries_moved": moved, "examples": violations[:3]}
            timeline = restart_everything(plane, stacks, zone, down_s=3.0, watch_s=30.0, world_lag_s=5.0, countries=24)
            back = timeline.recovered_at(plane.expected(set()))
            out["restart_everything"] = {"down_s": 3.0, "world_lag_s": 5.0, "recovered_s": round(back, 2) if back is not None else None,
                                         "samples": len(timeline.samples), "unanswered_share": round(timeline.unanswered_share(), 3),
                                         "violations": len(timeline.violations()), "examples": timeline.violations()[:3]}
        baseline: dict[str, object] = {}
        with data_plane(topology, stacks, zone, networks, (free_service_port(), free_port(), free_service_port()), chains=False) as plane:
            for center in topology.center_ids:
                took, wrong = lose_center(plane, center, stacks, zone, timeout_s=20)
                baseline[center] = {"converged_s": took, "violations": len(wrong)}
    out["with_chains"] = rows
    out["without_chains"] = baseline
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"{args.stack}: {len(networks)} countries asked of every surviving server; no controller running")
    for center, row in rows.items():
        tag = " (the controller's center)" if center == out["control_center"] else ""
        print(f"  {center}{tag}: p50 {row['p50_s']} s, p99 {row['p99_s']} s over {row['trials']} trials, "
              f"{row['countries_moved']} countries moved, {row['violations']} residency violations, "
              f"{row['not_converged']} not converged; without chains: "
              f"{'never within 20 s' if baseline[center]['converged_s'] is None else str(baseline[center]['converged_s']) + ' s'}")  # type: ignore[index]
    r = out["restart_everything"]
    print(f"  restart everything at once (down {r['down_s']} s): every server answers every country as chosen from "  # type: ignore[index]
          f"{r['recovered_s']} s after the kill; {r['samples']} samples, {r['unanswered_share']} unanswered, "  # type: ignore[index]
          f"{r['violations']} residency violations")  # type: ignore[index]
    return 0


if __name__ == "__main__":
    sys.exit(main())
