"""Embedded authoritative DNS server's answers (the sockets are globalaccel.dns.embedded_server): the local
default backend.

Authoritative for the routing zone only: no recursion (RA never set), REFUSED outside the zone.
The client is located from EDNS Client Subnet (RFC 7871) or else from the source address, by a locator
(globalaccel.locate): the stack's city-level network database into cells, or the offline country
dataset into a country's principal cell. The ECS scope is the prefix length of the network the answer was
decided for (never simply the source prefix). An address it cannot place (loopback, private ranges, a
network the database lacks) gets no answer unless `--local-country` says where local clients are. A
network both of whose countries' rules apply gets only the addresses lawful for both.
Fail-closed countries, unknown locations and AAAA queries get NODATA (SOA in authority), never
another region's edge. A new routing table swaps in atomically: one reference assignment, and every
query reads one snapshot from start to end. The service name's A query with ECS takes a fast path
(globalaccel.dns.fast_path) whose bytes equal this module's dnspython rendering; the first address given
spreads clients by the router's weights (globalaccel.dns.spread).
"""

from __future__ import annotations

import bisect
import ipaddress
import struct
from collections.abc import Callable, Mapping

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from globalaccel.dns import fast_path, spread
from globalaccel.dns.wire import bad_ecs, has_opt, question_name_end, routable, routable_table, wholly_unroutable
from globalaccel.dns.zone_snapshot import ServerStats as ServerStats
from globalaccel.dns.zone_snapshot import ZoneSnapshot as ZoneSnapshot
from globalaccel.locate import CountryLocator, Location, Locator, country_of

_ROUTABLE = {4: routable_table(4), 6: routable_table(6)}
UDP_DEFAULT_PAYLOAD = fast_path.UDP_DEFAULT_PAYLOAD
OUR_EDNS_PAYLOAD = fast_path.OUR_EDNS_PAYLOAD
# The full path's response cache, bounded in bytes (keys and values): a flood of distinct or padded queries
# empties it, never grows memory. Queries above CACHEABLE_QUERY_BYTES (a 60 KB option, say) are never kept.
CACHE_BYTES = 8 << 20
CACHEABLE_QUERY_BYTES = 512
RENDERED_LOCATIONS_MAX = 65_536


def _source_key(source: str) -> int:
    ip = ipaddress.ip_address(source)
    return spread.network_key(ip.version, int(ip), ip.max_prefixlen)


def locate_ip(address: str) -> str | None:
    """The country the offline country dataset gives an address."""
    return country_of(address)


# The fast path's records for one location: (answer count, authority count, one rendering per address that
# may come first, running totals of their shares (empty: the one rendering for every client)).
_Rendered = tuple[int, int, tuple[bytes, ...], tuple[int, ...]]


class DnsResponder:
    """Turns one query (wire bytes) into one response (wire bytes), or None to drop it."""

    def __init__(self, snapshot: ZoneSnapshot, locator: Locator | None = None, local_country: str | None = None,
                 judge: Callable[[str, str], bool] | None = None, cell_country: Mapping[str, str] | None = None) -> None:
        self.locator: Locator = locator or CountryLocator(None)
        self.local_country = local_country
        # judge(country, address): may that country's traffic take that path? Needed for networks two countries'
        # rules apply to; without one, such networks get no answer.
        self.judge = judge
        # cell -> its country, from the stack: a cell is only ever answered to clients of its own country, whatever
        # a zone file's principal map says. None: trust the snapshot (tests that build one by hand).
        self.cell_country = cell_country
        self.stats = ServerStats()
        # Response cache for one snapshot: query bytes after the ID + transport + where the source is and its
        # address (a query without ECS is spread by it) -> response bytes after the ID and what kind of answer
        # it was. Everything a response depends on is in the key, so a hit is byte-identical to recomputing it.
        self._cache: dict[tuple[bytes, bool, Location | None, str], tuple[bytes, str]] = {}
        self._cache_bytes = 0
        # The fast path's records for each location seen, from one snapshot and one health view: (answer count,
        # authority count, records). Swapped whole with the snapshot, in one tuple.
        self._view: tuple[ZoneSnapshot, dict[Location, _Rendered], bytes, bytes] = \
            self._new_view(snapshot)
        self.cache_enabled = True  # False: every query through the full dnspython path (tests compare the two)
        self._kind = ""
        self._down: frozenset[str] = frozenset()  # centers this server's own health view sees down
        self._isolated = False  # it sees every center down: most likely itself cut off

    def set_centers_down(self, down: frozenset[str], isolated: bool = False) -> None:
        """This server's own view of center health (globalaccel.dns.center_watch): countries whose chosen
        center it sees down are answered through the next center of their chain, with no controller. A
        server that sees every center down is most likely cut off itself: it answers the service name with
        SERVFAIL, so resolvers ask another server of the NS set instead of taking its stale view."""
        if down != self._down or isolated != self._isolated:
            self._cache = {}
            self._down = down
            self._isolated = isolated
            self._view = self._new_view(self._view[0])

    @property
    def snapshot(self) -> ZoneSnapshot:
        return self._view[0]

    def swap(self, snapshot: ZoneSnapshot) -> None:
        # Everything a query reads of a snapshot is built first (a snapshot that cannot be rendered raises here,
        # and the one serving stays), then swapped in by one reference assignment.
        view = self._new_view(snapshot)
        self._cache = {}
        self._view = view

    def _new_view(self, snapshot: ZoneSnapshot) -> tuple[ZoneSnapshot, dict[Location, _Rendered], bytes, bytes]:
        """(snapshot, its fast-path renderings, the service name in wire format lower case, the SOA record of
        a NODATA as the full path renders it after the service name's question). One tuple, assigned at once:
        a query never pairs one snapshot with renderings of another."""
        service = snapshot.service.to_digestable()  # wire format, lower case
        message = dns.message.Message()
        message.find_rrset(message.question, snapshot.service, dns.rdataclass.IN, dns.rdatatype.A, create=True)
        message.authority.append(self._soa(snapshot))
        soa = message.to_wire(want_shuffle=False)[12 + len(service) + 4 :]
        return snapshot, {}, service, soa

    def respond(self, wire: bytes, source: str, udp: bool) -> bytes | None:
        if self.cache_enabled:
            reply = self._fast(wire, udp)
            if reply is not None:
                return reply
        end = question_name_end(wire) if self.cache_enabled and len(wire) <= CACHEABLE_QUERY_BYTES else None
        if end is None:
            return self._respond(wire, source, udp)
        # The question name is keyed lower-cased so resolvers' 0x20 case randomisation still hits;
        # the reply then carries the query's own name bytes (same length, same offset), so the case
        # is echoed exactly as the resolver expects.
        cache = self._cache
        key = (wire[2:12] + wire[12:end].lower() + wire[end:], udp, self._locate_source(source), source)
        hit = cache.get(key)
        if hit is not None:
            self.stats.queries += 1
            self.stats.cache_hits += 1
            tail, kind = hit
            setattr(self.stats, kind, getattr(self.stats, kind) + 1)
            return wire[:2] + tail[:10] + wire[12:end] + tail[end - 2 :]
        self._kind = "dropped"
        reply = self._respond(wire, source, udp)
        if reply is not None and self._kind not in ("formerr", "dropped") and reply[12:end].lower() == wire[12:end].lower():
            cost = len(key[0]) + len(reply)
            if self._cache_bytes + cost > CACHE_BYTES:
                cache.clear()
                self._cache_bytes = 0
            cache[key] = (reply[2:], self._kind)
            self._cache_bytes += cost
        return reply

    def _render(self, snap: ZoneSnapshot, location: Location, soa: bytes) -> _Rendered:
        """The fast path's records for one location: (answer count, authority count, one rendering per address
        that may come first, running totals of their shares (empty: one rendering for every client))."""
        addresses, shares = self._addresses(snap, location)
        if not addresses:
            return 0, 1, (soa,), ()
        if not shares:
            return len(addresses), 0, (fast_path.answer_records(addresses, snap.ttl),), ()
        variants = tuple(fast_path.answer_records((a, *addresses[:i], *addresses[i + 1 :]), snap.ttl) for i, a in enumerate(addresses))
        return len(addresses), 0, variants, spread.running_totals(shares)

    def _fast(self, wire: bytes, udp: bool) -> bytes | None:
        """The service name's A answer for a client located by ECS, from rendered records (fast_path); None:
        the full path decides."""
        snap, rendered, service, soa = self._view
        query = fast_path.parse_service_query(wire, service)
        if query is None or self._isolated:
            return None
        starts, routable_from = _ROUTABLE[query.family]
        if not routable_from[bisect.bisect_right(starts, query.first) - 1]:  # wire.routable_int, inlined
            return None
        location, scope = self.locator.locate_prefix(query.family, query.first, query.srclen)
        if location is None:
            return None
        records = rendered.get(location)
        if records is None:
            records = self._render(snap, location, soa)
            if len(rendered) >= RENDERED_LOCATIONS_MAX:
                rendered.clear()
            rendered[location] = records
        answers, authority, variants, totals = records
        body = variants[spread.pick(totals, spread.network_key(query.family, query.first, scope))] if totals else variants[0]
        reply = fast_path.respond(wire, query, scope, answers, authority, body, udp)
        if reply is None:
            return None
        stats = self.stats
        stats.queries += 1
        if answers:
            stats.answered += 1
        else:
            stats.nodata += 1
        stats.by_rcode["NOERROR"] = stats.by_rcode.get("NOERROR", 0) + 1
        return reply

    def _note(self, kind: str) -> None:
        self._kind = kind
        setattr(self.stats, kind, getattr(self.stats, kind) + 1)

    # ------------------------------------------------------------------------------------------
    def _respond(self, wire: bytes, source: str, udp: bool) -> bytes | None:
        self.stats.queries += 1
        snap = self._view[0]
        try:
            query = dns.message.from_wire(wire)
        except Exception:  # malformed input of any kind: never crash
            return self._formerr(wire)
        if query.flags & dns.flags.QR:
            self._note("dropped")
            return None  # a response sent to us: ignore, never answer (reflection)
        if bad_ecs(query) or query.edns > 0:
            response = dns.message.make_response(query, our_payload=OUR_EDNS_PAYLOAD)
            response.flags &= ~dns.flags.RA
            self._note("formerr")
            # RFC 6891 6.1.3: an EDNS version above ours gets BADVERS (with our version 0); a malformed ECS
            # option FORMERR (RFC 7871 7.1.1). Either way the question and OPT stay.
            response.use_edns(0, payload=OUR_EDNS_PAYLOAD)
            return self._finish(response, dns.rcode.BADVERS if query.edns > 0 else dns.rcode.FORMERR, udp, query)
        response = dns.message.make_response(query, our_payload=OUR_EDNS_PAYLOAD)
        response.flags &= ~dns.flags.RA
        if query.opcode() != dns.opcode.QUERY:
            self._note("formerr")
            return self._finish(response, dns.rcode.NOTIMP, udp, query)
        if len(query.question) != 1:
            self._note("formerr")
            return self._finish(response, dns.rcode.FORMERR, udp, query)
        question = query.question[0]
        qname, qtype = question.name, question.rdtype
        if question.rdclass != dns.rdataclass.IN or not qname.is_subdomain(snap.origin):
            self._note("refused")
            return self._finish(response, dns.rcode.REFUSED, udp, query)
        response.flags |= dns.flags.AA
        location, scope, network = self._client_location(query, source)
        ecs = next((o for o in query.options if isinstance(o, dns.edns.ECSOption)), None)
        if ecs is not None:
            # RFC 7871 7.2: echo the option. Only the service name's answer is tailored to the
            # client's network, so only it carries a non-zero scope.
            tailored = qname == snap.service and qtype == dns.rdatatype.A and scope is not None
            response.use_edns(0, payload=OUR_EDNS_PAYLOAD,
                              options=[dns.edns.ECSOption(ecs.address, ecs.srclen, scope if tailored and scope else 0)])
        if qtype in (dns.rdatatype.AXFR, dns.rdatatype.IXFR):
            # No zone transfers: the zone is the controller's to publish (every center's server gets it from
            # the controller), and a transfer would hand out every cell's answer at once (RFC 5936 4.2).
            self._note("refused")
            return self._finish(response, dns.rcode.REFUSED, udp, query)
        if qname not in snap.names:
            if any(n.is_subdomain(qname) for n in snap.names):  # an empty non-terminal exists: NODATA
                return self._nodata(response, snap, udp, query)
            self._note("nxdomain")
            self._add_soa(response, snap)
            return self._finish(response, dns.rcode.NXDOMAIN, udp, query)
        if qtype == dns.rdatatype.ANY:
            # RFC 8482: a minimal answer to ANY, a synthesised HINFO.
            rr = dns.rrset.from_text(qname, snap.ttl, "IN", "HINFO", '"RFC8482" ""')
            response.answer.append(rr)
            self._note("answered")
            return self._finish(response, dns.rcode.NOERROR, udp, query)
        if self._isolated and qname == snap.service:
            self._note("servfail")
            return self._finish(response, dns.rcode.SERVFAIL, udp, query)
        rrset = self._lookup(snap, qname, qtype, location, network)
        if rrset is None:
            return self._nodata(response, snap, udp, query)
        response.answer.append(rrset)
        if qtype == dns.rdatatype.NS:
            for host, address in snap.ns_set:
                response.additional.append(dns.rrset.from_text(host, snap.ttl, "IN", "A", address))
        self._note("answered")
        return self._finish(response, dns.rcode.NOERROR, udp, query)

    # ------------------------------------------------------------------------------------------
    def _lookup(self, snap: ZoneSnapshot, qname: dns.name.Name, qtype: int, location: Location | None,
                network: int) -> dns.rrset.RRset | None:
        if qname == snap.origin:
            if qtype == dns.rdatatype.SOA:
                return self._soa(snap)
            if qtype == dns.rdatatype.NS:
                return dns.rrset.from_text_list(qname, snap.ttl, "IN", "NS", [host.to_text() for host, _ in snap.ns_set])
            return None
        for host, address in snap.ns_set:
            if qname == host:
                return dns.rrset.from_text(qname, snap.ttl, "IN", "A", address) if qtype == dns.rdatatype.A else None
        if qname == snap.service and qtype == dns.rdatatype.A and location is not None:
            addresses, shares = self._addresses(snap, location)
            if addresses:
                addresses = spread.first_by_share(addresses, shares, network)
                return dns.rrset.from_text_list(qname, snap.ttl, "IN", "A", list(addresses))
        return None

    def _addresses(self, snap: ZoneSnapshot, location: Location) -> tuple[tuple[str, ...], tuple[int, ...]]:
        """(the addresses a client at `location` is given, best first; their shares of clients given each first,
        when the answer is the cell's chosen path, else ())."""
        home = location.countries[0]
        cell = location.cell or snap.principal.get(home, home)
        if self.cell_country is not None and self.cell_country.get(cell) != home:
            return (), ()  # a cell of another country (a stale or tampered principal map): never its answer
        addresses = snap.answers.get(cell, ())
        chain = snap.paths.get(cell, ())
        if addresses and self._down and chain:
            # The first path through a center this server sees up; none: the chosen one (fail static: every
            # path of the chain is lawful, and a dead center's edges forward nowhere else).
            addresses = next((a for center, a in chain if center not in self._down), addresses)
        others = location.countries[1:]
        if addresses and others:
            # Two countries' rules apply to this network (the databases disagree, or the source prefix spans
            # both): only what both allow, from the paths through centers this server sees up (the chain's
            # order); when it sees none up, the chosen path's (fail static). Else nothing.
            judge = self.judge
            if judge is None:
                return (), ()
            live = [a for center, a in chain if center not in self._down] if chain else [addresses]
            for option in live or [addresses]:
                lawful = tuple(a for a in option if all(judge(c, a) for c in others))
                if lawful:
                    return lawful, ()
            return (), ()
        shares = snap.shares.get(cell, ())
        return addresses, shares if len(shares) == len(addresses) and addresses == snap.answers.get(cell) else ()

    def _client_location(self, query: dns.message.Message, source: str) -> tuple[Location | None, int | None, int]:
        """(where the client is, ECS scope to echo or None when the query carried no ECS option, the network the
        answer is for as globalaccel.dns.spread keys it)."""
        itself = _source_key(source)
        for option in query.options:
            if isinstance(option, dns.edns.ECSOption):
                if option.srclen == 0:
                    # RFC 7871 7.1.2: source prefix 0 means "do not use my address": answer for the
                    # resolver's own address, scope 0.
                    return self._locate_source(source), 0, itself
                if not routable(option.address) and wholly_unroutable(option.address, option.srclen):
                    # A private or special block says nothing about where the client is (RFC 7871 11.3: the
                    # resolver should not have sent it): the resolver's own answer, scoped to that block only,
                    # so a cache never hands it to clients of public networks. A prefix that only starts in
                    # such a block (0.0.0.0/1) is located like any other: its public part decides, and no
                    # answer for the resolver is ever scoped over public networks.
                    return self._locate_source(source), option.srclen, itself
                location, scope = self.locator.locate(option.address, option.srclen)
                ip = ipaddress.ip_address(option.address)
                return location, scope, spread.network_key(ip.version, int(ip), scope)
        return self._locate_source(source), None, itself

    def _locate_source(self, source: str) -> Location | None:
        found, _ = self.locator.locate(source)
        if found is None and self.local_country is not None:
            ip = ipaddress.ip_address(source)
            if ip.is_loopback or ip.is_private:
                return Location(None, (self.local_country,))
        return found

    @staticmethod
    def _soa(snap: ZoneSnapshot) -> dns.rrset.RRset:
        text = f"{snap.ns_host.to_text()} hostmaster.{snap.origin.to_text()} {snap.serial} 3600 600 604800 {snap.ttl}"
        return dns.rrset.from_text(snap.origin, snap.ttl, "IN", "SOA", text)

    def _add_soa(self, response: dns.message.Message, snap: ZoneSnapshot) -> None:
        response.authority.append(self._soa(snap))

    def _nodata(self, response: dns.message.Message, snap: ZoneSnapshot, udp: bool, query: dns.message.Message) -> bytes | None:
        self._note("nodata")
        self._add_soa(response, snap)
        return self._finish(response, dns.rcode.NOERROR, udp, query)

    def _formerr(self, wire: bytes) -> bytes | None:
        if len(wire) < 12:
            self._note("dropped")
            return None  # not even a header: nothing to answer
        self._note("formerr")
        (qid,) = struct.unpack("!H", wire[:2])
        flags = dns.flags.QR | (dns.rcode.FORMERR & 0xF)
        # RFC 6891 7: a query that carried an OPT record gets one back, or the resolver may conclude this
        # server lacks EDNS. The query could not be parsed whole, so its records are walked to find an OPT.
        echo = has_opt(wire)
        opt = b"\x00" + struct.pack("!HHIH", 41, OUR_EDNS_PAYLOAD, 0, 0) if echo else b""
        return struct.pack("!HHHHHH", qid, flags, 0, 0, 0, 1 if echo else 0) + opt

    def _finish(self, response: dns.message.Message, rcode: dns.rcode.Rcode, udp: bool, query: dns.message.Message) -> bytes:
        response.set_rcode(rcode)
        if response.edns >= 0 and query.edns >= 0:
            response.ednsflags |= query.ednsflags & dns.flags.DO  # RFC 3225 3: the DO bit is copied
        name = dns.rcode.to_text(rcode)
        self.stats.by_rcode[name] = self.stats.by_rcode.get(name, 0) + 1
        limit = 65535
        if udp:
            limit = max(UDP_DEFAULT_PAYLOAD, min(query.payload, OUR_EDNS_PAYLOAD)) if query.edns >= 0 else UDP_DEFAULT_PAYLOAD
        try:
            # Best answer first, every time: dnspython would shuffle the rdatas (round robin), but our
            # order is the ranking, and the capacity split already spreads load across answers.
            return response.to_wire(max_size=limit, want_shuffle=False)
        except dns.exception.TooBig:
            # Truncate: header, question and OPT only, TC set; the client retries over TCP.
            self.stats.truncated += 1
            response.answer.clear()
            response.authority.clear()
            response.additional.clear()
            response.flags |= dns.flags.TC
            return response.to_wire(max_size=limit, want_shuffle=False)
