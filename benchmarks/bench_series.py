"""Series exported by the prod stack's loop: run `globalaccel up --stack prod --local`, scrape /metrics
after two full cycles, count samples by metric family. Budget (monitoring/README.md): 50,000.

    .venv/bin/python benchmarks/bench_series.py
"""

from __future__ import annotations

import collections
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.services import free_port, free_service_port  # noqa: E402

BUDGET = 50_000


def main() -> None:
    metrics_port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [str(ROOT / ".venv/bin/globalaccel"), "up", "--stack", "prod", "--local", "--duration", "60", "--dns-port", str(free_port()),
               "--metrics-port", str(metrics_port), "--world-port", str(free_service_port()), "--control-port", str(free_port()),
               "--state-dir", tmp]
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        lines: list[str] = []
        threading.Thread(target=lambda: lines.extend(proc.stdout or []), daemon=True).start()
        try:
            deadline = time.monotonic() + 120
            while sum(1 for line in lines if line.startswith("cycle ")) < 2:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit("up did not complete two cycles:\n" + "".join(lines[-10:]))
                time.sleep(0.5)
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as response:
                text = response.read().decode()
        finally:
            proc.terminate()
            proc.wait(30)
    samples = [line for line in text.splitlines() if line and not line.startswith("#")]
    families: collections.Counter[str] = collections.Counter()
    for line in samples:
        name = line.split("{")[0].split(" ")[0]
        for suffix in ("_bucket", "_count", "_sum", "_created", "_total"):
            if name.endswith(suffix):
                name = name[: -len(suffix)]
                break
        families[name] += 1
    print(f"prod exporter: {len(samples)} series (budget {BUDGET:,}: {'within' if len(samples) <= BUDGET else 'OVER'})")
    for name, count in families.most_common(8):
        print(f"  {count:>6}  {name}")


if __name__ == "__main__":
    main()
