"""What the embedded server answers from (an immutable snapshot of the zone, swapped whole) and what it
counts (its statistics): the data the responder (globalaccel.dns.embedded) and its backend share."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import dns.name


@dataclass(frozen=True)
class ZoneSnapshot:
    """Everything a query needs, immutable: the server swaps whole snapshots."""

    origin: dns.name.Name
    service: dns.name.Name
    ns_host: dns.name.Name
    ns_address: str
    answers: Mapping[str, tuple[str, ...]]  # cell -> edge addresses, best first; absent = no answer
    ttl: int = 60
    serial: int = 1
    table_hash: str = ""
    # cell -> its failover chain, (center, addresses) in order, the chosen center first: a server that
    # sees a center down answers with the next path whose center it sees up (every one allowed by the rule).
    paths: Mapping[str, tuple[tuple[str, tuple[str, ...]], ...]] = field(default_factory=dict)
    # The zone's NS set when it spans the centers (one authoritative server each): (host, address) pairs.
    # Empty: the one server `ns_host` at `ns_address`.
    nameservers: tuple[tuple[dns.name.Name, str], ...] = ()
    # country -> the cell answering clients located only by country; absent: the cell named like the country.
    principal: Mapping[str, str] = field(default_factory=dict)
    # cell -> each answer address's share of clients given it first (globalaccel.dns.spread), per mille, in
    # the order of `answers`; absent: every client gets the order as it is.
    shares: Mapping[str, tuple[int, ...]] = field(default_factory=dict)

    @property
    def ns_set(self) -> tuple[tuple[dns.name.Name, str], ...]:
        return self.nameservers or ((self.ns_host, self.ns_address),)

    @property
    def names(self) -> frozenset[dns.name.Name]:
        return frozenset({self.origin, self.service, *(host for host, _ in self.ns_set)})


@dataclass
class ServerStats:
    queries: int = 0
    cache_hits: int = 0
    answered: int = 0
    nodata: int = 0
    nxdomain: int = 0
    refused: int = 0
    formerr: int = 0
    dropped: int = 0
    truncated: int = 0
    servfail: int = 0
    by_rcode: dict[str, int] = field(default_factory=dict)
