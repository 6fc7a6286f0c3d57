"""Backend-neutral DNS records, keyed the way Route 53 keys them: (name, type, set identifier)."""

from __future__ import annotations

from dataclasses import dataclass

# Every answer record lives 60 s: a failover reaches clients within a minute of the publish. The zone's
# negative TTL (SOA) is capped to the same, so a withdrawn or returning answer is not cached longer.
RECORD_TTL = 60


def fqdn(name: str) -> str:
    """Lowercase, absolute (trailing dot) form used everywhere inside globalaccel.dns."""
    return name.strip().lower().rstrip(".") + "."


@dataclass(frozen=True)
class Geo:
    """A geolocation selector: a continent, a country, or the default '*'."""

    continent: str | None = None
    country: str | None = None
    subdivision: str | None = None  # with a country (US states and a few others): read from live zones

    @property
    def is_default(self) -> bool:
        return self.continent is None and self.country is None


@dataclass(frozen=True)
class Cidr:
    """An IP-based routing selector: a location of a CIDR collection, or the default '*' (every client no
    location's block holds). Compiled records name the collection by name; a live zone holds its id."""

    collection: str
    location: str  # 1-16 of [0-9A-Za-z_-], or "*"

    @property
    def is_default(self) -> bool:
        return self.location == "*"


# The CIDR collection's content, carried as records of this pseudo-type so that the plan diffs it with the
# zone: one per location, named <location>.<CIDR_SUFFIX>.<zone>, its blocks as values. Never a DNS record: the
# Route 53 backend writes them with ChangeCidrCollection.
CIDR_TYPE = "CIDR"
CIDR_SUFFIX = "_cidr"


@dataclass(frozen=True)
class Record:
    name: str  # absolute, lowercase
    type: str  # A, AAAA, TXT, CNAME, NS, SOA
    values: tuple[str, ...] = ()  # empty for alias records
    ttl: int | None = 60  # None for alias records (Route 53 takes the target's TTL)
    set_id: str | None = None  # Route 53 SetIdentifier; required with a routing policy
    weight: int | None = None  # weighted routing
    geo: Geo | None = None  # geolocation routing
    alias: str | None = None  # alias target name in the same zone
    # Compiled records name a *center* here (its Route 53 health check, mapped to the check's id by the
    # backend); records read from a live zone carry whatever id the zone has.
    health_check: str | None = None
    evaluate_target_health: bool = False  # alias records: inherit the target's health (Route 53 ETH)
    failover: str | None = None  # PRIMARY | SECONDARY
    # Routing policies the compiler never writes, read from live zones so the audit sees them whole:
    multivalue: bool = False
    region: str | None = None  # latency routing: the AWS region the record stands for
    cidr: Cidr | None = None  # IP-based routing
    # The embedded backend only: each value's share of clients given it first, per mille, in value order
    # (globalaccel.dns.spread); () gives every client the values in their order.
    shares: tuple[int, ...] = ()

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.name, self.type, self.set_id or "")

    @property
    def policy(self) -> str:
        if self.weight is not None:
            return "weighted"
        if self.geo is not None:
            return "geolocation"
        if self.failover is not None:
            return "failover"
        if self.multivalue:
            return "multivalue"
        if self.region is not None:
            return "latency"
        if self.cidr is not None:
            return "ip-based"
        if self.type == CIDR_TYPE:
            return "cidr-location"
        return "simple"

    @property
    def value_count(self) -> int:
        """Values as Route 53 counts them for batch limits (an alias counts as one)."""
        return max(1, len(self.values))

    @property
    def char_count(self) -> int:
        """Characters as Route 53 counts them for batch limits: the values (or alias target)."""
        return sum(len(v) for v in self.values) if self.values else len(self.alias or "")
