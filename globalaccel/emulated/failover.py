"""A self-hosted data plane without its controller, on loopback: the emulated world, and an authoritative
server per center (`globalaccel dns serve --center`, each its own process) answering from the zone the
controller last published and its own view of center health. Used by the failover benchmark and its test.

The controller never runs here: everything after the zone file is written happens in the data plane.
A client in each country asks every live server with ECS (its country's network); each answered address
names its edge and the center the edge forwards to (the catalog), which is how the view is judged.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import dns.edns
import dns.message
import dns.query
import dns.rdatatype

from globalaccel.answers import Answers, Served
from globalaccel.dns.backend import OwnedZone, publish
from globalaccel.dns.embedded import DnsResponder
from globalaccel.dns.embedded_backend import EmbeddedBackend, empty_snapshot
from globalaccel.routing.summary import route_table
from globalaccel.topology import Topology


def judge_answers(topology: Topology, country: str, addresses: Iterable[str], where: str) -> tuple[set[str], list[str]]:
    """The centers a client of `country` was answered through, and every answer outside its allowed paths
    (each address names its edge and the center that edge forwards to: the catalog)."""
    centers: set[str] = set()
    wrong: list[str] = []
    for address in addresses:
        path = topology.path_by_address.get(address)
        if path is None:
            wrong.append(f"{country} {where}: {address} is no edge's")
            continue
        edge, center = path
        centers.add(center)
        why = topology.residency.path_violation(country, edge.country, edge.role, center)
        if why is not None:
            wrong.append(f"{country} {where}: {address} -> {edge.id} -> {center}: {why}")
    return centers, wrong


def server_address(index: int) -> str:
    return f"127.0.53.{index + 1}"


@dataclass
class DataPlane:
    topology: Topology
    answers: Answers
    world_port: int
    control_port: int
    dns_port: int
    servers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    networks: dict[str, str] = field(default_factory=dict)  # country -> an ECS network located in it
    world: subprocess.Popen[str] | None = None

    def fault(self, item: dict[str, str]) -> None:
        request = urllib.request.Request(f"http://127.0.0.1:{self.control_port}/faults", data=json.dumps(item).encode(), method="POST")
        with urllib.request.urlopen(request, timeout=5):
            pass

    def ask(self, center: str, country: str, timeout: float = 1.0) -> set[str]:
        """The A answers a client of `country` gets from `center`'s server (empty on no answer or no reply)."""
        query = dns.message.make_query(self.topology.service_name, dns.rdatatype.A)
        query.use_edns(0, options=[dns.edns.ECSOption.from_text(self.networks[country])])
        try:
            reply = dns.query.udp(query, server_address(self.topology.center_ids.index(center)), port=self.dns_port, timeout=timeout)
        except (dns.exception.Timeout, OSError):
            return set()
        return {r.address for rrset in reply.answer for r in rrset}

    def centers_answered(self, center: str, country: str) -> set[str]:
        return self.judge(center, country)[0]

    def judge(self, server: str, country: str, timeout: float = 1.0) -> tuple[set[str], list[str]]:
        """One query: the centers the answers lead to, and any answer outside the country's allowed paths."""
        return judge_answers(self.topology, country, self.ask(server, country, timeout), f"via {server}")

    def expected(self, down: set[str]) -> dict[str, str]:
        """Country -> the center it should be answered through with `down` centers lost: the first live center
        of its chain; a country with none keeps its chosen (dead) path, which its edges forward nowhere else."""
        out = {}
        for code, decision in self.answers.served_countries():
            if code not in self.networks:
                continue
            live = [p.center for p in decision.paths if p.center not in down]
            out[code] = live[0] if live else decision.center
        return out


def start_world(topology: Topology, stacks_dir: Path, port: int, control_port: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-m", "globalaccel.emulated.world", "--stack", topology.stack, "--stacks-dir", str(stacks_dir),
                             "--port", str(port), "--control-port", str(control_port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line or not json.loads(line).get("ready"):
        proc.kill()
        _, err = proc.communicate(timeout=10)
        raise RuntimeError(f"emulated world failed to start on ports {port}/{control_port}: {err.strip()[-500:]}")
    return proc


def start_server(plane: DataPlane, center: str, zone_file: Path, stacks_dir: Path) -> subprocess.Popen[bytes]:
    index = plane.topology.center_ids.index(center)
    cli = Path(sys.executable).parent / "globalaccel"
    proc = subprocess.Popen([str(cli), "dns", "serve", "--stack", plane.topology.stack, "--stacks-dir", str(stacks_dir), "--center", center,
                             "--zone-file", str(zone_file), "--emulated-port", str(plane.world_port), "--host", server_address(index),
                             "--port", str(plane.dns_port),
                             *(f"--nameserver={c}={server_address(j)}" for j, c in enumerate(plane.topology.center_ids))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    plane.servers[center] = proc
    return proc


@contextmanager
def data_plane(topology: Topology, stacks_dir: Path, zone_file: Path, networks: dict[str, str], ports: tuple[int, int, int],
               chains: bool = True) -> Iterator[DataPlane]:
    """World up, the all-healthy table published once to `zone_file` (without failover chains when
    `chains` is off: the zone as published before them), a server started in every center."""
    table = route_table(topology)
    answers = Answers.from_table(table, topology)
    backend = EmbeddedBackend(topology, DnsResponder(empty_snapshot(topology, "127.0.0.1")))
    backend.zone_file = zone_file
    publish(OwnedZone(backend), answers)
    if not chains:
        data = json.loads(zone_file.read_text())
        data["paths"] = {}
        zone_file.write_text(json.dumps(data))
    world_port, control_port, dns_port = ports
    plane = DataPlane(topology, answers, world_port, control_port, dns_port, networks=networks,
                      world=start_world(topology, stacks_dir, world_port, control_port))
    try:
        for center in topology.center_ids:
            start_server(plane, center, zone_file, stacks_dir)
        deadline = time.monotonic() + 60
        probe_country = next(iter(plane.expected(set())))
        for center in topology.center_ids:
            while not plane.ask(center, probe_country):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the server in {center} did not answer within 60 s")
                time.sleep(0.2)
        yield plane
    finally:
        for proc in plane.servers.values():
            proc.terminate()
        for proc in plane.servers.values():
            proc.wait(timeout=10)
        if plane.world is not None:
            plane.world.terminate()
            plane.world.wait(timeout=10)


def lose_center(plane: DataPlane, center: str, stacks_dir: Path, zone_file: Path,
                timeout_s: float = 30.0) -> tuple[float | None, list[str]]:
    """Kill `center` (its listener in the world and its DNS server) and measure, from the other servers,
    seconds until every country with a live allowed center is answered through the first one of its chain;
    every answer seen meanwhile is checked for residency. Restores the center afterwards."""
    server = plane.servers.pop(center)
    start = time.monotonic()
    server.kill()
    plane.fault({"kind": "center_down", "target": center})
    expected = plane.expected({center})
    survivors = [c for c in plane.topology.center_ids if c != center]
    violations: list[str] = []
    took: float | None = None
    pending = {(s, code) for s in survivors for code in expected}
    while time.monotonic() - start < timeout_s:
        for s, code in sorted(pending):
            centers, wrong = plane.judge(s, code)
            violations += wrong
            if centers == {expected[code]}:
                pending.discard((s, code))
        if not pending:
            took = time.monotonic() - start
            break
        time.sleep(0.1)
    server.wait(timeout=10)
    plane.fault({"kind": "clear", "target": center})
    start_server(plane, center, zone_file, stacks_dir)
    back = plane.expected(set())
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # every server back on the chosen centers before the next trial
        if all(plane.centers_answered(s, code) == {back[code]} for s in plane.topology.center_ids for code in list(back)[:5]):
            break
        time.sleep(0.2)
    return took, violations


def served_countries(answers: Answers) -> list[str]:
    return [code for code, d in answers.countries() if isinstance(d, Served)]


@dataclass
class Timeline:
    """A DNS client's view over time: per sample, (seconds since the event, server, country, centers answered
    through, unlawful answers). An empty set of centers is no answer (no reply, SERVFAIL or NODATA)."""

    samples: list[tuple[float, str, str, frozenset[str], tuple[str, ...]]] = field(default_factory=list)

    def violations(self) -> list[str]:
        return [w for *_, wrong in self.samples for w in wrong]

    def recovered_at(self, expected: dict[str, str]) -> float | None:
        """The time from which every (server, country) was answered as `expected` (a country absent from it
        fails closed: no answer), to the end of the run."""
        last_bad = 0.0
        seen_good = False
        for t, _, code, centers, wrong in self.samples:
            want = {expected[code]} if code in expected else set()
            if centers != want or wrong:
                last_bad, seen_good = t, False
            else:
                seen_good = True
        return last_bad if seen_good else None

    def unanswered_share(self) -> float:
        return sum(1 for s in self.samples if not s[3]) / max(1, len(self.samples))


def restart_everything(plane: DataPlane, stacks_dir: Path, zone_file: Path, down_s: float = 3.0,
                       watch_s: float = 30.0, world_lag_s: float = 5.0, countries: int | None = None) -> Timeline:
    """Every process of the data plane killed at once (the world's center and edge listeners, every center's
    DNS server); `down_s` later the servers start again, and the world `world_lag_s` after them. A client
    keeps asking every server for every country (every 0.1 s round) from the kill to `watch_s` after the
    world is back (the first `countries` of the plane's networks, all by default: a round must stay short
    next to the seconds being watched). Nothing but the zone file on disk survives. Every answer is judged
    for residency."""
    assert plane.world is not None
    timeline = Timeline()
    everything: list[subprocess.Popen[bytes] | subprocess.Popen[str]] = [plane.world, *plane.servers.values()]
    start = time.monotonic()
    for proc in everything:
        proc.kill()
    for proc in everything:
        proc.wait(timeout=10)

    asked = list(plane.networks)[:countries] if countries else list(plane.networks)

    def sample() -> None:
        for server in plane.topology.center_ids:
            for code in asked:
                # Loopback answers in well under a millisecond: a short wait keeps a round short while servers are dead.
                centers, wrong = plane.judge(server, code, timeout=0.05)
                timeline.samples.append((time.monotonic() - start, server, code, frozenset(centers), tuple(wrong)))

    while time.monotonic() - start < down_s:
        sample()
        time.sleep(0.1)
    # The servers come back first, into a world still down: they answer the zone file while they know
    # nothing (unknown is up), then, seeing no center at all, take themselves for cut off (SERVFAIL); the
    # world follows `world_lag_s` later, and they must find their way back to the published answers.
    for center in plane.topology.center_ids:
        start_server(plane, center, zone_file, stacks_dir)
    while time.monotonic() - start < down_s + world_lag_s:
        sample()
        time.sleep(0.1)
    plane.world = start_world(plane.topology, stacks_dir, plane.world_port, plane.control_port)
    while time.monotonic() - start < down_s + world_lag_s + watch_s:
        sample()
        time.sleep(0.1)
    return timeline


def principal_networks(topology: Topology) -> dict[str, str]:
    """Per country, a network the stack's locator places in the country's principal cell (and nowhere
    else): a client there gets exactly the country's answer, which is what `DataPlane.expected` judges."""
    from globalaccel.locate import NetworkMap, locator_for

    locator = locator_for(topology)
    if not isinstance(locator, NetworkMap):
        from globalaccel.audit.sources import representative_networks

        return {k: v for k, v in representative_networks().items() if k in topology.countries}
    principal = topology.principal_cell
    out: dict[str, str] = {}
    for location, networks in locator.sample_networks(1).items():
        if len(location.countries) == 1 and location.cell == principal.get(location.countries[0]) and ":" not in networks[0]:
            out.setdefault(location.countries[0], networks[0])
    return dict(sorted(out.items()))
