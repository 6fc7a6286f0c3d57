"""`globalaccel up --stack dev --local` end to end: a real process with the emulated world, probers,
loop, embedded DNS and metrics, driven through its fault API and queried with dnspython."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dns.edns
import dns.message
import dns.query
import pytest

from globalaccel.control.decisionlog import verify_chain
from globalaccel.topology import load_stack
from tests.conftest import ROOT, STACKS
from tests.services import free_port, free_service_port
from tests.test_dns_embedded import NETWORKS

DEV = load_stack("dev", STACKS)
CLI = str(ROOT / ".venv" / "bin" / "globalaccel")


class UpProcess:
    def __init__(self, state_dir: Path, interval: float = 1.0) -> None:
        self.dns_port, self.metrics_port = free_port(), free_port()
        self.world_port, self.control_port = free_service_port(), free_port()
        self.state_dir = state_dir
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [CLI, "up", "--stack", "dev", "--local", "--interval", str(interval), "--dns-port", str(self.dns_port),
             "--metrics-port", str(self.metrics_port), "--world-port", str(self.world_port), "--control-port", str(self.control_port),
             "--state-dir", str(state_dir)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 40.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"up exited early ({self.proc.returncode}):\n" + "\n".join(self.lines[-30:]))
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}:\n" + "\n".join(self.lines[-15:]))

    def status(self) -> dict[str, Any]:
        """The loop's /status JSON (typed fields; the human status line is not parsed)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/status", timeout=5) as response:
                data: dict[str, Any] = json.loads(response.read())
                return data
        except OSError:
            return {}  # not listening yet

    def cycles(self) -> int:
        return int(self.status().get("cycles", 0))

    def last_status(self) -> dict[str, int]:
        status = self.status()
        return {"edges": int(status["healthy_edges"]), "centers": int(status["healthy_centers"])}

    def fault(self, *faults: dict[str, object]) -> None:
        request = urllib.request.Request(f"http://127.0.0.1:{self.control_port}/faults", data=json.dumps(list(faults)).encode(),
                                         method="POST")
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 200

    def answers(self, country: str) -> set[str]:
        address, prefix = NETWORKS[country].split("/")
        query = dns.message.make_query(DEV.service_name, "A", use_edns=0, options=[dns.edns.ECSOption(address, int(prefix))])
        response = dns.query.udp(query, "127.0.0.1", port=self.dns_port, timeout=3)
        return {rr.address for rrset in response.answer for rr in rrset}

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=30)
        self.reader.join(5)
        return code


@pytest.fixture
def up(tmp_path: Path) -> Iterator[UpProcess]:
    running = UpProcess(tmp_path / "state")
    try:
        running.wait_for(lambda: running.cycles() >= 1, what="the first cycle")
        yield running
    finally:
        running.stop()


def last_routes(state_dir: Path) -> dict[str, dict[str, object]]:
    """Latest route of every cell, replayed from the decision log (each entry holds changed cells)."""
    entries, problems = verify_chain(state_dir / "decisions.jsonl")
    assert problems == []
    routes: dict[str, dict[str, object]] = {}
    for entry in entries:
        routes.update(entry["routes"])
    return routes


def edge_addresses(route: dict[str, object]) -> set[str]:
    """The addresses a route's answer carries: each edge's address for the route's center."""
    ids, center = route["edges"], route["center"]
    assert isinstance(ids, list) and isinstance(center, str)
    return {DEV.edge_by_id[e].address_for(center) for e in ids}


def test_serves_measured_answers_and_metrics(up: UpProcess) -> None:
    routes = last_routes(up.state_dir)
    for country in ("DE", "US", "GB", "IN"):
        assert up.answers(country) == edge_addresses(routes[country]), country
        assert DEV.residency.allows(country, str(routes[country]["center"]))
    assert up.answers("RU") == set()  # strict, no center: fail closed
    with urllib.request.urlopen(f"http://127.0.0.1:{up.metrics_port}/metrics", timeout=5) as response:
        text = response.read().decode()
    assert 'globalaccel_edge_up{edge="de-berlin-1"' in text and "globalaccel_residency_violations 0.0" in text
    assert re.search(r'globalaccel_probes_total\{result="ok",vantage="eu-central-1"\} [1-9]', text)
    assert up.last_status() == {"edges": 40, "centers": 4}
    # The rule set that produced the table is named in every decision-log entry and in /status.
    entries, _ = verify_chain(up.state_dir / "decisions.jsonl")
    assert entries and {e["rules_hash"] for e in entries} == {DEV.residency.rules_hash} == {up.status()["rules_hash"]}


def test_center_failover_keeps_residency_and_edge_kill_removes_answers(up: UpProcess) -> None:
    cycles = up.cycles()
    up.fault({"kind": "center_down", "target": "eu-central-1"})
    up.wait_for(lambda: up.cycles() > cycles and up.last_status()["centers"] == 3, what="eu-central-1 drained")
    routes = last_routes(up.state_dir)
    de, gb = routes["DE"], routes["GB"]
    assert de["center"] == "us-east-1" and gb["center"] == "us-east-1"  # the other allowed center for GDPR / UK GDPR
    assert up.answers("DE") == edge_addresses(de) != set()
    for cell, route in routes.items():
        if route["center"] is not None:
            assert DEV.residency.allows(cell, str(route["center"])), cell
            assert route["center"] != "eu-central-1"
    victim = next(iter(de["edges"]))  # type: ignore[call-overload]
    up.fault({"kind": "edge_down", "target": victim})
    victim_address = DEV.edge_by_id[victim].address_for("us-east-1")
    up.wait_for(lambda: victim_address not in up.answers("DE"), what="the killed edge to leave DE's answer")
    assert up.answers("DE")


def test_gulf_fails_over_only_where_its_rules_let_it(up: UpProcess) -> None:
    """Saudi Arabia and the UAE prefer me-central-1; their rules let traffic be terminated in the GCC or
    the EEA only, so with me-central-1 down they move to eu-central-1, never to us-east-1 or Singapore.
    Russia (strict, no center) still gets nothing."""
    up.fault({"kind": "center_down", "target": "me-central-1"})
    up.wait_for(lambda: up.last_status()["centers"] == 3, what="me-central-1 drained")
    routes = last_routes(up.state_dir)
    assert routes["SA"]["center"] == "eu-central-1" and routes["AE"]["center"] == "eu-central-1"
    assert routes["RU"]["center"] is None


def test_one_cut_off_vantage_drains_nothing(up: UpProcess) -> None:
    """us-east-1's prober reaches nothing (a partition on its side): every one of its paths is down,
    but it is one vantage of four, so no edge and no center may change health."""
    entries_before = len(verify_chain(up.state_dir / "decisions.jsonl")[0])
    up.fault({"kind": "cut_vantage", "target": "us-east-1"})
    start = up.cycles()
    up.wait_for(lambda: up.cycles() >= start + 5, what="five cycles with us-east-1 cut off")
    assert up.last_status() == {"edges": 40, "centers": 4}
    entries, problems = verify_chain(up.state_dir / "decisions.jsonl")
    assert problems == []
    assert all(entry["reasons"]["health"] == {} for entry in entries[entries_before:])


def settled(up: UpProcess, quiet_cycles: int = 4) -> Callable[[], bool]:
    """True once the table has not changed for `quiet_cycles` cycles (measurements converged)."""
    marks: dict[int, int] = {}

    def check() -> bool:
        path = up.state_dir / "decisions.jsonl"
        if not path.exists():
            return False
        now = up.cycles()  # one reading: the loop may complete a cycle between two
        marks[now] = len(path.read_text().splitlines())
        return now > quiet_cycles and now - quiet_cycles in marks and marks[now - quiet_cycles] == marks[now]

    return check


def test_restart_restores_state_and_does_not_flap(tmp_path: Path) -> None:
    """The restored view is the table that was served (nothing is logged at restart, answers come at
    once, before any probe), and afterwards no cell flaps back to a route it just left. New
    measurements may still move a route once the hysteresis margin holds: that is routing, not a flap."""
    state = tmp_path / "state"
    first = UpProcess(state)
    first.wait_for(settled(first), timeout=90, what="a settled table")
    answers = first.answers("DE")
    assert first.stop() == 0
    assert any(line.startswith("stopped after") for line in first.lines)  # SIGTERM: a clean exit
    entries_before = len(verify_chain(state / "decisions.jsonl")[0])
    second = UpProcess(state, interval=3.0)  # its first probe cycle ends well after the restored one is checked
    try:
        second.wait_for(lambda: any("restored state" in line for line in second.lines), what="restored state")
        assert second.answers("DE") == answers  # served at once from the restored view, before any probe
        assert len(verify_chain(state / "decisions.jsonl")[0]) == entries_before  # restoring changed nothing
        second.wait_for(lambda: second.cycles() >= 5, what="five cycles after restart")
        entries, problems = verify_chain(state / "decisions.jsonl")
        assert problems == []
        routes: dict[str, list[tuple[object, tuple[str, ...]]]] = {}
        for number, entry in enumerate(entries):
            for cell, route in entry["routes"].items():
                key = (route["center"], tuple(route["edges"]))
                if number < entries_before:
                    routes[cell] = [key]  # the route served when the loop stopped
                else:
                    routes.setdefault(cell, []).append(key)  # every change since the restart
        for cell, sequence in routes.items():
            for a, b, c in zip(sequence, sequence[1:], sequence[2:], strict=False):
                assert not (a == c != b), f"{cell} flapped after the restart: {a} -> {b} -> {c}"
    finally:
        second.stop()


def test_second_instance_is_not_leader(tmp_path: Path) -> None:
    state = tmp_path / "state"
    leader = UpProcess(state)
    try:
        leader.wait_for(lambda: leader.cycles() >= 1, what="leader cycle")
        standby = UpProcess(state)
        try:
            standby.wait_for(lambda: standby.cycles() >= 2, what="standby cycles")
            with urllib.request.urlopen(f"http://127.0.0.1:{standby.metrics_port}/metrics", timeout=5) as response:
                assert "globalaccel_leader 0.0" in response.read().decode()
            assert standby.answers("DE") == set()  # a standby publishes nothing
        finally:
            standby.stop()
    finally:
        leader.stop()
    assert os.path.exists(state / "leader.lock")


def test_once_dry_run_exits_after_one_cycle_without_publishing(tmp_path: Path) -> None:
    ports = [free_port(), free_port(), free_service_port(), free_port()]
    result = subprocess.run([CLI, "up", "--stack", "dev", "--local", "--once", "--dry-run", "--interval", "1", "--dns-port", str(ports[0]),
                             "--metrics-port", str(ports[1]), "--world-port", str(ports[2]), "--control-port", str(ports[3]),
                             "--state-dir", str(tmp_path / "state")], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "stopped after 1 cycles" in result.stdout and "dry run" in result.stdout
    entries, problems = verify_chain(tmp_path / "state" / "decisions.jsonl")
    assert problems == [] and len(entries) == 1  # computed and logged, but nothing was published


def test_scenario_file_drives_faults_and_bad_scenarios_are_named(tmp_path: Path) -> None:
    from globalaccel.emulated.world import Faults, load_scenario

    good = tmp_path / "scenario.yaml"
    good.write_text("faults:\n  - {at: 0, kind: edge_down, target: de-berlin-1}\n  - {at: 5, kind: clear}\n")
    events = load_scenario(good)
    assert [at for at, _ in events] == [0.0, 5.0]
    faults = Faults()
    faults.apply(events[0][1])
    assert faults.down == {"de-berlin-1"}
    bad = tmp_path / "bad.yaml"
    bad.write_text("faults:\n  - {at: 1, kind: meteor, target: x}\n")
    with pytest.raises(ValueError, match=r"bad.yaml: faults\[0\]: needs 'at' \(seconds\) and a 'kind'"):
        load_scenario(bad)
    with pytest.raises(ValueError, match="unknown fault kind 'meteor'"):
        faults.apply({"kind": "meteor"})
    with pytest.raises(ValueError, match="needs a 'target'"):
        faults.apply({"kind": "edge_down"})


def test_a_returning_leader_republishes_its_table(tmp_path: Path) -> None:
    """Leader publishes T, loses the lease (another instance takes it and may publish meanwhile), regains
    it with T unchanged: it must publish T again rather than assume the backend still serves it.
    Real components: the file lease (a second holder really takes it) and the embedded sink."""
    from globalaccel.app.up import emulated_paths
    from globalaccel.control.loop import ControlLoop
    from globalaccel.control.state import FileLease
    from globalaccel.dns.backend import OwnedZone, sync
    from globalaccel.dns.embedded import DnsResponder
    from globalaccel.dns.embedded_backend import EmbeddedBackend, empty_snapshot

    state = tmp_path / "state"
    responder = DnsResponder(empty_snapshot(DEV, "127.0.0.1"))
    zone = OwnedZone(EmbeddedBackend(DEV, responder))
    loop = ControlLoop(DEV, zone, state, FileLease(state))
    # Every path measured healthy `steadySamples` times: everything comes up, and the figures have settled (routes
    # placed earlier are provisional, placed afresh each cycle: the table could change with nothing else changing).
    for k in range(DEV.routing.hysteresis.steady_samples):
        for path in emulated_paths(DEV, 1):
            loop.record(path, 10.0, 0.05 * (k + 1))
    loop.cycle(now=1.0)
    first = loop.cycle(now=1.2)  # dev's edges are beyond their budgets: relief moves held cells once, then nothing moves
    assert first.published and first.leader
    served = dict(responder.snapshot.answers)
    assert served
    loop.lease.release()
    other = FileLease(state)
    assert other.acquire()  # another instance is leader now, and publishes something else: no answers at all
    sync(zone, [])
    assert responder.snapshot.answers == {}
    standby = loop.cycle(now=2.0)
    assert not standby.leader and not standby.published
    other.release()
    back = loop.cycle(now=3.0)
    assert back.leader and back.table_hash == first.table_hash
    assert back.published and responder.snapshot.answers == served  # republished against live state, not assumed
    loop.lease.release()


def test_a_cold_loop_holds_the_live_answers_until_it_has_fresh_measurements(tmp_path: Path) -> None:
    """A loop that starts with no (or stale) measurements computes a table with every target unknown:
    publishing it would withdraw the world. It holds the live answers instead, and publishes once its
    measurements are fresh. Real components: the embedded backend and the file lease."""
    from globalaccel.app.up import emulated_paths
    from globalaccel.control.loop import ControlLoop
    from globalaccel.control.state import FileLease
    from globalaccel.dns.backend import OwnedZone
    from globalaccel.dns.embedded import DnsResponder
    from globalaccel.dns.embedded_backend import EmbeddedBackend, empty_snapshot

    responder = DnsResponder(empty_snapshot(DEV, "127.0.0.1"))
    zone = OwnedZone(EmbeddedBackend(DEV, responder))
    warm = ControlLoop(DEV, zone, tmp_path / "a", FileLease(tmp_path / "a"))
    for t in (0.1, 0.2, 0.3):
        for path in emulated_paths(DEV, 1):
            warm.record(path, 10.0, t)
    assert warm.cycle(now=1.0).published
    served = dict(responder.snapshot.answers)
    assert served
    warm.lease.release()

    cold = ControlLoop(DEV, zone, tmp_path / "b", FileLease(tmp_path / "b"))  # a replacement with nothing measured yet
    held = cold.cycle(now=2.0)
    assert not held.published and held.error is not None and held.error.startswith("holding")
    assert responder.snapshot.answers == served  # nothing withdrawn
    stale = cold.cycle(now=500.0)  # still nothing fresh much later: still holding
    assert not stale.published and responder.snapshot.answers == served
    for t in (501.0, 502.0, 503.0):
        for path in emulated_paths(DEV, 1):
            cold.record(path, 10.0, t)
    assert cold.cycle(now=504.0).published
    assert set(responder.snapshot.answers) == set(served)


def through_answer(up: UpProcess, country: str) -> list[tuple[str, int, dict[str, Any]]]:
    """A client in `country` resolves the service name and sends a request through every answered
    address (the emulation's NAT maps it to the edge's loopback listener; the PROXY line carries the
    answered address, as a load balancer would). Returns (address, HTTP status, reply) per answer."""
    from globalaccel.emulated.world import client_endpoint

    out = []
    for address in sorted(up.answers(country)):
        host, port = client_endpoint(DEV, address, up.world_port)
        with socket.create_connection((host, port), timeout=5) as conn:
            conn.sendall(f"PROXY TCP4 127.0.0.1 {address} 40000 {port}\r\nGET / HTTP/1.0\r\n\r\n".encode())
            data = b""
            while chunk := conn.recv(4096):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        status = int(head.split()[1]) if head else 0
        out.append((address, status, json.loads(body) if status == 200 else {}))
    return out


def catalog_paths() -> dict[str, tuple[str, str]]:
    """Answer address -> (edge, center), read from the catalog CSV itself: independent of the code under
    test (topology.path_by_address), which the emulated edges use to forward."""
    lines = [line for line in (STACKS / "catalog" / "edges-dev.csv").read_text().splitlines() if not line.startswith("#")]
    out = {}
    for row in csv.DictReader(lines):
        for pair in row["addresses"].split():
            center, _, address = pair.partition("=")
            out[address] = (row["id"], center)
    return out


def test_client_traffic_ends_at_the_center_its_answer_promised(up: UpProcess) -> None:
    """Before, during and after a center failure: every request sent through an answered address ends at
    the center the loop decided for that country (its decision log), or fails while that center is down;
    it never ends at another center. The reply names the center listener actually reached."""
    catalog = catalog_paths()

    def check(country: str, allowed: set[str]) -> set[str]:
        reached = set()
        replies = through_answer(up, country)
        assert replies, f"{country} got no answer"
        for address, status, reply in replies:
            edge, center = catalog[address]
            if status == 200:
                assert reply == {"edge": edge, "center": center} and center in allowed, (country, address, reply)
                reached.add(center)
            else:
                assert status == 502 and center == "eu-central-1", (country, address, status)  # its center is down: no other
        return reached

    routes = last_routes(up.state_dir)
    for country in ("DE", "GB", "IN", "US"):
        assert check(country, {str(routes[country]["center"])}) == {routes[country]["center"]}
    cycles = up.cycles()
    up.fault({"kind": "center_down", "target": "eu-central-1"})
    during: set[str] = set()
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:  # the transition: old answers fail (502), new ones reach us-east-1
        during |= check("DE", {"eu-central-1", "us-east-1"})
        if up.cycles() > cycles and up.last_status()["centers"] == 3 and check("DE", {"us-east-1"}) == {"us-east-1"}:
            break
        time.sleep(0.3)
    assert check("DE", {"us-east-1"}) == {"us-east-1"} and check("GB", {"us-east-1"}) == {"us-east-1"}
    assert during <= {"us-east-1"}  # nothing was served by the down center, nor by any center but the new one
    up.fault({"kind": "clear"})
    up.wait_for(lambda: up.last_status()["centers"] == 4, what="eu-central-1 back")
    back = check("DE", {"eu-central-1", "us-east-1"})  # either is allowed; hysteresis decides when to move back
    assert back and back <= {"eu-central-1", "us-east-1"}


def test_a_dated_rule_applies_itself_on_its_day(tmp_path: Path) -> None:
    """Chile's rule changes on 2026-12-01 (Law 21.719 in force): the running loop re-resolves the rules
    at the day boundary, and the decision log's entry says which day's rules made the table. Real
    components: the embedded backend and the file lease; the day is injected."""
    import datetime as dt

    from globalaccel.app.up import emulated_paths
    from globalaccel.control.loop import ControlLoop
    from globalaccel.control.state import FileLease
    from globalaccel.dns.backend import OwnedZone
    from globalaccel.dns.embedded import DnsResponder
    from globalaccel.dns.embedded_backend import EmbeddedBackend, empty_snapshot

    day = [dt.date(2026, 11, 30)]
    zone = OwnedZone(EmbeddedBackend(DEV, DnsResponder(empty_snapshot(DEV, "127.0.0.1"))))
    loop = ControlLoop(DEV, zone, tmp_path / "state", FileLease(tmp_path / "state"), today=lambda: day[0])
    for t in (0.1, 0.2, 0.3):
        for path in emulated_paths(DEV, 1):
            loop.record(path, 10.0, t)
    loop.cycle(now=1.0)
    assert loop.topology.residency.rule_for("CL").name == "chile-19628"
    day[0] = dt.date(2026, 12, 1)
    loop.cycle(now=2.0)
    assert loop.topology.residency.rule_for("CL").name == "chile-21719"
    assert loop.status()["rules_as_of"] == "2026-12-01"
    from globalaccel.control.decisionlog import verify_chain

    entries, problems = verify_chain(tmp_path / "state" / "decisions.jsonl")
    assert problems == [] and [e["rules_as_of"] for e in entries] == ["2026-11-30", "2026-12-01"]  # the switch is logged
    loop.lease.release()


def test_withdrawing_service_on_unknown_health_is_held_until_a_quorum_sees_the_center_down(tmp_path: Path) -> None:
    """Unknown is not down. eu-central-1's probe paths stop reporting (a prober partitioned, a stall):
    the new table would take Belarus and Azerbaijan (strict, eu-central-1 only) off the air, and with no
    vantage having seen the center down that withdrawal is held, the old answers kept. Once a quorum of
    vantages see it down, the same withdrawal is published: strict countries still fail closed."""
    from globalaccel.app.up import emulated_paths
    from globalaccel.control.loop import ControlLoop
    from globalaccel.control.state import FileLease
    from globalaccel.dns.backend import OwnedZone
    from globalaccel.dns.embedded import DnsResponder
    from globalaccel.dns.embedded_backend import EmbeddedBackend, empty_snapshot

    responder = DnsResponder(empty_snapshot(DEV, "127.0.0.1"))
    zone = OwnedZone(EmbeddedBackend(DEV, responder))
    loop = ControlLoop(DEV, zone, tmp_path / "s", FileLease(tmp_path / "s"), max_withdraw_share=0.0)
    for t in (0.1, 0.2, 0.3):
        for path in emulated_paths(DEV, 1):
            loop.record(path, 10.0, t)
    assert loop.cycle(now=1.0).published
    served = dict(responder.snapshot.answers)
    assert "BY" in str(served)
    others = [p for p in emulated_paths(DEV, 1) if p.target != "eu-central-1"]
    for t in (200.0, 201.0, 202.0):
        for path in others:
            loop.record(path, 10.0, t)
    held = loop.cycle(now=203.0)
    assert "BY" in held.fail_closed and not held.published, held
    assert held.error is not None and "without a quorum of vantages" in held.error
    assert responder.snapshot.answers == served
    # A restart (same state folder) in the middle of it does not forget what is served: still held.
    loop.lease.release()
    loop = ControlLoop(DEV, zone, tmp_path / "s", FileLease(tmp_path / "s"), max_withdraw_share=0.0)
    for path in others:
        loop.record(path, 10.0, 202.5)
    again = loop.cycle(now=203.5)
    assert not again.published and again.error is not None and "without a quorum" in again.error, again
    assert responder.snapshot.answers == served
    down = [p for p in emulated_paths(DEV, 1) if p.target == "eu-central-1"]
    for t in (204.0, 205.0, 206.0):
        for path in others:
            loop.record(path, 10.0, t)
        for path in down:
            loop.record(path, None, t)
    seen = loop.cycle(now=207.0)
    assert seen.published and "BY" in seen.fail_closed, seen


def test_a_saved_state_with_an_impossible_latency_is_refused_naming_its_file(tmp_path: Path) -> None:
    """A restart reads the latencies the loop saved. A hand-edited or corrupted figure (Infinity, 1e308: sums of
    them overflow, where costs no longer order edges) stops the start with an operator's error naming the file and
    the row, not a table routed on it. Real components: the state file, the embedded sink."""
    from globalaccel.control.loop import ControlLoop
    from globalaccel.control.state import FileLease, StateError
    from globalaccel.dns.backend import OwnedZone
    from globalaccel.dns.embedded import DnsResponder
    from globalaccel.dns.embedded_backend import EmbeddedBackend, empty_snapshot

    state = tmp_path / "state"
    state.mkdir()
    center, edge = DEV.center_ids[0], DEV.edges[0].id
    saved = json.dumps({"stack": DEV.stack, "router": {"cells": {}}, "health": {}, "latency": [[center, edge, float("inf"), 5.0]]})
    assert "Infinity" in saved  # Python's json writes it, and reads it back
    (state / "state.json").write_text(saved, encoding="utf-8")
    zone = OwnedZone(EmbeddedBackend(DEV, DnsResponder(empty_snapshot(DEV, "127.0.0.1"))))
    with pytest.raises(StateError, match=r"state\.json: latency state is invalid \(latency row 0: expected"):
        ControlLoop(DEV, zone, state, FileLease(state))
