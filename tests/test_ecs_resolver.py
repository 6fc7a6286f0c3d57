"""ECS through a real caching resolver: Debian's unbound with its `subnetcache` module, started on loopback,
in front of the embedded server answering prod's table by cell.

Clients of different cells and countries, some of them in networks side by side, ask through unbound in
sequence with source prefixes from /8 to /32 (and IPv6 from /32 to /128). What each client gets is judged
against facts the server did not produce: the client's own record in the network database, read with
MaxMind's reader, placed in the nearest cell of its country by great-circle distance here; the routing
table's decision for that cell; and the residency rules' whole-path check. A negative control serves the
same table with the scope a naive server echoes (the source prefix): the same sequence then hands some
client another cell's or another country's answer from unbound's cache, so this test can fail.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import itertools
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.edns
import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import maxminddb
import pytest

from globalaccel.answers import Answers, Served
from globalaccel.dns.backend import OwnedZone, publish
from globalaccel.dns.embedded import DnsResponder
from globalaccel.dns.embedded_backend import EmbeddedBackend, empty_snapshot
from globalaccel.geo import great_circle_km
from globalaccel.locate import Location, NetworkMap
from globalaccel.path_judge import PathJudge
from globalaccel.routing.summary import route_table
from globalaccel.topology import load_stack
from tests.conftest import STACKS
from tests.services import free_port
from tests.test_dns_embedded import RunningServer

PROD = load_stack("prod", STACKS)
pytestmark = pytest.mark.skipif(shutil.which("unbound") is None, reason="unbound is installed by scripts/system-deps")


@functools.lru_cache(maxsize=1)
def world() -> tuple[NetworkMap, Answers]:
    assert PROD.client_networks is not None
    table = route_table(PROD)
    return NetworkMap.from_mmdb(PROD.client_networks, PROD.cells), Answers.from_table(table, PROD)


class NaiveScope:
    """The bug this issue fixes: the answer of the source prefix's first address, scope = the source prefix."""

    def __init__(self, inner: NetworkMap) -> None:
        self.inner = inner

    def locate(self, address: str, srclen: int | None = None) -> tuple[Location | None, int]:
        ip = ipaddress.ip_address(address)
        length = ip.max_prefixlen if srclen is None else srclen
        first = ipaddress.ip_network(f"{address}/{length}", strict=False).network_address
        location, _ = self.inner.locate(str(first), ip.max_prefixlen)
        return location, length

    def locate_prefix(self, family: int, first: int, srclen: int) -> tuple[Location | None, int]:
        return self.locate(str(ipaddress.IPv4Address(first) if family == 4 else ipaddress.IPv6Address(first)), srclen)


@dataclass(frozen=True)
class Client:
    address: str
    country: str
    cell: str  # from the database record, placed here independently of the locator
    network: ipaddress.IPv4Network | ipaddress.IPv6Network  # the database network holding the address


def client_at(address: str) -> Client:
    assert PROD.client_networks is not None
    with maxminddb.open_database(str(PROD.client_networks)) as reader:
        record, prefixlen = reader.get_with_prefix_len(address)
    assert isinstance(record, dict), address
    code = str(record["country"]["iso_code"])  # type: ignore[index, call-overload]
    lat, lon = float(record["location"]["latitude"]), float(record["location"]["longitude"])  # type: ignore[index, arg-type, call-overload]
    cell = min((c for c in PROD.cells if c.country == code), key=lambda c: (great_circle_km(c.lat, c.lon, lat, lon), c.id))
    return Client(address, code, cell.id, ipaddress.ip_network(f"{address}/{prefixlen}", strict=False))


def neighbours() -> list[tuple[Client, Client]]:
    """Pairs of clients in adjacent networks of the database with different answers: the same country in two
    cells, a served country beside a fail-closed one, two countries under different rules."""
    located, answers = world()
    ranges = located.ranges(4)
    wanted: dict[str, tuple[Client, Client]] = {}
    for (net_a, loc_a), (net_b, loc_b) in itertools.pairwise(ranges):
        a, b = ipaddress.ip_network(net_a), ipaddress.ip_network(net_b)
        if int(a.broadcast_address) + 1 != int(b.network_address) or a.prefixlen < 18 or b.prefixlen < 18:
            continue  # side by side, and small enough that /16 and /12 source prefixes span both
        if loc_a.cell is None or loc_b.cell is None or loc_a.cell == loc_b.cell:
            continue
        served_a = isinstance(answers.cell(loc_a.cell), Served)
        served_b = isinstance(answers.cell(loc_b.cell), Served)
        if loc_a.countries != loc_b.countries:
            kind = "served beside fail-closed" if served_a != served_b else "two countries" if served_a else ""
        else:
            kind = "two cells of one country" if served_a and served_b else ""
        if kind and kind not in wanted:
            wanted[kind] = (client_at(str(a.network_address + 1)), client_at(str(b.network_address + 1)))
        if len(wanted) == 3:
            break
    kinds = {"served beside fail-closed", "two countries", "two cells of one country"}
    assert len(wanted) == 3, f"the database has no example of {kinds - set(wanted)}"
    return list(wanted.values())


def ipv6_clients() -> list[Client]:
    located, answers = world()
    picked: dict[str, Client] = {}
    for net, loc in located.ranges(6):
        if loc.cell is None or loc.countries[0] in picked:
            continue
        if loc.countries[0] in ("GB", "DE", "RU") or (len(picked) < 2 and isinstance(answers.cell(loc.cell), Served)):
            picked[loc.countries[0]] = client_at(str(ipaddress.ip_network(net).network_address + 5))
        if len(picked) >= 4:
            break
    return list(picked.values())


class Unbound:
    def __init__(self, workdir: Path, upstream_port: int) -> None:
        self.port = free_port()
        conf = workdir / "unbound.conf"
        conf.write_text(f"""server:
  interface: 127.0.0.1
  port: {self.port}
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "{workdir}"
  pidfile: ""
  use-syslog: no
  logfile: ""
  verbosity: 0
  access-control: 127.0.0.0/8 allow
  do-not-query-localhost: no
  module-config: "subnetcache iterator"
  send-client-subnet: 127.0.0.1
  client-subnet-always-forward: yes
  max-client-subnet-ipv4: 32
  max-client-subnet-ipv6: 128
  qname-minimisation: no
  auto-trust-anchor-file: ""
stub-zone:
  name: "{PROD.zone}."
  stub-addr: 127.0.0.1@{upstream_port}
""")
        subprocess.run(["unbound-checkconf", str(conf)], check=True, capture_output=True)
        self.proc = subprocess.Popen(["unbound", "-c", str(conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                dns.query.udp(dns.message.make_query(f"{PROD.zone}.", "SOA"), "127.0.0.1", port=self.port, timeout=0.5)
                return
            except (dns.exception.Timeout, OSError):
                time.sleep(0.1)
        self.proc.kill()
        raise RuntimeError(f"unbound did not start: {self.proc.stdout.read() if self.proc.stdout else b''!r}")

    def ask(self, address: str, srclen: int) -> tuple[set[str], int]:
        query = dns.message.make_query(PROD.service_name, "A", use_edns=0, options=[dns.edns.ECSOption(address, srclen)])
        reply = dns.query.udp(query, "127.0.0.1", port=self.port, timeout=5)
        assert reply.rcode() == dns.rcode.NOERROR, dns.rcode.to_text(reply.rcode())
        return {rr.address for rrset in reply.answer if rrset.rdtype == dns.rdatatype.A for rr in rrset}, reply.rcode()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@contextlib.contextmanager
def serve(tmp_path: Path, naive: bool, local_country: str | None = None) -> Iterator[tuple[Unbound, DnsResponder]]:
    located, answers = world()
    locator = NaiveScope(located) if naive else located
    responder = DnsResponder(empty_snapshot(PROD, "127.0.0.1"), locator, local_country, judge=PathJudge(PROD).allows)
    publish(OwnedZone(EmbeddedBackend(PROD, responder)), answers)  # the loop's publish path
    with RunningServer(responder) as server:
        resolver = Unbound(tmp_path, server.port)
        try:
            yield resolver, responder
        finally:
            resolver.stop()


def lawful_for(country: str, addresses: set[str]) -> bool:
    judge = PathJudge(PROD)
    return all(judge.allows(country, a) for a in addresses)


def breaches(resolver: Unbound, clients: list[Client], prefixes: list[int]) -> list[str]:
    """Ask in sequence, each prefix for every client in turn (so a wrongly cached answer meets its neighbour);
    return what went wrong, judged from the database record, the table and the rules."""
    _, answers = world()
    problems: list[str] = []
    for srclen in prefixes:
        for client in clients:
            got, _ = resolver.ask(client.address, srclen)
            decision = answers.cell(client.cell)
            own = set(decision.addresses) if isinstance(decision, Served) else set()
            inside = client.network.prefixlen <= srclen  # the source prefix lies in the client's own network
            if not lawful_for(client.country, got):
                problems.append(f"{client.address}/{srclen} ({client.country}, {client.cell}): unlawful answer {sorted(got)}")
            elif inside and got != own:
                problems.append(f"{client.address}/{srclen} ({client.cell}): got {sorted(got)}, its cell's answer is {sorted(own)}")
    return problems


# Wide before narrow: a wrongly scoped wide answer, once cached, would be handed to the narrower queries of
# every client inside it.
V4_PREFIXES = [16, 24, 32, 8, 24, 12, 28, 20, 32]


def test_every_client_gets_its_own_cells_answer_through_a_caching_resolver(tmp_path: Path) -> None:
    clients = [c for pair in neighbours() for c in pair]
    six = ipv6_clients()
    assert len(six) >= 2
    with serve(tmp_path, naive=False) as (resolver, responder):
        assert breaches(resolver, clients, V4_PREFIXES) == []
        assert breaches(resolver, six, [32, 48, 128, 56, 40, 64]) == []
        # The resolver did cache: asking everything again reaches the server no more.
        before = responder.stats.queries
        assert breaches(resolver, clients, [24, 32]) == []
        assert responder.stats.queries == before


def test_the_naive_scope_breaches_through_the_same_resolver(tmp_path: Path) -> None:
    """Negative control: the same clients, table and resolver, with scope = source prefix."""
    clients = [c for pair in neighbours() for c in pair]
    with serve(tmp_path, naive=True) as (resolver, _):
        found = breaches(resolver, clients, V4_PREFIXES)
        # Another cell's answer to a client inside its own network, and another country's to a client whose
        # rules forbid it: both only through the resolver's cache.
        assert any("its cell's answer is" in p for p in found), found
        assert any("unlawful answer" in p for p in found), found


def test_a_prefix_that_only_starts_in_a_special_block_answers_no_one_for_the_resolver(tmp_path: Path) -> None:
    """0.0.0.0/1 starts in 0.0.0.0/8 (not routable) and holds most of the public IPv4 space. Asked first, it
    must not be answered for the resolver itself (here placed in DE by --local-country, as a public resolver's
    own address would be placed somewhere) with scope /1: unbound would hand DE's edges to every client in
    0.0.0.0/1 for the TTL, fail-closed countries' included. Found by review; fails without the fix."""
    located, answers = world()
    chosen: dict[str, Client] = {}
    for network, location in located.ranges(4):
        net = ipaddress.ip_network(network)
        if int(net.network_address) >> 31 or net.prefixlen < 16 or location.cell is None or len(location.countries) > 1:
            continue
        served = isinstance(answers.cell(location.cell), Served)
        kind = "served" if served else "fail-closed"
        if location.countries[0] != "DE" and sum(k.startswith(kind) for k in chosen) < 3:
            chosen[f"{kind}-{location.countries[0]}"] = client_at(str(net.network_address + 1))
        if len(chosen) >= 6:
            break
    assert any(k.startswith("fail-closed") for k in chosen) and any(k.startswith("served") for k in chosen), chosen
    clients = list(chosen.values())
    with serve(tmp_path, naive=False, local_country="DE") as (resolver, _):
        resolver.ask("0.0.0.0", 1)
        assert breaches(resolver, clients, [24, 32, 16]) == []
