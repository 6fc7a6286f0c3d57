"""The embedded server's fast answer path (globalaccel.dns.fast_path) against its full dnspython path.

The full path parses with dnspython, builds the response as a dnspython message and renders it: an independent
renderer. Each query here is asked of one responder with the fast path and of one without (cache_enabled
False), on prod's cells and network database; the responses must be the same bytes. The queries are what
resolvers send (0x20 case, RD, DO, cookies, UDP sizes, every source prefix length, IPv4 and IPv6) and what
they should not (padding, two ECS options, a non-zero scope, bits beyond the prefix), and the fast path must
take most of the first kind, or the comparison would prove nothing.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import random
import struct
from collections.abc import Callable, Sequence

import dns.edns
import dns.flags
import dns.message
from hypothesis import given, settings
from hypothesis import strategies as st

from globalaccel.answers import Answers
from globalaccel.dns.embedded import DnsResponder
from globalaccel.dns.embedded_backend import snapshot_for
from globalaccel.dns.wire import routable, routable_int, routable_table
from globalaccel.locate import NetworkMap
from globalaccel.path_judge import PathJudge
from globalaccel.routing.summary import route_table
from globalaccel.topology import load_stack
from tests.conftest import STACKS

PROD = load_stack("prod", STACKS)


@functools.lru_cache(maxsize=1)
def world() -> tuple[NetworkMap, Answers, list[ipaddress.IPv4Network | ipaddress.IPv6Network]]:
    assert PROD.client_networks is not None
    located = NetworkMap.from_mmdb(PROD.client_networks, PROD.cells)
    networks = [ipaddress.ip_network(n) for family in (4, 6) for n, _ in located.ranges(family)]
    return located, Answers.from_table(route_table(PROD), PROD), networks


@functools.cache
def pair(down: frozenset[str] = frozenset()) -> tuple[DnsResponder, DnsResponder]:
    """Two responders on one snapshot, one with the fast path and one without; kept per health view (only the
    stats and caches of a responder change as it answers, never what it answers)."""
    located, answers, _ = world()
    snapshot = snapshot_for(PROD, answers)
    cell_country = {c.id: c.country for c in PROD.cells}
    fast, full = (DnsResponder(snapshot, located, judge=PathJudge(PROD).allows, cell_country=cell_country) for _ in range(2))
    full.cache_enabled = False
    for r in (fast, full):
        r.set_centers_down(down)
    return fast, full


def query(rng: random.Random, address: str, srclen: int, extra: list[dns.edns.Option] | None = None) -> bytes:
    name = "".join(ch.upper() if rng.random() < 0.5 else ch for ch in PROD.service_name)  # 0x20 case
    options: list[dns.edns.Option] = [dns.edns.ECSOption(address, srclen)]
    if rng.random() < 0.3:
        options.insert(rng.randrange(2), dns.edns.CookieOption(rng.randbytes(8), b""))
    options += extra or []
    message = dns.message.make_query(name, "A", use_edns=0, options=options, payload=rng.choice([512, 1232, 4096, 600]),
                                     want_dnssec=rng.random() < 0.5)
    if rng.random() < 0.3:
        message.flags &= ~dns.flags.RD
    message.id = rng.randrange(65536)
    return message.to_wire()


def clients(rng: random.Random, count: int) -> list[tuple[str, int]]:
    _, _, networks = world()
    out = []
    for _ in range(count):
        network = rng.choice(networks)
        bits = network.max_prefixlen
        address = network.network_address + rng.randrange(network.num_addresses)
        srclen = rng.choice([network.prefixlen, bits, rng.randint(1, bits), 24 if bits == 32 else 56])
        first = ipaddress.ip_network(f"{address}/{srclen}", strict=False).network_address
        out.append((str(first), srclen))
    return out


def compare(fast: DnsResponder, full: DnsResponder, wires: list[bytes]) -> int:
    """Both paths byte for byte, over UDP and TCP; how many the fast path itself answered."""
    taken = 0
    for wire in wires:
        for udp in (True, False):
            quick = fast._fast(wire, udp)
            taken += quick is not None
            reference = full.respond(wire, "192.0.2.1", udp)
            assert fast.respond(wire, "192.0.2.1", udp) == reference, dns.message.from_wire(wire).to_text()
            if quick is not None:
                assert quick == reference
    return taken


def test_the_fast_path_answers_what_the_full_path_would_byte_for_byte() -> None:
    rng = random.Random(7)
    fast, full = pair()
    wires = [query(rng, address, srclen) for address, srclen in clients(rng, 1500)]
    taken = compare(fast, full, wires)
    # Not all: a random short source prefix often spans unlocatable space, which the full path answers.
    assert taken >= 0.8 * 2 * len(wires), f"the fast path took only {taken} of {2 * len(wires)}"
    assert fast.stats.answered > 0 and fast.stats.nodata > 0  # served cells and fail-closed ones both seen


def test_with_centers_seen_down_the_fast_path_follows_the_chains_as_the_full_path_does() -> None:
    rng = random.Random(11)
    for down in ({PROD.centers[0].name}, {c.name for c in PROD.centers[:2]}):
        fast, full = pair(frozenset(down))
        wires = [query(rng, address, srclen) for address, srclen in clients(rng, 400)]
        assert compare(fast, full, wires) >= 0.8 * 2 * len(wires)


def test_queries_the_fast_path_must_leave_to_the_full_path() -> None:
    rng = random.Random(3)
    fast, full = pair()
    address, srclen = clients(rng, 1)[0]
    declined = [
        query(rng, address, srclen, [dns.edns.GenericOption(dns.edns.OptionType.PADDING, b"\x00" * 16)]),
        query(rng, address, srclen, [dns.edns.ECSOption(address, srclen)]),  # two ECS options: FORMERR
        query(rng, address, srclen, [dns.edns.ECSOption("10.1.2.0", 24)]),
        dns.message.make_query(PROD.service_name, "A", use_edns=0, options=[dns.edns.ECSOption("10.1.2.0", 24)]).to_wire(),
        dns.message.make_query(PROD.service_name, "A", use_edns=1, options=[dns.edns.ECSOption(address, srclen)]).to_wire(),
        dns.message.make_query(PROD.service_name, "AAAA", use_edns=0, options=[dns.edns.ECSOption(address, srclen)]).to_wire(),
        dns.message.make_query(PROD.service_name, "A", use_edns=0).to_wire(),
        dns.message.make_query(PROD.service_name, "A", use_edns=0, options=[dns.edns.ECSOption("::ffff:85.214.1.0", 120)]).to_wire(),
    ]
    def ecs_last(srclen: int) -> bytearray:  # a query whose ECS option ends the message
        options: list[dns.edns.Option] = [dns.edns.ECSOption("85.214.0.0", srclen)]
        return bytearray(dns.message.make_query(PROD.service_name, "A", use_edns=0, options=options).to_wire())

    scoped = ecs_last(24)
    scoped[-4] = 24  # a non-zero SCOPE in a query: FORMERR (RFC 7871 7.1.1)
    beyond = ecs_last(23)
    beyond[-1] |= 1  # a bit set beyond the source prefix
    declined += [bytes(scoped), bytes(beyond)]
    for wire in declined:
        assert fast._fast(wire, True) is None
        assert fast.respond(wire, "192.0.2.1", True) == full.respond(wire, "192.0.2.1", True)


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), flips=st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=4),
       cut=st.integers(0, 200))
def test_mutated_queries_get_the_same_bytes_from_both_paths(seed: int, flips: list[tuple[int, int]], cut: int) -> None:
    rng = random.Random(seed)
    fast, full = pair()
    address, srclen = clients(rng, 1)[0]
    wire = bytearray(query(rng, address, srclen))
    for at, value in flips:
        if at < len(wire):
            wire[at] = value
    mutated = bytes(wire[: max(cut, 12)]) if cut < len(wire) and rng.random() < 0.3 else bytes(wire)
    for udp in (True, False):
        assert fast.respond(mutated, "192.0.2.1", udp) == full.respond(mutated, "192.0.2.1", udp)


def test_the_do_bit_is_echoed_and_no_padding_is_added_unasked() -> None:
    fast, full = pair()
    rng = random.Random(5)
    address, srclen = clients(rng, 1)[0]
    for r in (fast, full):
        for dnssec in (True, False):
            wire = dns.message.make_query(PROD.service_name, "A", use_edns=0, want_dnssec=dnssec,
                                          options=[dns.edns.ECSOption(address, srclen)]).to_wire()
            reply = dns.message.from_wire(r.respond(wire, "192.0.2.1", True) or b"")
            assert bool(reply.ednsflags & dns.flags.DO) == dnssec
            assert not any(o.otype == dns.edns.OptionType.PADDING for o in reply.options)


def test_a_60_kb_option_does_not_grow_the_cache() -> None:
    located, _, _ = world()
    shared, _ = pair()
    fast = DnsResponder(shared.snapshot, located)
    big = dns.edns.GenericOption(dns.edns.OptionType.make(65001), b"\x00" * 60_000)
    for n in range(50):
        wire = dns.message.make_query(f"x{n}.{PROD.zone}", "A", use_edns=0, options=[big]).to_wire(max_size=65535)
        fast.respond(wire, "192.0.2.1", udp=False)
    assert fast._cache_bytes == 0


@settings(max_examples=600, deadline=None)
@given(family=st.sampled_from([4, 6]), data=st.data())
def test_routable_int_agrees_with_ipaddress(family: int, data: st.DataObject) -> None:
    starts, _ = routable_table(family)
    top = (1 << (32 if family == 4 else 128)) - 1
    near = data.draw(st.sampled_from(starts)) + data.draw(st.integers(-2, 2))
    for value in (max(0, min(top, near)), data.draw(st.integers(0, top))):
        make = ipaddress.IPv4Address if family == 4 else ipaddress.IPv6Address
        if family == 6 and value >> 32 == 0xFFFF:
            continue  # IPv4-mapped: never asked of routable_int (the fast path declines them)
        assert routable_int(family, value) == routable(str(make(value))), str(make(value))


def test_the_header_fields_of_a_fast_answer() -> None:
    """A spot check on the bytes themselves, independent of both paths: ID and 0x20 case echoed, QR AA RD."""
    fast, _ = pair()
    rng = random.Random(9)
    for address, srclen in clients(rng, 200):
        wire = query(rng, address, srclen)
        reply = fast._fast(wire, True)
        if reply is None:
            continue
        qid, flags = struct.unpack("!HH", reply[:4])
        assert qid == struct.unpack("!H", wire[:2])[0]
        assert reply[12 : 12 + len(PROD.service_name) + 2] == wire[12 : 12 + len(PROD.service_name) + 2]
        assert flags & 0x8400 == 0x8400 and flags & 0x0100 == struct.unpack("!H", wire[2:4])[0] & 0x0100
        return
    raise AssertionError("the fast path answered none of 200 queries")


def first_addresses(responder: DnsResponder, networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network],
                    srclen_of: Callable[[ipaddress.IPv4Network | ipaddress.IPv6Network], int]) -> list[tuple[str, dns.message.Message]]:
    out = []
    for network in networks:
        options: list[dns.edns.Option] = [dns.edns.ECSOption(str(network.network_address), srclen_of(network))]
        wire = dns.message.make_query(PROD.service_name, "A", use_edns=0, options=options).to_wire()
        reply = dns.message.from_wire(responder.respond(wire, "192.0.2.1", True) or b"")
        out.append((str(network), reply))
    return out


def test_clients_that_take_the_first_address_spread_by_the_routers_weights() -> None:
    """Over every network of the database, the first address given is each cell's rank-k edge as often as the
    weights say (summed per rank over all cells); before, rank 0 was every client's first address."""
    located, _, networks = world()
    fast, full = pair()
    snapshot = fast.snapshot
    assert snapshot.shares, "the published snapshot carries no shares"
    observed: dict[int, float] = {}
    expected: dict[int, float] = {}
    sample = random.Random(4).sample(networks, 10_000)
    # The full path (about a millisecond a query) on a part: it must spread the same way, not only byte-match.
    for responder, asked in ((fast, sample), (full, sample[:1000])):
        observed.clear()
        expected.clear()
        for network, reply in first_addresses(responder, asked, lambda n: n.prefixlen):
            ip = ipaddress.ip_network(network)
            location, _ = located.locate(str(ip.network_address), ip.prefixlen)
            if location is None or len(location.countries) > 1 or not reply.answer:
                continue
            cell = location.cell or ""
            order, shares = snapshot.answers.get(cell, ()), snapshot.shares.get(cell, ())
            if not shares:
                continue
            first = reply.answer[0][0].address
            observed[order.index(first)] = observed.get(order.index(first), 0) + 1
            for rank, share in enumerate(shares):
                expected[rank] = expected.get(rank, 0) + share / sum(shares)
        total = sum(observed.values())
        assert total > len(asked) / 3, total
        for rank in sorted(expected):
            assert abs(observed.get(rank, 0) - expected[rank]) <= 0.02 * total + 3 * expected[rank] ** 0.5, (rank, observed, expected)


def test_every_client_a_cached_answer_may_reach_was_given_the_same_first_address() -> None:
    """The answer is scoped to the matched network (RFC 7871 7.2.2): a resolver hands it to every client in the
    scope, so the order must not depend on which /24 of a larger network asked."""
    _, _, networks = world()
    fast, full = pair()
    big = [n for n in networks if n.version == 4 and n.prefixlen <= 20][:300]
    assert len(big) >= 100
    for responder in (fast, full):
        firsts = first_addresses(responder, big, lambda n: 24)
        lasts = first_addresses(responder, [ipaddress.ip_network(f"{n.broadcast_address}/24", strict=False) for n in big],
                                lambda n: 24)
        for (network, a), (_, b) in zip(firsts, lasts, strict=True):
            assert [list(r) for r in a.answer] == [list(r) for r in b.answer], network
            assert a.options[0].scopelen == b.options[0].scopelen <= 20


def test_options_the_full_path_parses_are_left_to_it() -> None:
    """dnspython parses some options (COOKIE, EDE, REPORT-CHANNEL, ...) and answers FORMERR when one is
    malformed; the fast path must not answer those itself. Found by review; each is compared byte for byte."""
    fast, full = pair()
    network = next(n for n in world()[2] if n.version == 4)  # a network the database places
    address, srclen = str(network.network_address), network.prefixlen
    malformed = [dns.edns.GenericOption(dns.edns.OptionType.make(code), payload)
                 for code in (3, 10, 15, 18, 22, 23, 24, 25) for payload in (b"", b"\x01", b"\x00" * 5, b"\x00" * 41)]
    for option in malformed:
        for ecs_first in (True, False):
            ecs = dns.edns.ECSOption(address, srclen)
            options: list[dns.edns.Option] = [ecs, option] if ecs_first else [option, ecs]
            wire = dns.message.make_query(PROD.service_name, "A", use_edns=0, options=options).to_wire()
            assert fast.respond(wire, "192.0.2.1", True) == full.respond(wire, "192.0.2.1", True), (option.otype, option.to_wire())
    options = [dns.edns.ECSOption(str(network.network_address), network.prefixlen), dns.edns.CookieOption(b"\x01" * 8, b"\x02" * 16)]
    good_cookie = dns.message.make_query(PROD.service_name, "A", use_edns=0, options=options).to_wire()
    assert fast._fast(good_cookie, True) is not None  # a well-formed cookie keeps the fast path
    assert fast.respond(good_cookie, "192.0.2.1", True) == full.respond(good_cookie, "192.0.2.1", True)


def test_a_zone_that_cannot_be_rendered_is_refused_whole_and_the_old_one_keeps_answering() -> None:
    """Found by review: a zone file with a TTL or serial out of range was half swapped in (the full path on the
    new snapshot, raising on every query; the fast path on the old one)."""
    import dataclasses
    import json

    from globalaccel.dns.embedded_backend import snapshot_from_json, snapshot_to_json

    located, _, _ = world()
    shared, _ = pair()
    responder = DnsResponder(shared.snapshot, located)
    good = snapshot_to_json(shared.snapshot)
    cell = next(iter(shared.snapshot.shares))
    for field, value in (("ttl", -5), ("ttl", 2**40), ("serial", 2**40), ("serial", True),
                         ("shares", {cell: [1] * (len(shared.snapshot.answers[cell]) + 1)}), ("shares", {"nowhere": [1, 2]}),
                         ("shares", [1, 2]), ("ns_address", "not-an-ip"), ("answers", {cell: ["10.0.0.300"]}),
                         ("paths", {cell: [["eu-central-1", ["::1"]]]})):
        bad = json.loads(json.dumps(good)) | {field: value}
        try:
            snapshot_from_json(bad)
        except ValueError as error:
            assert field in str(error), error
        else:
            raise AssertionError(f"{field}={value!r} was accepted")
    for broken in (dataclasses.replace(shared.snapshot, ttl=2**40), dataclasses.replace(shared.snapshot, serial=2**40)):
        with contextlib.suppress(Exception):  # any refusal will do; what matters is what is served after
            responder.swap(broken)
        soa = dns.message.from_wire(responder.respond(dns.message.make_query(PROD.zone, "SOA").to_wire(), "192.0.2.1", True) or b"")
        assert soa.answer and soa.answer[0][0].serial == shared.snapshot.serial
