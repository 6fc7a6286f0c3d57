"""ECS and EDNS conformance of the embedded server, and the review's residency seeds, on DnsResponder (the
server's whole answer path; the sockets around it are tested in test_dns_embedded)."""

from __future__ import annotations

import dataclasses
import struct

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset

from globalaccel.answers import Answers, Served
from globalaccel.dns.embedded import DnsResponder
from globalaccel.dns.embedded_backend import snapshot_for
from globalaccel.locate import CountryLocator, Location
from globalaccel.path_judge import PathJudge
from globalaccel.routing.summary import route_table
from globalaccel.topology import load_stack
from tests.conftest import STACKS

DEV = load_stack("dev", STACKS)
ANSWERS = Answers.from_table(route_table(DEV), DEV)
SNAPSHOT = snapshot_for(DEV, ANSWERS)
CELL_COUNTRY = {c.id: c.country for c in DEV.cells}


def responder(**kwargs: object) -> DnsResponder:
    r = DnsResponder(SNAPSHOT, CountryLocator(DEV.countries), judge=PathJudge(DEV).allows, cell_country=CELL_COUNTRY, **kwargs)  # type: ignore[arg-type]
    return r


def ask(r: DnsResponder, options: list[dns.edns.ECSOption], source: str = "192.0.2.1") -> dns.message.Message:
    query = dns.message.make_query(DEV.service_name, "A", use_edns=0, options=list[dns.edns.Option](options))
    reply = r.respond(query.to_wire(), source, udp=True)
    assert reply is not None
    return dns.message.from_wire(reply)


def addresses(reply: dns.message.Message) -> set[str]:
    return {rr.address for rrset in reply.answer if rrset.rdtype == dns.rdatatype.A for rr in rrset}


def test_a_query_with_a_nonzero_scope_or_two_ecs_options_is_formerr_with_opt() -> None:
    for options in ([dns.edns.ECSOption("85.214.0.0", 16, 16)],
                    [dns.edns.ECSOption("85.214.0.0", 16), dns.edns.ECSOption("8.8.8.0", 24)]):
        reply = ask(responder(), options)
        assert reply.rcode() == dns.rcode.FORMERR and reply.edns == 0 and not reply.answer


def test_an_unparseable_query_keeps_its_opt_in_formerr() -> None:
    wire = bytearray(dns.message.make_query(DEV.service_name, "A", use_edns=0, options=[dns.edns.ECSOption("85.214.0.0", 16)]).to_wire())
    wire[-5] = 99  # the ECS option's source prefix beyond IPv4's 32 bits: dnspython refuses it
    reply = responder().respond(bytes(wire), "192.0.2.1", udp=True)
    assert reply is not None
    parsed = dns.message.from_wire(reply)
    assert parsed.rcode() == dns.rcode.FORMERR and parsed.edns == 0
    plain = bytearray(dns.message.make_query(DEV.service_name, "A").to_wire())
    plain[4:6] = b"\x00\x07"  # seven questions claimed, one present: unparseable, and no OPT to echo
    reply = responder().respond(bytes(plain), "192.0.2.1", udp=True)
    assert reply is not None and struct.unpack("!H", reply[10:12])[0] == 0


def test_a_private_ecs_address_is_answered_for_the_resolver_scoped_to_that_block() -> None:
    """Scope 0 would let a cache hand the resolver's answer to every client (a reviewer's seed, shown
    through unbound): the scope is the private block's own prefix."""
    r = responder(local_country="DE")
    reply = ask(r, [dns.edns.ECSOption("10.1.2.0", 24)], source="10.9.9.9")
    served = ANSWERS.country("DE")
    assert isinstance(served, Served) and addresses(reply) == set(served.addresses)
    ecs = next(o for o in reply.options if isinstance(o, dns.edns.ECSOption))
    assert ecs.scopelen == 24


def test_an_edns_version_above_zero_gets_badvers_with_the_question() -> None:
    query = dns.message.make_query(DEV.service_name, "A", use_edns=1)
    reply = responder().respond(query.to_wire(), "192.0.2.1", udp=True)
    assert reply is not None
    parsed = dns.message.from_wire(reply)
    assert parsed.rcode() == dns.rcode.BADVERS and parsed.edns == 0 and parsed.question == query.question


def test_formerr_adds_no_opt_the_query_did_not_have() -> None:
    """An unparseable query whose bytes contain 00 00 29 elsewhere (QTYPE 41) carries no OPT: none comes back."""
    wire = bytearray(dns.message.make_query(DEV.service_name, dns.rdatatype.OPT).to_wire())
    wire[4:6] = b"\x00\x02"  # two questions claimed, one present
    reply = responder().respond(bytes(wire), "192.0.2.1", udp=True)
    assert reply is not None and struct.unpack("!H", reply[10:12])[0] == 0


def test_ipv4_mapped_addresses_are_located_as_ipv4_and_scoped_in_ipv6_bits() -> None:
    """Scope 24 on a mapped address would read as ::/24 to a resolver: every mapped client. A reviewer's seed."""
    locator = CountryLocator(DEV.countries)
    for mapped, plain, bits in (("::ffff:8.8.8.8", "8.8.8.8", 32), ("::ffff:85.214.0.0", "85.214.0.0", 16)):
        where, scope = locator.locate(mapped, bits + 96)
        assert (where, scope - 96) == locator.locate(plain, bits)


def test_a_tampered_principal_map_never_answers_another_countrys_cell() -> None:
    us_cell = DEV.principal_cell["US"]
    tampered = dataclasses.replace(SNAPSHOT, principal={**SNAPSHOT.principal, "DE": us_cell})
    r = DnsResponder(tampered, CountryLocator(DEV.countries), judge=PathJudge(DEV).allows, cell_country=CELL_COUNTRY)
    assert addresses(ask(r, [dns.edns.ECSOption("85.214.0.0", 16)])) == set()


def test_a_two_country_network_never_gets_a_path_through_a_center_seen_down() -> None:
    """GB's and DE's rules both apply; with DE's chosen center seen down, the answer comes from a live
    center's path or not at all."""
    r = responder()
    decision = ANSWERS.cell(DEV.principal_cell["DE"])
    assert isinstance(decision, Served)
    r.set_centers_down(frozenset({decision.center}))
    location = Location(DEV.principal_cell["DE"], ("DE", "GB"))
    got, _ = r._addresses(SNAPSHOT, location)
    down_paths = {a for p in decision.paths if p.center == decision.center for a in p.addresses}
    assert not set(got) & down_paths
    judge = PathJudge(DEV)
    assert all(judge.allows("DE", a) and judge.allows("GB", a) for a in got)


def test_zone_transfers_are_refused_over_tcp_and_udp() -> None:
    r = responder()
    for rdtype, name in (("AXFR", DEV.zone), ("IXFR", DEV.zone), ("AXFR", DEV.service_name)):
        query = dns.message.make_query(name, rdtype)
        if rdtype == "IXFR":  # RFC 1995: the client's SOA in the authority section
            query.authority.append(dns.rrset.from_text(f"{DEV.zone}.", 60, "IN", "SOA", f"ns1.{DEV.zone}. h.{DEV.zone}. 1 1 1 1 1"))
        for udp in (False, True):
            reply = dns.message.from_wire(r.respond(query.to_wire(), "192.0.2.1", udp=udp) or b"")
            assert reply.rcode() == dns.rcode.REFUSED, (rdtype, name, udp)
            assert reply.question == query.question and not reply.answer
