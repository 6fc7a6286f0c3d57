"""`globalaccel up` without --local, as in production: one process per center, each probing from its
own address and serving its results, each pulling the others'. All on loopback: the stack's catalog
is rewritten to point at the emulated world's addresses (the world runs as its own process)."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import dns.edns
import dns.message
import dns.query
import pytest

from globalaccel.emulated.world import center_address, edge_address
from globalaccel.topology import load_stack
from tests.conftest import ROOT, STACKS
from tests.services import free_port, free_service_port, wait_for_port

CLI = str(ROOT / ".venv" / "bin" / "globalaccel")
DE_NET = ("85.214.0.0", 16)


def loopback_stack(target: Path, world_port: int) -> Path:
    """A copy of stacks/ whose dev catalog and centers live at the emulated world's addresses."""
    import shutil

    stacks = target / "stacks"
    shutil.copytree(STACKS, stacks)
    catalog = stacks / "catalog" / "edges-dev.csv"
    lines = catalog.read_text().splitlines()
    header_at = next(i for i, line in enumerate(lines) if line.startswith("id,"))
    rows = list(csv.reader(lines[header_at + 1 :]))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(lines[header_at].split(","))
    column = lines[header_at].split(",").index("address")
    for i, row in enumerate(rows):
        writer.writerow([*row[:column], edge_address(i), *row[column + 1 :]])
    catalog.write_text("\n".join(lines[:header_at]) + "\n" + out.getvalue())
    text = (stacks / "Pulumi.dev.yaml").read_text()
    for j, old in enumerate(["198.19.255.1", "198.19.255.2", "198.19.255.3", "198.19.255.4"]):
        text = text.replace(f"address: {old}", f"address: {center_address(j)}")
    text = text.replace("    port: 443\n    kind: tcp", f"    port: {world_port}\n    kind: http")
    (stacks / "Pulumi.dev.yaml").write_text(text)
    return stacks


class Proc:
    def __init__(self, args: list[str]) -> None:
        self.lines: list[str] = []
        env = {**os.environ, "GLOBALACCEL_PEER_KEY": "test-centers-shared-key"}  # probers sign what they exchange
        self.proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def cycles(self) -> int:
        return sum(1 for line in self.lines if line.startswith("cycle "))

    def status(self) -> str:
        return next((line for line in reversed(self.lines) if line.startswith("cycle ")), "")


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, procs: list[Proc]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    tail = "\n".join(line for p in procs for line in p.lines[-4:])
    raise AssertionError(f"timed out waiting for {what}:\n{tail}")


def answers(port: int) -> set[str]:
    query = dns.message.make_query(load_stack("dev", STACKS).service_name, "A", use_edns=0, options=[dns.edns.ECSOption(*DE_NET)])
    response = dns.query.udp(query, "127.0.0.1", port=port, timeout=3)
    return {rr.address for rrset in response.answer for rr in rrset}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[Path, int, list[Proc], list[int], Proc]]:
    world_port, control = free_service_port(), free_port()
    stacks = loopback_stack(tmp_path, world_port)
    world = Proc([sys.executable, "-m", "globalaccel.emulated.world", "--stack", "dev", "--stacks-dir", str(stacks),
                  "--port", str(world_port), "--control-port", str(control)])
    wait_for_port(control)
    topo = load_stack("dev", stacks)
    results = {c: free_port() for c in topo.center_ids}
    dns_ports = [free_port() for _ in topo.center_ids]
    procs = []
    for j, center in enumerate(topo.center_ids):
        peers = [f"--peer={other}=http://127.0.0.1:{results[other]}" for other in topo.center_ids if other != center]
        procs.append(Proc([CLI, "up", "--stack", "dev", "--stacks-dir", str(stacks), "--vantage", center, "--source-address",
                           center_address(j), "--measurements-port", str(results[center]), *peers, "--backend", "embedded",
                           "--dns-port", str(dns_ports[j]), "--metrics-port", str(free_port()), "--state-dir", str(tmp_path / center),
                           "--interval", "1"]))
    try:
        yield stacks, control, procs, dns_ports, world
    finally:
        for p in procs:
            p.stop()
        world.stop()


def fault(control: int, item: dict[str, object]) -> None:
    request = urllib.request.Request(f"http://127.0.0.1:{control}/faults", data=json.dumps([item]).encode(), method="POST")
    urllib.request.urlopen(request, timeout=5).close()


def test_quorum_across_processes_failover_and_a_lost_peer(cluster: tuple[Path, int, list[Proc], list[int], Proc]) -> None:
    stacks, control, procs, dns_ports, _world = cluster
    topo = load_stack("dev", stacks)
    us = procs[0]
    # Up needs 3 of 4 vantages: only reachable through the peers' pulled results.
    wait_for(lambda: "edges 40/40 up" in us.status() and "centers 4/4" in us.status(), 60, "quorum through peers", procs)
    first = answers(dns_ports[0])
    assert first, "the leader of this state dir serves measured answers"
    victim = next(e for e in topo.edges if any(address in first for _, address in e.center_addresses))
    victim_addresses = {address for _, address in victim.center_addresses}  # its address for every center
    fault(control, {"kind": "edge_down", "target": victim.id})
    wait_for(lambda: not victim_addresses & answers(dns_ports[0]), 30, "the killed edge to leave the answer", procs)
    # A prober lost entirely (its process stops): its paths go stale, not down; nothing else drains.
    procs[3].stop()
    start = us.cycles()
    wait_for(lambda: us.cycles() >= start + 4, 30, "four cycles without ap-southeast-1's prober", procs)
    assert "edges 39/40 up" in us.status() and "centers 4/4" in us.status()


def test_an_isolated_prober_serves_nothing(tmp_path: Path) -> None:
    """Alone, one vantage can never reach a quorum, so nothing is healthy and every answer is empty:
    unknown is never healthy."""
    world_port, control = free_service_port(), free_port()
    stacks = loopback_stack(tmp_path, world_port)
    world = Proc([sys.executable, "-m", "globalaccel.emulated.world", "--stack", "dev", "--stacks-dir", str(stacks),
                  "--port", str(world_port), "--control-port", str(control)])
    dns_port = free_port()
    try:
        wait_for_port(control)
        alone = Proc([CLI, "up", "--stack", "dev", "--stacks-dir", str(stacks), "--vantage", "us-east-1", "--source-address",
                      center_address(0), "--dns-port", str(dns_port), "--metrics-port", str(free_port()),
                      "--state-dir", str(tmp_path / "s"), "--interval", "1"])
        try:
            wait_for(lambda: alone.cycles() >= 3, 30, "three cycles", [alone])
            assert "edges 0/40 up" in alone.status()
            assert answers(dns_port) == set()
        finally:
            alone.stop()
    finally:
        world.stop()
