"""Embedded DNS server on the wire: queries/s on one core with every query from a different /24 (issue #11, 4).

    .venv/bin/python -m benchmarks.bench_wire [--seconds 4] [--rates 20000,25000,30000,35000,40000] [--runs 3]

The real server (`globalaccel dns serve --stack prod`, prod's cells and network database) runs as its own
process pinned to core 0 (`taskset -c 0`); this script is the load generator, pinned to core 1. dnsperf
cannot vary ECS per query, so the generator is here: an open loop that sends, at a fixed rate for a fixed
time, queries each carrying a different /24 that the database places (ECS source /24, 0x20 case), over one
UDP socket, and counts the responses that come back NOERROR (addresses, or NODATA where a country fails closed). A step's loss is
sent - answered after a one-second drain. The table reports each step's offered
and answered rate, loss, and drops counted by the kernel at each socket; `max_rate_without_loss_per_run` is,
for each run on a freshly started server, the highest step with 0 loss. Also, for the record, the same
server with the fast path off (`--no-cache`: every query through dnspython), the per-query path before.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import dns.edns
import dns.message

from globalaccel.dns.embedded_server import set_receive_buffer
from globalaccel.locate import NetworkMap
from globalaccel.topology import load_stack

ROOT = Path(__file__).resolve().parent.parent


def distinct_slash24s(located: NetworkMap, count: int, seed: int) -> list[str]:
    """`count` different /24s the database places (first /24s of its networks, then more inside big ones)."""
    out: list[str] = []
    networks = [ipaddress.IPv4Network(n) for n, _ in located.ranges(4)]
    random.Random(seed).shuffle(networks)
    depth = 0
    while len(out) < count and depth < 256:
        for net in networks:
            if net.prefixlen <= 24 and depth < net.num_addresses // 256:
                out.append(str(net.network_address + 256 * depth))
                if len(out) == count:
                    break
        depth += 1
    return out


def queries(service: str, slash24s: list[str], seed: int) -> list[bytes]:
    rng = random.Random(seed)
    wires = []
    for n, network in enumerate(slash24s):
        name = "".join(ch.upper() if rng.random() < 0.5 else ch for ch in service)
        message = dns.message.make_query(name, "A", use_edns=0, options=[dns.edns.ECSOption(network, 24)])
        message.id = n & 0xFFFF
        wires.append(message.to_wire())
    return wires


def load_step(port: int, wires: list[bytes], rate: int, seconds: float) -> dict[str, float]:
    """Open loop: wires[i] goes at start + i / rate, whatever has come back."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    set_receive_buffer(sock, 8 << 20)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    total = min(len(wires), int(rate * seconds))
    server_drops_before = socket_drops(port)
    answered = bad = 0
    start = time.perf_counter()
    sent = 0

    def drain() -> None:
        nonlocal answered, bad
        while True:
            try:
                reply = sock.recv(4096)
            except BlockingIOError:
                return
            # RCODE NOERROR (with addresses, or NODATA for a fail-closed country): read off the header.
            if reply[3] & 0x0F == 0:
                answered += 1
            else:
                bad += 1

    while sent < total:
        due = min(total, int((time.perf_counter() - start) * rate) + 1)
        while sent < due:
            try:
                sock.send(wires[sent])
            except BlockingIOError:
                break
            sent += 1
        drain()
    elapsed = time.perf_counter() - start
    end = time.perf_counter() + 1.0
    while time.perf_counter() < end:
        drain()
        time.sleep(0.001)
    client_drops = socket_drops(sock.getsockname()[1])
    sock.close()
    return {"offered_qps": round(sent / elapsed), "answered_qps": round(answered / elapsed), "sent": sent,
            "answered": answered, "not_noerror": bad, "lost": sent - answered - bad,
            "loss_share": round((sent - answered - bad) / max(sent, 1), 5),
            "dropped_at_server_socket": socket_drops(port) - server_drops_before, "dropped_at_client_socket": client_drops}


def socket_drops(port: int) -> int:
    """Datagrams the kernel dropped for a full receive buffer, on the UDP socket bound to 127.0.0.1:port."""
    wanted = f"0100007F:{port:04X}"
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == wanted:
            return int(fields[-1])
    return 0


def serve(extra: list[str]) -> tuple[subprocess.Popen[str], int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    cmd = ["taskset", "-c", "0", str(ROOT / ".venv" / "bin" / "globalaccel"), "dns", "serve", "--stack", "prod",
           "--host", "127.0.0.1", "--port", str(port), *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "serving" not in line:
        proc.kill()
        raise RuntimeError(f"server did not start: {line!r}")
    return proc, port


def run_server(extra: list[str], wires: list[bytes], rates: list[int], seconds: float) -> list[dict[str, float]]:
    proc, port = serve(extra)
    try:
        load_step(port, wires[:2000], 2000, 1.0)  # warm-up: rendered records per location, code paths
        return [{"rate": rate, **load_step(port, wires, rate, seconds)} for rate in rates]
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rates", default="20000,25000,30000,35000,40000")
    parser.add_argument("--baseline-rates", default="500,1000,1500")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    os.sched_setaffinity(0, {1})
    prod = load_stack("prod", ROOT / "stacks")
    assert prod.client_networks is not None
    located = NetworkMap.from_mmdb(prod.client_networks, prod.cells)
    rates = [int(r) for r in args.rates.split(",")]
    slash24s = distinct_slash24s(located, int(max(rates) * args.seconds), seed=1)
    wires = queries(prod.service_name, slash24s, seed=2)
    print(f"{len(wires)} queries, each from a different /24 ({len(set(slash24s))} distinct)", file=sys.stderr)
    def best(steps: list[dict[str, float]]) -> float:
        return max((s["answered_qps"] for s in steps if s["lost"] == 0 and s["not_noerror"] == 0), default=0)

    # Each run on a freshly started server: runs on this machine vary (a VM sharing its host), so every run's
    # figure is reported and the worst is the one to hold against the goal.
    runs = [run_server([], wires, rates, args.seconds) for _ in range(args.runs)]
    full = run_server(["--no-cache"], wires, [int(r) for r in args.baseline_rates.split(",")], min(args.seconds, 4.0))
    per_run = [best(steps) for steps in runs]
    out = {"distinct_slash24s": len(set(slash24s)), "fast_path_runs": runs, "full_path_no_cache": full,
           "max_rate_without_loss_per_run": per_run, "worst_run_max_rate_without_loss": min(per_run),
           "full_path_max_rate_without_loss": best(full),
           "ratio_worst_run_over_full": round(min(per_run) / best(full), 1) if best(full) else None, "goal_qps": 30_000}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
