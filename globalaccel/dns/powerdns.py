"""PowerDNS backend: a LUA CNAME sends each country to its own name; that name's LUA record answers.

    <service>           LUA  CNAME ";local s={['de']=1,...} local c=countryCode() if s[c] then return c..'.cc.<zone>' end ..."
    de.cc.<zone>        LUA  A     ";include('_lib.cc') return gachain({{'<center>',{'198.18.3.226',...}},{'<next center>',{...}}})"
    none.cc.<zone>      TXT  (no A: NODATA) for a country served nowhere (fail closed) or a client not located
    _lib.cc.<zone>      LUA  LUA   the shared functions every chain calls (lua_library)

A country of several client cells gets one more step (globalaccel.dns.powerdns_cells): `de.cc.<zone>` is a
LUA CNAME to the client's nearest cell's name, and each cell's name answers as a country's would.

PowerDNS locates the client from EDNS Client Subnet (edns-subnet-processing=yes) or the source
address through its GeoIP backend; `countryCode()` returns the lowercase ISO code. A country without
an answer is sent to `none.cc`, which has no address: NOERROR with no answer, never another region's
edge. One small record per country (rather than one table for the world) keeps each query's Lua small
(PowerDNS compiles the snippet per query) and every record far below a DNS record's 65,535 bytes; each
snippet is stored in segments of at most 255 bytes, as the PowerDNS docs ask of LUA records sent by
AXFR, so a secondary PowerDNS gets the same code. A table change is one PATCH (several only when its JSON
is over the API's body limit: PowerDnsBackend.apply).

Static stability: each country's record carries its failover chain (the centers its rule allows, in
routing.fallback's order, each with the same edges on their address for that center). Where a chain
has more than one center, PowerDNS itself picks its first live center with `ifurlup` over the centers'
health endpoints (the URL Route 53's checks use: `https://<center>:<probe port>/healthz`, or where
`--center-health` says), so a PowerDNS in every center fails over from its own view of health, with
no controller and no API call. Unknown is up: while PowerDNS has no verdict yet (it treats a first
lookup as failing) or sees every center of the chain down, the chosen path is answered, as the
embedded server does.

PowerDNS accepts Lua that does not compile and then answers SERVFAIL, so every snippet is compiled
here first with LuaJIT (the runtime PowerDNS links) through lupa; nothing invalid is pushed.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from globalaccel.answers import Answers, Decision, Served
from globalaccel.cells import Cell
from globalaccel.dns.backend import ApplyStats
from globalaccel.dns.ownership import ZoneOwnership
from globalaccel.dns.plan import Changes
from globalaccel.dns.powerdns_lua import LIBRARY as LIBRARY
from globalaccel.dns.powerdns_lua import LuaValidationError as LuaValidationError
from globalaccel.dns.powerdns_lua import lua_code as lua_code
from globalaccel.dns.powerdns_lua import lua_dispatch as lua_dispatch
from globalaccel.dns.powerdns_lua import lua_for_answers as lua_for_answers
from globalaccel.dns.powerdns_lua import lua_for_country as lua_for_country
from globalaccel.dns.powerdns_lua import lua_library as lua_library
from globalaccel.dns.powerdns_lua import lua_record as lua_record
from globalaccel.dns.powerdns_lua import validate_lua as validate_lua
from globalaccel.dns.records import RECORD_TTL, Record, fqdn
from globalaccel.errors import GlobalaccelError
from globalaccel.topology import Topology


class PowerDnsError(GlobalaccelError, RuntimeError):
    pass


@dataclass(frozen=True)
class PowerDnsLayout(ZoneOwnership):
    @property
    def geo_probe(self) -> str:
        """A TXT name that answers with the country PowerDNS places the client in (for audits)."""
        return f"_geo.{self.zone}"

    @property
    def countries(self) -> str:
        """The parent of every country's name (`de.cc.<zone>`)."""
        return f"cc.{self.zone}"

    def country_name(self, code: str) -> str:
        return f"{code.lower()}.{self.countries}"

    @property
    def nowhere(self) -> str:
        return f"none.{self.countries}"

    def owns(self, record: Record) -> bool:
        """Every record at the service name and under `cc.`, whatever its type: a stray A beside a country's
        LUA record would be answered with it, so sync removes it."""
        if record.name == self.owner_name:
            return record.type == "TXT"
        if record.name in (self.service, self.countries) or record.name.endswith("." + self.countries):
            return True
        return record.type == "LUA" and record.name == self.geo_probe


def layout_for(topology: Topology) -> PowerDnsLayout:
    return PowerDnsLayout(fqdn(topology.zone), fqdn(topology.service_name), topology.stack)


def _netloc(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def compile_powerdns(topology: Topology, answers: Answers, ttl: int = RECORD_TTL,
                     health: Mapping[str, str] | None = None) -> list[Record]:
    """The records for `answers` (the ownership claim is the registry's: globalaccel.dns.backend).
    `health`: each center's health endpoint as a base URL (scheme://address:port); default: HTTPS on the
    center's address and the probe port, what Route 53's checks ask (http when the stack probes http)."""
    scheme = "http" if topology.probe.kind == "http" else "https"
    where = {c.id: f"{scheme}://{_netloc(c.address)}:{topology.probe.port}" for c in topology.centers}
    where.update(health or {})
    unknown = sorted(set(where) - set(topology.center_ids))
    if unknown:
        raise PowerDnsError(f"--center-health names {', '.join(unknown)}, not a center of stack {topology.stack}")
    parsed = {c: urllib.parse.urlsplit(url) for c, url in where.items()}
    bases = {(u.scheme, u.port) for u in parsed.values()}
    if len(bases) != 1 or any(u.hostname is None or u.port is None or u.scheme not in ("http", "https") for u in parsed.values()):
        raise PowerDnsError(f"every center's health endpoint must be scheme://address:port with one scheme and port "
                            f"(PowerDNS's ifurlup checks one URL at each center's address); got {sorted(where.values())}")
    scheme, port = bases.pop()
    url = f"{scheme}://health.{topology.zone.rstrip('.')}:{port}/healthz"
    from globalaccel.dns.powerdns_cells import cell_label, lua_nearest_cell

    layout = layout_for(topology)
    parent = layout.countries.rstrip(".")
    records: list[Record] = []
    served_codes: list[str] = []
    by_country: dict[str, list[Cell]] = {}
    for cell in topology.cells:
        by_country.setdefault(cell.country, []).append(cell)

    def answer(decision: Decision) -> str:
        assert isinstance(decision, Served)
        return lua_for_country(tuple((parsed[p.center].hostname, p.addresses) for p in decision.paths))

    for code in sorted(answers.cells_of_country):
        cell_ids = answers.cells_of_country[code]
        decisions = [answers.cell(cid) for cid in cell_ids]
        if not any(isinstance(d, Served) for d in decisions):
            continue  # the dispatch sends the country to `none`
        served_codes.append(code)
        if len(cell_ids) == 1:
            records.append(Record(layout.country_name(code), "LUA", (answer(decisions[0]),), ttl))
            continue
        # Several cells: the country's name picks the client's cell; each cell's name answers for it.
        records.append(Record(layout.country_name(code), "LUA", (lua_nearest_cell(by_country[code], cell_ids[0]),), ttl))
        for cid, decision in zip(cell_ids, decisions, strict=True):
            name = f"{cell_label(cid)}.{layout.countries}"
            records.append(Record(name, "LUA", (answer(decision),), ttl) if isinstance(decision, Served)
                           else Record(name, "TXT", (f'"no answer: {decision.state}"',), ttl))
    records[:0] = [Record(layout.service, "LUA", (lua_dispatch(served_codes, layout.zone.rstrip(".")),), ttl),
                   Record(layout.nowhere, "TXT", ('"no answer: served nowhere, or not located"',), ttl),
                   Record(f"{LIBRARY}.{layout.zone}", "LUA", (lua_library(url, parent),), ttl)]
    probe = 'TXT "countryCode()"'
    records.append(Record(layout.geo_probe, "LUA", (probe,), ttl))
    for record in records:
        if record.type == "LUA":
            validate_lua(record.values[0])
    return records


class PowerDnsBackend:
    """PowerDNS HTTP API: create the zone, list its rrsets, PATCH changes (applied at once)."""

    name = "powerdns"

    def __init__(self, api_url: str, api_key: str, layout: PowerDnsLayout, topology: Topology | None = None,
                 server_id: str = "localhost", timeout: float = 10.0,
                 health: Mapping[str, str] | None = None, max_body: int = 1_800_000) -> None:
        self.base = api_url.rstrip("/") + f"/api/v1/servers/{server_id}"
        self.api_key = api_key
        self.layout = layout
        self.topology = topology
        self.timeout = timeout
        self.requests = 0
        self.absent_ok = False  # a dry run reads a zone that does not exist yet as empty
        self.health = health  # where PowerDNS checks each center (compile_powerdns)
        self.max_body = max_body  # bytes of JSON per PATCH (PowerDNS's webserver-max-bodysize is 2 MB by default)

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
        if not changes:
            return {"requests": 0, "tokens": 0}
        rough = sum(200 + sum(len(v) for v in c.record.values) for c in changes.all)  # JSON around each rrset
        return {"requests": max(1, -(-rough // self.max_body)), "tokens": 0}

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
        """One PATCH for the whole change set, which PowerDNS applies at once, unless its JSON exceeds
        `max_body` (PowerDNS refuses bodies over webserver-max-bodysize, 2 MB by default: a first push of
        prod's cells is about 2 MB). Then several PATCHes, in an order where every name is in place before a
        name that leads to it: cells' records, then countries', then the service name, deletions last."""
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
        for batch in self._batches(rrsets):
            stats.attempts += 1
            self._http("PATCH", f"/zones/{self.layout.zone}", {"rrsets": batch})
            stats.requests += 1
            stats.batches.append(len(batch))

    def _batches(self, rrsets: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        if len(json.dumps({"rrsets": rrsets})) <= self.max_body:
            return [rrsets]
        countries = self.layout.countries

        def stage(rrset: dict[str, Any]) -> int:
            name = rrset["name"]
            if rrset["changetype"] == "DELETE":
                return 3
            if name == f"{LIBRARY}.{self.layout.zone}":
                return -1  # every chain and nearest-cell record include()s it
            if name.endswith("." + countries):
                return 1 if len(name) == len(countries) + 3 else 0  # `de.cc.` leads to `de-2950159.cc.`
            return 2
        out: list[list[dict[str, Any]]] = [[]]
        size = 0
        for rrset in sorted(rrsets, key=stage):
            one = len(json.dumps(rrset)) + 2
            if out[-1] and size + one > self.max_body - 64:
                out.append([])
                size = 0
            out[-1].append(rrset)
            size += one
        return out
