"""The prod stack's Pulumi program under the SDK's mocks, beside a naive one-`Record`-per-record program.

    .venv/bin/python benchmarks/bench_iac.py

Each program runs in its own process (`preview=False` mocks, every registration recorded); measured:
resources, wall time, peak memory (ru_maxrss of the child). Goals: at most 150 resources for 3000+
edges, under 5 s and 300 MB. The naive program is this one with the EdgeFleet swapped for one
`aws.route53.Record` per compiled record (what per-edge IaC does).
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

NAIVE_FLEET = '''
import pulumi_aws as aws
for i, r in enumerate(records):
    kwargs = dict(zone_id=zone.zone.zone_id, name=r.name, type=r.type, set_identifier=r.set_id)
    if r.alias is not None:
        kwargs["aliases"] = [{"name": r.alias, "zone_id": zone.zone.zone_id, "evaluate_target_health": False}]
    else:
        kwargs.update(ttl=r.ttl, records=list(r.values))
    if r.weight is not None:
        kwargs["weighted_routing_policies"] = [{"weight": r.weight}]
    if r.geo is not None:
        kwargs["geolocation_routing_policies"] = [{"continent": r.geo.continent, "country": r.geo.country}]
    aws.route53.Record(f"record-{i}", **kwargs)
'''

RUNNER = """
import json, sys, time
from pathlib import Path
start = time.perf_counter()
from globalaccel.iac.preview import run_program
resources = run_program("prod", Path(sys.argv[1]))
print(json.dumps({"resources": len(resources), "seconds": time.perf_counter() - start}))
"""


def measure(project: Path) -> dict[str, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", RUNNER, str(project)], cwd=ROOT, capture_output=True, text=True, check=True, timeout=600)
    wall = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    data = json.loads(out.stdout.strip().splitlines()[-1])
    return {"resources": data["resources"], "program_seconds": data["seconds"], "process_seconds": wall,
            "peak_mib": max(peak_kib, before) / 1024}


def main() -> None:
    ours = measure(ROOT)
    with tempfile.TemporaryDirectory() as tmp:
        naive = Path(tmp)
        for item in ("Pulumi.yaml",):
            shutil.copy(ROOT / item, naive / item)
        for folder in ("modules", "stacks"):
            shutil.copytree(ROOT / folder, naive / folder)
        program = (ROOT / "__main__.py").read_text()
        head, tail = program.split("fleet = EdgeFleet(", 1)
        tail = tail.split("\ncontrol = ", 1)[1]
        (naive / "__main__.py").write_text(head + NAIVE_FLEET + "\ncontrol = " + tail)
        theirs = measure(naive)
    print(f"ours:  {ours['resources']:>5.0f} resources, {ours['program_seconds']:.2f} s program ({ours['process_seconds']:.2f} s process), "
          f"peak {ours['peak_mib']:.0f} MiB (goals: <= 150, < 5 s, < 300 MB)")
    print(f"naive: {theirs['resources']:>5.0f} resources, {theirs['program_seconds']:.2f} s program "
          f"({theirs['process_seconds']:.2f} s process), peak {theirs['peak_mib']:.0f} MiB")
    ratio_resources = theirs["resources"] / ours["resources"]
    ratio_time = theirs["program_seconds"] / ours["program_seconds"]
    print(f"ratio: {ratio_resources:.0f}x fewer resources, {ratio_time:.1f}x faster evaluation")


if __name__ == "__main__":
    main()
