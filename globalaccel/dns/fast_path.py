"""The embedded server's per-query path for the one query nearly every resolver sends: the service name, type
A, class IN, with an EDNS Client Subnet option. Only the bytes that decide the answer are read (header, the
question compared as bytes, the OPT record and its ECS option); the answer records are rendered once per
location and snapshot, and each response is the query's own ID and question (0x20 case echoed as sent)
joined to those bytes and an OPT echoing the ECS option with the scope the locator gives.

Anything else (another name or type, no ECS, an option this path does not echo, EDNS version above 0, a
response too big for the client's UDP size) is declined with None and goes to the full dnspython path,
which stays the reference: tests/test_fast_path.py asks both paths the same queries and compares bytes.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

import dns.edns

_HEADER = struct.Struct("!HHHHHH")
_OPT = struct.Struct("!HHBBHH")  # after the OPT's root owner name: type, UDP size, ext. RCODE, version, flags, RDLEN
_OPTION = struct.Struct("!HH")
_ECS = struct.Struct("!HBB")
# A response's OPT record with one ECS option, up to the ECS address: root owner, type, UDP size, ext. RCODE,
# version, flags, RDLEN, then OPTION-CODE, OPTION-LENGTH, FAMILY, SOURCE and SCOPE PREFIX-LENGTH.
_OPT_ECS = struct.Struct("!xHHBBHHHHHBB")
_A_IN = b"\x00\x01\x00\x01"
_ONE_QUESTION_AND_OPT = b"\x00\x01\x00\x00\x00\x00\x00\x01"  # QDCOUNT 1, ANCOUNT 0, NSCOUNT 0, ARCOUNT 1
_ANSWER_HEAD = b"\xc0\x0c" + _A_IN  # the owner compressed to the question's name at offset 12
OPTION_ECS = 8
OPTION_PADDING = 12  # RFC 7830: a query that asks for padding gets it, from the full path
OPTION_COOKIE = 10  # RFC 7873: ignored by both paths when well-formed (client 8 bytes, server 0 or 8-32)
# Options dnspython parses into their own classes (the rest it keeps as opaque bytes, as this path skips them):
# a malformed one is FORMERR on the full path, so only a well-formed cookie is skipped here, and ECS read.
_PARSED_OPTIONS = frozenset(code for code in range(65536) if dns.edns.get_option_class(dns.edns.OptionType.make(code))
                            is not dns.edns.GenericOption) - {OPTION_ECS}
QR, AA, RD = 0x8000, 0x0400, 0x0100
DO = 0x8000
UDP_DEFAULT_PAYLOAD = 512
OUR_EDNS_PAYLOAD = 1232  # DNS flag day 2020: avoids IP fragmentation
BITS = {1: 32, 2: 128}  # ECS FAMILY (IANA address family numbers) -> address bits
MAPPED_V4 = 0xFFFF << 32  # ::ffff:0:0/96, located as IPv4 by the full path


class ServiceQuery(NamedTuple):
    question_end: int  # offset just past the question (name, type, class)
    rd: int  # the query's RD bit, copied into the response
    payload: int  # the client's EDNS UDP size
    do: int  # the query's DO bit (RFC 3225 3: copied into the response)
    family: int  # 4 or 6
    first: int  # the source prefix's first address, as an integer
    srclen: int
    ecs_address: bytes  # the ECS ADDRESS field as sent (ceil(srclen / 8) bytes)


def parse_service_query(wire: bytes, service: bytes) -> ServiceQuery | None:
    """The query's answer-deciding fields when it is `service` A IN with one well-formed ECS option, located
    by a non-zero source prefix; None when the full path must judge it. `service` is the name in wire format,
    lower case."""
    size = len(wire)
    end = 12 + len(service)
    # QR clear and opcode QUERY; one question, nothing else but the OPT record; the service name, A, IN.
    if (size < end + 4 + 11 or wire[2] & 0xF8 or wire[4:12] != _ONE_QUESTION_AND_OPT
            or wire[12:end].lower() != service or wire[end : end + 4] != _A_IN):
        return None
    flags = wire[2] << 8
    pos = end + 4
    if wire[pos] != 0:
        return None
    rtype, payload, ext_rcode, version, edns_flags, rdlen = _OPT.unpack_from(wire, pos + 1)
    pos += 11
    if rtype != 41 or ext_rcode or version or pos + rdlen != size:
        return None
    ecs: tuple[int, int, bytes] | None = None
    if rdlen >= 8 and wire[pos : pos + 2] == b"\x00\x08" and ((wire[pos + 2] << 8) | wire[pos + 3]) == rdlen - 4:
        ecs = _ecs(wire, pos + 4, rdlen - 4)  # the common query: one option, ECS
        if ecs is None:
            return None
        pos = size
    while pos < size:
        if pos + 4 > size:
            return None
        code, length = _OPTION.unpack_from(wire, pos)
        pos += 4
        if pos + length > size or code == OPTION_PADDING:
            return None
        if code in _PARSED_OPTIONS and not (code == OPTION_COOKIE and (length == 8 or 16 <= length <= 40)):
            return None  # the full path parses it, and may find it malformed (FORMERR): its call
        if code == OPTION_ECS:
            if ecs is not None:
                return None  # two ECS options: FORMERR, from the full path
            ecs = _ecs(wire, pos, length)
            if ecs is None:
                return None
        pos += length
    if ecs is None:
        return None
    family, srclen, address = ecs
    bits = BITS[family]
    first = int.from_bytes(address, "big") << (bits - 8 * len(address))
    if family == 2 and first >> 32 == 0xFFFF:
        return None  # IPv4-mapped: located as IPv4, scoped in IPv6 bits, by the full path
    return ServiceQuery(end + 4, flags & RD, payload, edns_flags & DO, 4 if family == 1 else 6, first, srclen, address)


def _ecs(wire: bytes, pos: int, length: int) -> tuple[int, int, bytes] | None:
    """(FAMILY, SOURCE PREFIX-LENGTH, ADDRESS) of a well-formed ECS option in a query that locates by a
    non-zero prefix (RFC 7871 6); None for anything the full path must judge."""
    if length < 4:
        return None
    family, srclen, scope = _ECS.unpack_from(wire, pos)
    bits = BITS.get(family)
    address = wire[pos + 4 : pos + length]
    if bits is None or scope or not 0 < srclen <= bits or len(address) != (srclen + 7) // 8:
        return None
    if srclen % 8 and address[-1] & (0xFF >> (srclen % 8)):
        return None  # bits set beyond the source prefix
    return family, srclen, address


def answer_records(addresses: tuple[str, ...], ttl: int) -> bytes:
    """The A records of an answer, best first, each owned by the question's name (a compression pointer)."""
    head = _ANSWER_HEAD + struct.pack("!IH", ttl, 4)
    return b"".join(head + bytes(int(octet) for octet in address.split(".")) for address in addresses)


def respond(wire: bytes, query: ServiceQuery, scope: int, answers: int, authority: int, records: bytes,
            udp: bool) -> bytes | None:
    """The response: `answers` A records or (answers 0) the `authority` SOA of a NODATA, then an OPT that
    echoes the ECS option with `scope`. None when it would not fit the client's UDP size."""
    address = query.ecs_address
    opt = _OPT_ECS.pack(41, OUR_EDNS_PAYLOAD, 0, 0, query.do, 8 + len(address), OPTION_ECS, 4 + len(address),
                        1 if query.family == 4 else 2, query.srclen, scope) + address
    end = query.question_end
    if udp and end + len(records) + len(opt) > max(UDP_DEFAULT_PAYLOAD, min(query.payload, OUR_EDNS_PAYLOAD)):
        return None  # truncation is the full path's
    return _HEADER.pack((wire[0] << 8) | wire[1], QR | AA | query.rd, 1, answers, authority, 1) + wire[12:end] + records + opt
