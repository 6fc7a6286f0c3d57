"""Wire-format questions the embedded server asks of a query before (or instead of) parsing it whole:
where the question name ends, whether an unparseable query carried an OPT record, whether its ECS option
is well-formed (RFC 7871 6), and whether an ECS address says anything about where a client is."""

from __future__ import annotations

import bisect
import functools
import ipaddress
import struct

import dns.edns
import dns.message


def question_name_end(wire: bytes) -> int | None:
    """Offset just past the first question's name, for a plain one-question query; None otherwise."""
    if len(wire) < 17 or wire[4:6] != b"\x00\x01":
        return None
    pos = 12
    while pos < len(wire):
        length = wire[pos]
        if length == 0:
            return pos + 1
        if length > 63:
            return None  # compression or a bad label in a question: leave it to the full parser
        pos += 1 + length
    return None


def routable(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global


@functools.lru_cache(maxsize=2)
def routable_table(family: int) -> tuple[list[int], list[bool]]:
    """Where `routable` changes value in one family, and its value from each change on. `ipaddress` decides
    is_global by membership in its own special-purpose networks, so the value is constant between their
    boundaries: it is read off the real function at each boundary, never restated here."""
    make = ipaddress.IPv4Address if family == 4 else ipaddress.IPv6Address
    network = ipaddress.IPv4Network if family == 4 else ipaddress.IPv6Network
    # The module's own table of special-purpose networks (not public API; a test checks the result against
    # `routable` on random and boundary addresses, so a change in it fails loudly, not silently).
    constants = getattr(ipaddress, "_IPv4Constants" if family == 4 else "_IPv6Constants")
    top = 1 << (32 if family == 4 else 128)
    edges = {0}
    for value in vars(constants).values():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, network):
                edges.add(int(item.network_address))
                edges.add(int(item.broadcast_address) + 1)
            elif isinstance(item, make):
                edges.update((int(item), int(item) + 1))
    starts = sorted(e for e in edges if e < top)
    return starts, [routable(str(make(start))) for start in starts]


def routable_int(family: int, address: int) -> bool:
    """`routable` for an address given as an integer (4 or 6; not IPv4-mapped IPv6): the per-query path."""
    starts, values = routable_table(family)
    return values[bisect.bisect_right(starts, address) - 1]


def wholly_unroutable(address: str, srclen: int) -> bool:
    """Is every address of address/srclen not `routable`? (IPv4-mapped IPv6 is judged as IPv4.)"""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip, srclen = ip.ipv4_mapped, max(0, srclen - 96)
    bits = ip.max_prefixlen
    host = bits - min(srclen, bits)
    first = (int(ip) >> host) << host
    last = first + (1 << host) - 1
    starts, values = routable_table(ip.version)
    i = bisect.bisect_right(starts, first) - 1
    while True:  # through consecutive stretches, all of them not routable, to the prefix's end
        if values[i]:
            return False
        if i + 1 >= len(starts) or starts[i + 1] > last:
            return True
        i += 1


def has_opt(wire: bytes) -> bool:
    """Does a query that could not be parsed whole carry an OPT record? Its records are walked (names, with
    compression pointers, then type, class, TTL and data length) as far as they hold together."""
    try:
        qd, an, ns, ar = struct.unpack("!HHHH", wire[4:12])
        pos = 12

        def skip_name(pos: int) -> int:
            while True:
                length = wire[pos]
                if length & 0xC0 == 0xC0:
                    return pos + 2
                if length == 0:
                    return pos + 1
                pos += 1 + length

        for _ in range(qd):
            pos = skip_name(pos) + 4
        for n in range(an + ns + ar):
            pos = skip_name(pos)
            rtype, _, _, rdlen = struct.unpack("!HHIH", wire[pos : pos + 10])
            if n >= an + ns and rtype == 41:
                return True
            pos += 10 + rdlen
    except (IndexError, struct.error):
        return False
    return False


def bad_ecs(query: dns.message.Message) -> bool:
    """RFC 7871 6: SCOPE PREFIX-LENGTH MUST be 0 in queries; one ECS option per query."""
    options = [o for o in query.options if isinstance(o, dns.edns.ECSOption)]
    return len(options) > 1 or any(o.scopelen != 0 for o in options)
