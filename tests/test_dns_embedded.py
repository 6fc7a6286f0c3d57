"""The embedded server on real UDP and TCP sockets on loopback, queried with dnspython (and dig)."""

from __future__ import annotations

import asyncio
import shutil
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator

import dns.edns
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from globalaccel.answers import Answers, Served
from globalaccel.dns.embedded import DnsResponder, ZoneSnapshot, locate_ip
from globalaccel.dns.embedded_backend import snapshot_for
from globalaccel.dns.embedded_server import EmbeddedDnsServer
from globalaccel.routing.summary import route_table
from globalaccel.topology import load_stack
from tests.conftest import STACKS

DEV = load_stack("dev", STACKS)
TABLE = route_table(DEV)
ANSWERS = Answers.from_table(TABLE, DEV)
SNAPSHOT = snapshot_for(DEV, ANSWERS)
SERVICE = DEV.service_name
# Networks iptocc places in a country (checked in test_networks_are_where_we_think).
NETWORKS = {"DE": "85.214.0.0/16", "RU": "5.255.255.0/24", "US": "8.8.8.0/24", "GB": "81.2.69.0/24", "IN": "103.21.124.0/24"}


class RunningServer:
    def __init__(self, responder: DnsResponder) -> None:
        self.responder = responder
        self.loop = asyncio.new_event_loop()
        self.server = EmbeddedDnsServer(responder, "127.0.0.1", 0)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> RunningServer:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    @property
    def port(self) -> int:
        return self.server.port


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with RunningServer(DnsResponder(SNAPSHOT)) as running:
        yield running


def ask(server: RunningServer, name: str, rdtype: str = "A", subnet: str | None = None, tcp: bool = False,
        edns: bool = True) -> dns.message.Message:
    options: list[dns.edns.Option] = []
    if subnet is not None:
        address, prefix = subnet.split("/")
        options.append(dns.edns.ECSOption(address, int(prefix)))
    query = dns.message.make_query(name, rdtype, use_edns=0 if edns or options else False, options=options)
    if tcp:
        return dns.query.tcp(query, "127.0.0.1", port=server.port, timeout=5)
    return dns.query.udp(query, "127.0.0.1", port=server.port, timeout=5)


def addresses(response: dns.message.Message) -> set[str]:
    return {rr.address for rrset in response.answer for rr in rrset if rrset.rdtype == dns.rdatatype.A}


def test_networks_are_where_we_think() -> None:
    for country, network in NETWORKS.items():
        assert locate_ip(network.split("/")[0]) == country


@pytest.mark.parametrize("country", sorted(NETWORKS))
def test_answers_follow_the_table_by_client_subnet(server: RunningServer, country: str) -> None:
    response = ask(server, SERVICE, subnet=NETWORKS[country])
    route = ANSWERS.country(country)
    assert response.rcode() == dns.rcode.NOERROR
    assert response.flags & dns.flags.AA and not response.flags & dns.flags.RA
    assert addresses(response) == (set(route.addresses) if isinstance(route, Served) else set())
    ecs = [o for o in response.options if isinstance(o, dns.edns.ECSOption)]
    assert len(ecs) == 1 and ecs[0].srclen == int(NETWORKS[country].split("/")[1])
    if not isinstance(route, Served):  # fail closed: NODATA with the SOA for negative caching, never an edge
        assert response.answer == [] and response.authority[0].rdtype == dns.rdatatype.SOA
    else:
        assert ecs[0].scopelen == ecs[0].srclen


def test_unknown_location_gets_no_answer_and_local_country_is_explicit() -> None:
    with RunningServer(DnsResponder(SNAPSHOT)) as plain:
        assert addresses(ask(plain, SERVICE)) == set()  # 127.0.0.1: nowhere, so nothing
    with RunningServer(DnsResponder(SNAPSHOT, local_country="DE")) as local:
        assert addresses(ask(local, SERVICE)) == set(SNAPSHOT.answers["DE"])


def test_zone_semantics(server: RunningServer) -> None:
    zone = DEV.zone
    soa = ask(server, zone, "SOA")
    assert soa.answer[0].rdtype == dns.rdatatype.SOA and soa.flags & dns.flags.AA
    ns = ask(server, zone, "NS")
    assert ns.answer[0][0].target.to_text() == f"ns1.{zone}."
    assert ns.additional[0][0].address == "127.0.0.1"  # glue
    nx = ask(server, f"nothing-here.{zone}")
    assert nx.rcode() == dns.rcode.NXDOMAIN and nx.authority[0].rdtype == dns.rdatatype.SOA
    nodata = ask(server, SERVICE, "AAAA", subnet=NETWORKS["DE"])
    assert nodata.rcode() == dns.rcode.NOERROR and nodata.answer == [] and nodata.authority
    refused = ask(server, "www.example.org")
    assert refused.rcode() == dns.rcode.REFUSED and not refused.answer
    anything = ask(server, SERVICE, "ANY", subnet=NETWORKS["DE"])
    assert len(anything.answer) == 1 and anything.answer[0].rdtype == dns.rdatatype.HINFO  # RFC 8482


def test_tcp_gives_the_same_answer(server: RunningServer) -> None:
    assert addresses(ask(server, SERVICE, subnet=NETWORKS["GB"], tcp=True)) == addresses(ask(server, SERVICE, subnet=NETWORKS["GB"]))


def test_truncation_then_tcp_fallback() -> None:
    many = {**SNAPSHOT.answers, "DE": tuple(f"198.18.{i // 250}.{i % 250 + 1}" for i in range(60))}
    snapshot = ZoneSnapshot(SNAPSHOT.origin, SNAPSHOT.service, SNAPSHOT.ns_host, SNAPSHOT.ns_address, many)
    with RunningServer(DnsResponder(snapshot, local_country="DE")) as running:
        udp = ask(running, SERVICE, edns=False)  # 60 A records do not fit 512 bytes
        assert udp.flags & dns.flags.TC and not udp.answer
        full = ask(running, SERVICE, edns=False, tcp=True)
        assert not full.flags & dns.flags.TC and len(addresses(full)) == 60


def test_new_table_swaps_in_atomically(server: RunningServer) -> None:
    before = addresses(ask(server, SERVICE, subnet=NETWORKS["US"]))
    swapped = dict(SNAPSHOT.answers)
    swapped["US"] = ("198.19.9.9",)
    server.responder.swap(ZoneSnapshot(SNAPSHOT.origin, SNAPSHOT.service, SNAPSHOT.ns_host, SNAPSHOT.ns_address, swapped))
    try:
        assert addresses(ask(server, SERVICE, subnet=NETWORKS["US"])) == {"198.19.9.9"}
    finally:
        server.responder.swap(SNAPSHOT)
    assert addresses(ask(server, SERVICE, subnet=NETWORKS["US"])) == before


@settings(max_examples=3000, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_never_crash_the_responder(wire: bytes) -> None:
    reply = DnsResponder(SNAPSHOT).respond(wire, "192.0.2.1", udp=True)
    assert reply is None or len(reply) >= 12


VALID = dns.message.make_query(SERVICE, "A", use_edns=0, options=[dns.edns.ECSOption("85.214.0.0", 16)]).to_wire()


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), max_size=6), st.integers(0, len(VALID)))
def test_mutated_and_truncated_queries_never_crash(flips: list[tuple[int, int]], cut: int) -> None:
    wire = bytearray(VALID)
    for position, value in flips:
        wire[position] = value
    reply = DnsResponder(SNAPSHOT).respond(bytes(wire[:cut]), "192.0.2.1", udp=True)
    if reply is not None:
        dns.message.from_wire(reply)  # whatever we send back is well-formed DNS


def test_garbage_over_the_wire_leaves_the_server_answering(server: RunningServer) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for junk in (b"", b"\x00", b"\xff" * 11, b"\x12\x34" + b"\xff" * 40, VALID[:20], VALID + b"\x00" * 70000 * 0):
            sock.sendto(junk, ("127.0.0.1", server.port))
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as tcp:
        tcp.sendall(struct.pack("!H", 5000) + b"\x01\x02")  # claims 5000 bytes, sends 2, then closes
    assert addresses(ask(server, SERVICE, subnet=NETWORKS["DE"]))


@pytest.mark.skipif(shutil.which("dig") is None, reason="dig (bind9-dnsutils) is installed by .ci/run")
def test_dig_sees_the_same_answer(server: RunningServer) -> None:
    out = subprocess.run(["dig", "@127.0.0.1", "-p", str(server.port), SERVICE, "A", "+subnet=85.214.0.0/16", "+short"],
                         capture_output=True, text=True, timeout=10, check=True).stdout
    assert set(out.split()) == set(SNAPSHOT.answers["DE"])


def test_cache_hits_are_byte_identical_and_echo_0x20_case() -> None:
    """A cached reply must equal a freshly computed one, byte for byte, for any letter case. (Queries with ECS
    for the service name take the fast path, which has no cache: tests/test_fast_path.py. These are located by
    their source address, which the full path and its cache serve.)"""
    cached, fresh = DnsResponder(SNAPSHOT), DnsResponder(SNAPSHOT)
    fresh.cache_enabled = False
    for i, name in enumerate([SERVICE, SERVICE.upper(), "EdGe.DeV.aCcEl.ExAmPlE.nEt", f"nothing.{DEV.zone}", "www.example.org"] * 2):
        query = dns.message.make_query(name, "A", use_edns=0)
        query.id = 1000 + i
        wire = query.to_wire()
        assert cached.respond(wire, "85.214.1.1", udp=True) == fresh.respond(wire, "85.214.1.1", udp=True), name
    assert cached.stats.cache_hits >= 5
    mixed = dns.message.make_query("EdGe.DeV.aCcEl.ExAmPlE.nEt", "A").to_wire()
    response = dns.message.from_wire(cached.respond(mixed, "85.214.1.1", True) or b"")
    assert response.question[0].name.to_text() == "EdGe.DeV.aCcEl.ExAmPlE.nEt."


@pytest.mark.skipif(shutil.which("dnsperf") is None, reason="dnsperf is installed by .ci/run")
def test_dnsperf_load_is_answered_completely(server: RunningServer, tmp_path: object) -> None:
    """A second process loads the server for 2 s over loopback: every query gets NOERROR, none is
    lost. (How fast is a benchmark's business: benchmarks/bench_dns.py.)"""
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    queries = tmp_path / "queries.txt"
    queries.write_text(f"{SERVICE} A\n{SERVICE} AAAA\n{DEV.zone} SOA\n")
    out = subprocess.run(["dnsperf", "-s", "127.0.0.1", "-p", str(server.port), "-d", str(queries), "-l", "2", "-c", "2",
                          "-E", "8:0001100055d6"], capture_output=True, text=True, timeout=60, check=True).stdout
    assert "Queries lost:         0 (0.00%)" in out, out
    assert "NOERROR" in out and "SERVFAIL" not in out and "REFUSED" not in out, out


def test_tcp_connections_beyond_the_limit_are_closed_and_idle_ones_time_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """Real TCP connections: with the limit lowered to 5 and the idle timeout to 0.5 s (module settings read
    at each connection), the sixth connection is closed at once while five are open; an idle connection is
    closed by the server; a connection in use keeps being answered."""
    from globalaccel.dns import embedded_server

    monkeypatch.setattr(embedded_server, "TCP_CONNECTIONS_MAX", 5)
    monkeypatch.setattr(embedded_server, "TCP_CONNECTIONS_PER_SOURCE", 100)
    monkeypatch.setattr(embedded_server, "TCP_IDLE_S", 0.5)
    query = dns.message.make_query(SERVICE, "A", use_edns=0, options=[dns.edns.ECSOption("85.214.0.0", 16)]).to_wire()
    framed = struct.pack("!H", len(query)) + query
    with RunningServer(DnsResponder(SNAPSHOT)) as running:
        held = [socket.create_connection(("127.0.0.1", running.port), timeout=5) for _ in range(5)]
        try:
            for s in held:  # each is being served: an answer comes back on every one
                s.sendall(framed)
                assert len(s.recv(4096)) > 2
            extra = socket.create_connection(("127.0.0.1", running.port), timeout=5)
            with extra:
                try:
                    extra.sendall(framed)
                    assert extra.recv(4096) == b"", "a sixth connection was served"
                except ConnectionResetError:
                    pass  # closed before our query arrived: the kernel answers it with a reset
        finally:
            for s in held:
                s.close()
        idle = socket.create_connection(("127.0.0.1", running.port), timeout=5)
        with idle:
            assert idle.recv(4096) == b""  # closed by the server after 0.5 s of silence, not by our 5 s timeout
        assert running.server.tcp_open == 0


def test_a_udp_port_taken_on_tcp_makes_the_server_try_another(monkeypatch: pytest.MonkeyPatch) -> None:
    """With port 0 the kernel picks the UDP port, and that number can be in use on TCP (the CI failure this
    fixes). The collision is injected (nothing real can make the kernel pick a given port): the first TCP bind
    fails with EADDRINUSE, and the server ends up listening on UDP and TCP at one other port."""
    import errno

    real = asyncio.start_server
    calls: list[int] = []

    async def taken_once(*args: object, **kwargs: object) -> asyncio.base_events.Server:
        calls.append(int(args[2]))  # type: ignore[call-overload]
        if len(calls) == 1:
            raise OSError(errno.EADDRINUSE, "address already in use")
        return await real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(asyncio, "start_server", taken_once)  # the module embedded_server calls it through
    with RunningServer(DnsResponder(SNAPSHOT)) as running:
        assert len(calls) == 2 and running.port == calls[1]
        reply = dns.query.udp(dns.message.make_query(SERVICE, "SOA"), "127.0.0.1", port=running.port, timeout=5)
        assert reply.rcode() == dns.rcode.NOERROR
        reply = dns.query.tcp(dns.message.make_query(SERVICE, "SOA"), "127.0.0.1", port=running.port, timeout=5)
        assert reply.rcode() == dns.rcode.NOERROR


def test_one_source_cannot_take_every_tcp_slot(monkeypatch: pytest.MonkeyPatch) -> None:
    """Three connections from 127.0.0.1 fill its share (lowered to 3); another source (127.0.0.2) is still
    served, and 127.0.0.1's fourth is closed at once."""
    from globalaccel.dns import embedded_server

    monkeypatch.setattr(embedded_server, "TCP_CONNECTIONS_PER_SOURCE", 3)
    query = dns.message.make_query(SERVICE, "SOA")
    with RunningServer(DnsResponder(SNAPSHOT)) as running:
        held = [socket.create_connection(("127.0.0.1", running.port), timeout=5) for _ in range(3)]
        try:
            time.sleep(0.2)  # the server has taken all three
            reply = dns.query.tcp(query, "127.0.0.1", port=running.port, timeout=5, source="127.0.0.2")
            assert reply.rcode() == dns.rcode.NOERROR
            with pytest.raises((EOFError, ConnectionError)):
                dns.query.tcp(query, "127.0.0.1", port=running.port, timeout=5, source="127.0.0.1")
        finally:
            for s in held:
                s.close()
