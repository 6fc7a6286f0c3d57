"""PowerDNS backend: one LUA record answers every country from the routing table.

    <service>  LUA  A ";local t={['de']={{'<center>',{'198.18.3.226',...}},{'<next center>',{...}}},...} ..."

PowerDNS locates the client from EDNS Client Subnet (edns-subnet-processing=yes) or the source
address through its GeoIP backend; `countryCode()` returns the lowercase ISO code. A country absent
from the table (fail closed, or unknown location) gets `{}`: NOERROR with no answer, never another
region's edge. One record rather than one rrset per cell: a table change is one PATCH, and the
answer set per country is exactly the embedded server's.

Static stability: each country carries its failover chain (the centers its rule allows, in
routing.fallback's order, each with the same edges on their address for that center). Where a chain
has more than one center, PowerDNS itself picks its first live center with `ifurlup` over the centers'
`/healthz` (the endpoint every DNS server's CenterWatch probes), so a PowerDNS in every center fails
over from its own view of health, with no controller and no API call. Unknown is up: while PowerDNS has
no verdict yet (it treats a first lookup as failing) or sees every center of the chain down, the chosen
path is answered, as the embedded server does.

PowerDNS accepts Lua that does not compile and then answers SERVFAIL, so every snippet is compiled
here first with LuaJIT (the runtime PowerDNS links) through lupa; nothing invalid is pushed.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from globalaccel.answers import Answers
from globalaccel.dns.backend import ApplyStats
from globalaccel.dns.ownership import ZoneOwnership
from globalaccel.dns.plan import Changes
from globalaccel.dns.records import RECORD_TTL, Record, fqdn
from globalaccel.errors import GlobalaccelError
from globalaccel.topology import Topology

_SAFE_ADDRESS = re.compile(r"^[0-9a-fA-F:.]+$")


class LuaValidationError(GlobalaccelError, ValueError):
    pass


class PowerDnsError(GlobalaccelError, RuntimeError):
    pass


def validate_lua(content: str) -> None:
    """Compile a LUA record's snippet with LuaJIT; raise LuaValidationError with the parser's message."""
    from lupa import luajit21

    _, _, body = content.partition(" ")
    if not body.startswith('"') or not body.endswith('"') or len(body) < 2:
        raise LuaValidationError(f"LUA record content must be '<TYPE> \"<lua>\"', got {content[:60]!r}")
    code = body[1:-1]
    if '"' in code:
        raise LuaValidationError("the Lua snippet must not contain double quotes (the record data is a quoted string)")
    chunk = code[1:] if code.startswith(";") else f"return {code}"
    runtime = luajit21.LuaRuntime(register_eval=False)
    error = runtime.eval("function(src) local f, err = loadstring(src) return err end")(chunk)
    if error is not None:
        raise LuaValidationError(f"Lua does not compile: {error}")


def _lua_addresses(addresses: tuple[str, ...]) -> str:
    for a in addresses:
        if not _SAFE_ADDRESS.match(a):
            raise LuaValidationError(f"refusing to embed {a!r} in Lua: not an IP address")
    return "{" + ",".join(repr(a) for a in addresses) + "}"


def lua_for_answers(answers: dict[str, tuple[str, ...]]) -> str:
    """One path per country, no failover in the data plane."""
    return lua_for_chains({code: ((None, addresses),) for code, addresses in answers.items()}, None)


def lua_for_chains(chains: Mapping[str, tuple[tuple[str | None, tuple[str, ...]], ...]], health_url: str | None) -> str:
    """Per country, its paths in failover order as (health address of the path's center, answer addresses).
    A chain of one path answers it as is; a longer one asks `ifurlup(health_url, {{center1},{center2},..})`
    for the first set with a live center. With backupSelector 'all', a lookup where none is live (or
    PowerDNS has no verdict yet) returns every set's address, so one address back means "this center is
    the first live one" and anything else means the chosen path."""
    entries = []
    for code in sorted(chains):
        paths = chains[code]
        if len(paths) > 1 and (health_url is None or any(h is None for h, _ in paths)):
            raise LuaValidationError(f"{code}: a failover chain needs a health URL and every center's health address")
        parts = []
        for health, addresses in paths:
            if health is not None and not _SAFE_ADDRESS.match(health):
                raise LuaValidationError(f"refusing to embed {health!r} in Lua: not an IP address")
            parts.append(f"{{{health!r},{_lua_addresses(addresses)}}}" if health is not None else f"{{0,{_lua_addresses(addresses)}}}")
        # Bracketed keys: several country codes are Lua keywords (do, in, or, if).
        entries.append(f"['{code.lower()}']={{{','.join(parts)}}}")
    table = f"local t={{{','.join(entries)}}} local p=t[countryCode()] if p==nil then return {{}} end"
    if not any(len(paths) > 1 for paths in chains.values()):
        return f"A \";{table} return p[1][2]\""
    if health_url is None or not re.fullmatch(r"https?://[A-Za-z0-9.-]+:[0-9]+/[A-Za-z0-9/_.-]*", health_url):
        raise LuaValidationError(f"refusing to embed health URL {health_url!r} in Lua")
    pick = (f"if #p==1 then return p[1][2] end local s={{}} for i,x in ipairs(p) do s[i]={{x[1]}} end "
            f"local u=ifurlup('{health_url}',s,{{backupSelector='all'}}) "
            "if #u==1 then for _,x in ipairs(p) do if x[1]==u[1] then return x[2] end end end return p[1][2]")
    return f"A \";{table} {pick}\""


@dataclass(frozen=True)
class PowerDnsLayout(ZoneOwnership):
    @property
    def geo_probe(self) -> str:
        """A TXT name that answers with the country PowerDNS places the client in (for audits)."""
        return f"_geo.{self.zone}"

    def owns(self, record: Record) -> bool:
        if record.name == self.owner_name:
            return record.type == "TXT"
        return record.type == "LUA" and record.name in (self.service, self.geo_probe)


def layout_for(topology: Topology) -> PowerDnsLayout:
    return PowerDnsLayout(fqdn(topology.zone), fqdn(topology.service_name), topology.stack)


def health_url(topology: Topology, port: int) -> str:
    """The URL PowerDNS checks each center at (connecting to the center's health address): the same
    `/healthz` on the probe port that every DNS server's CenterWatch probes."""
    return f"http://health.{topology.zone.rstrip('.')}:{port}/healthz"


def compile_powerdns(topology: Topology, answers: Answers, ttl: int = RECORD_TTL,
                     health: Mapping[str, tuple[str, int]] | None = None) -> list[Record]:
    """The LUA records for `answers` (the ownership claim is the registry's: globalaccel.dns.backend).
    `health`: where each center's /healthz answers (default: the center's address and the probe port)."""
    where = {c.id: (c.address, topology.probe.port) for c in topology.centers}
    where.update(health or {})
    unknown = sorted(set(where) - set(topology.center_ids))
    if unknown:
        raise PowerDnsError(f"--center-health names {', '.join(unknown)}, not a center of stack {topology.stack}")
    ports = {port for _, port in where.values()}
    if len(ports) != 1:
        raise PowerDnsError(f"every center's /healthz must answer on one port for PowerDNS's ifurlup; got {sorted(ports)}")
    chains = {code: tuple((where[p.center][0], p.addresses) for p in served.paths) for code, served in answers.served_countries()}
    layout = layout_for(topology)
    content = lua_for_chains(chains, health_url(topology, ports.pop()))
    validate_lua(content)
    probe = 'TXT "countryCode()"'
    validate_lua(probe)
    return [Record(layout.service, "LUA", (content,), ttl), Record(layout.geo_probe, "LUA", (probe,), ttl)]


class PowerDnsBackend:
    """PowerDNS HTTP API: create the zone, list its rrsets, PATCH changes (applied at once)."""

    name = "powerdns"

    def __init__(self, api_url: str, api_key: str, layout: PowerDnsLayout, topology: Topology | None = None,
                 server_id: str = "localhost", timeout: float = 10.0,
                 health: Mapping[str, tuple[str, int]] | None = None) -> None:
        self.base = api_url.rstrip("/") + f"/api/v1/servers/{server_id}"
        self.api_key = api_key
        self.layout = layout
        self.topology = topology
        self.timeout = timeout
        self.requests = 0
        self.absent_ok = False  # a dry run reads a zone that does not exist yet as empty
        self.health = health  # where PowerDNS checks each center (compile_powerdns)

    @property
    def ownership(self) -> PowerDnsLayout:
        return self.layout

    def manages(self, record: Record) -> bool:
        return self.layout.owns(record)

    def render(self, answers: Answers) -> list[Record]:
        if self.topology is None:
            raise PowerDnsError("this PowerDNS backend was opened without a topology; open it with globalaccel.dns.factory")
        return compile_powerdns(self.topology, answers, health=self.health)

    def budget(self) -> dict[str, float]:
        return {}  # a local API with no quota

    def estimate(self, changes: Changes) -> dict[str, int]:
        return {"requests": 1 if changes else 0, "tokens": 0}

    def _http(self, method: str, path: str, body: Any | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"X-API-Key": self.api_key, "Content-Type": "application/json"})
        self.requests += 1
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            raise PowerDnsError(f"PowerDNS API {method} {path}: HTTP {exc.code}: {detail}") from exc
        except urllib.error.URLError as exc:
            raise PowerDnsError(f"PowerDNS API at {self.base} unreachable: {exc.reason}") from exc
        return json.loads(raw) if raw else None

    def ensure_zone(self, ns_host: str | None = None) -> bool:
        """Create the zone (Native) when missing. Returns True when it was created."""
        try:
            self._http("GET", f"/zones/{self.layout.zone}")
            return False
        except PowerDnsError as exc:
            if "HTTP 404" not in str(exc) and "HTTP 422" not in str(exc):
                raise
        self._http("POST", "/zones", {"name": self.layout.zone, "kind": "Native", "nameservers": [ns_host or f"ns1.{self.layout.zone}"]})
        return True

    def cap_negative_ttl(self, ttl: int) -> bool:
        """Resolvers cache "no answer" for min(SOA TTL, SOA MINIMUM) (RFC 2308 s.5); PowerDNS's default SOA
        says 3600. Lower both to `ttl`; returns True when it changed the SOA."""
        soa = next((r for r in self.records() if r.type == "SOA" and r.name == self.layout.zone), None)
        if soa is None:
            raise PowerDnsError(f"zone {self.layout.zone} has no SOA record")
        fields = soa.values[0].split()
        if soa.ttl is not None and soa.ttl <= ttl and int(fields[6]) <= ttl:
            return False
        fields[6] = str(min(int(fields[6]), ttl))
        self._http("PATCH", f"/zones/{self.layout.zone}", {"rrsets": [{
            "name": self.layout.zone, "type": "SOA", "ttl": ttl, "changetype": "REPLACE",
            "records": [{"content": " ".join(fields), "disabled": False}]}]})
        return True

    def records(self) -> list[Record]:
        """Every rrset in the zone, ours or not."""
        try:
            zone = self._http("GET", f"/zones/{self.layout.zone}")
        except PowerDnsError as exc:
            if self.absent_ok and ("HTTP 404" in str(exc) or "HTTP 422" in str(exc)):
                return []
            raise
        found = []
        for rrset in zone.get("rrsets", []):
            found.append(Record(fqdn(rrset["name"]), rrset["type"], tuple(r["content"] for r in rrset["records"]), int(rrset["ttl"])))
        return sorted(found, key=lambda r: r.key)

    def apply(self, changes: Changes, stats: ApplyStats) -> None:
        """One PATCH for the whole change set; PowerDNS applies it at once."""
        rrsets: list[dict[str, Any]] = []
        for change in changes.all:
            r = change.record
            if change.action == "DELETE":
                rrsets.append({"name": r.name, "type": r.type, "changetype": "DELETE"})
            else:
                if r.type == "LUA":
                    for content in r.values:
                        validate_lua(content)
                rrsets.append({"name": r.name, "type": r.type, "ttl": r.ttl, "changetype": "REPLACE",
                               "records": [{"content": v, "disabled": False} for v in r.values]})
        if not rrsets:
            return
        stats.attempts += 1
        self._http("PATCH", f"/zones/{self.layout.zone}", {"rrsets": rrsets})
        stats.requests += 1
        stats.batches.append(len(rrsets))
