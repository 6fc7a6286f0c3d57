"""PowerDNS backend: one LUA record answers every country from the routing table.

    <service>  LUA  A ";local t={de={'198.18.3.226',...},...} return t[countryCode()] or {}"

PowerDNS locates the client from EDNS Client Subnet (edns-subnet-processing=yes) or the source
address through its GeoIP backend; `countryCode()` returns the lowercase ISO code. A country absent
from the table (fail closed, or unknown location) gets `{}`: NOERROR with no answer, never another
region's edge. One record rather than one rrset per cell: a table change is one PATCH, and the
answer set per country is exactly the embedded server's.

PowerDNS accepts Lua that does not compile and then answers SERVFAIL, so every snippet is compiled
here first with LuaJIT (the runtime PowerDNS links) through lupa; nothing invalid is pushed.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
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


def lua_for_answers(answers: dict[str, tuple[str, ...]]) -> str:
    entries = []
    for code in sorted(answers):
        addresses = answers[code]
        for a in addresses:
            if not _SAFE_ADDRESS.match(a):
                raise LuaValidationError(f"refusing to embed {a!r} in Lua: not an IP address")
        # Bracketed keys: several country codes are Lua keywords (do, in, or, if).
        entries.append(f"['{code.lower()}']={{{','.join(repr(a) for a in addresses)}}}")
    return f"A \";local t={{{','.join(entries)}}} return t[countryCode()] or {{}}\""


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


def compile_powerdns(topology: Topology, answers: Answers, ttl: int = RECORD_TTL) -> list[Record]:
    """The LUA records for `answers` (the ownership claim is the registry's: globalaccel.dns.backend)."""
    by_country = {code: served.addresses for code, served in answers.served_countries()}
    layout = layout_for(topology)
    content = lua_for_answers(by_country)
    validate_lua(content)
    probe = 'TXT "countryCode()"'
    validate_lua(probe)
    return [Record(layout.service, "LUA", (content,), ttl), Record(layout.geo_probe, "LUA", (probe,), ttl)]


class PowerDnsBackend:
    """PowerDNS HTTP API: create the zone, list its rrsets, PATCH changes (applied at once)."""

    name = "powerdns"

    def __init__(self, api_url: str, api_key: str, layout: PowerDnsLayout, topology: Topology | None = None,
                 server_id: str = "localhost", timeout: float = 10.0) -> None:
        self.base = api_url.rstrip("/") + f"/api/v1/servers/{server_id}"
        self.api_key = api_key
        self.layout = layout
        self.topology = topology
        self.timeout = timeout
        self.requests = 0
        self.absent_ok = False  # a dry run reads a zone that does not exist yet as empty

    @property
    def ownership(self) -> PowerDnsLayout:
        return self.layout

    def manages(self, record: Record) -> bool:
        return self.layout.owns(record)

    def render(self, answers: Answers) -> list[Record]:
        if self.topology is None:
            raise PowerDnsError("this PowerDNS backend was opened without a topology; open it with globalaccel.dns.factory")
        return compile_powerdns(self.topology, answers)

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
