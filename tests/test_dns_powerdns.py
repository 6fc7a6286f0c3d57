"""PowerDNS (Debian's pdns-server with gsqlite3 + geoip backends) on loopback, driven through its HTTP
API, queried with dnspython carrying ECS, and compared with the embedded server answer for answer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.edns
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from globalaccel.answers import Answers, Served
from globalaccel.dns import backend
from globalaccel.dns.embedded import DnsResponder
from globalaccel.dns.embedded_backend import snapshot_for
from globalaccel.dns.powerdns import (
    LuaValidationError,
    PowerDnsBackend,
    layout_for,
    lua_code,
    lua_dispatch,
    lua_for_answers,
    lua_record,
    validate_lua,
)
from globalaccel.routing import Health, RoutingTable
from globalaccel.routing.summary import route_table
from globalaccel.topology import load_stack
from tests.conftest import STACKS
from tests.services import free_port, powerdns_server
from tests.test_dns_embedded import NETWORKS, RunningServer

PROD = load_stack("prod", STACKS)
TABLE = route_table(PROD)
ANSWERS = Answers.from_table(TABLE, PROD)


# The test networks at /24, what resolvers send: PowerDNS answers no coarser source prefix (see
# test_a_source_prefix_coarser_than_24_gets_no_address).
NETWORKS_24 = {code: f"{network.split('/')[0]}/24" for code, network in NETWORKS.items()}
# Where PowerDNS's ifurlup checks the centers: loopback addresses with nothing listening (every center seen
# down, so each country gets its chosen path), never the stack's own center addresses, which are not on
# this machine (a check there would leave loopback).
HEALTH_PORT = free_port()
HEALTH = {c.id: f"http://127.0.99.{j + 1}:{HEALTH_PORT}" for j, c in enumerate(PROD.centers)}


@pytest.fixture(scope="module")
def pdns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, PowerDnsBackend]]:
    folder: Path = tmp_path_factory.mktemp("pdns")
    with powerdns_server(folder) as (port, api, key):
        provider = PowerDnsBackend(api, key, layout_for(PROD), PROD, health=HEALTH)
        assert provider.ensure_zone()
        yield port, provider


def query(port: int, subnet: str, name: str = PROD.service_name, rdtype: str = "A") -> dns.message.Message:
    address, prefix = subnet.split("/")
    q = dns.message.make_query(name, rdtype, use_edns=0, options=[dns.edns.ECSOption(address, int(prefix))])
    return dns.query.udp(q, "127.0.0.1", port=port, timeout=5)


def addresses(response: dns.message.Message) -> set[str]:
    """The A answers (after PowerDNS's CNAME to the country's own name)."""
    return {rr.address for rrset in response.answer if rrset.rdtype == dns.rdatatype.A for rr in rrset}


def sync(provider: PowerDnsBackend, table: RoutingTable) -> int:
    """The loop's publish path; returns the write requests it took."""
    return backend.publish(provider, Answers.from_table(table, PROD)).stats.requests


def test_powerdns_and_embedded_answer_alike_for_every_test_network(pdns: tuple[int, PowerDnsBackend]) -> None:
    port, provider = pdns
    assert sync(provider, TABLE) == 1
    with RunningServer(DnsResponder(snapshot_for(PROD, ANSWERS))) as embedded:
        for country, subnet in NETWORKS_24.items():
            theirs = query(port, subnet)
            ours = query(embedded.port, subnet)
            assert theirs.rcode() == ours.rcode() == dns.rcode.NOERROR
            assert addresses(theirs) == addresses(ours), country
            route = ANSWERS.country(country)
            assert addresses(theirs) == (set(route.addresses) if isinstance(route, Served) else set())
    assert addresses(query(port, NETWORKS_24["RU"])) == set()  # strict, no center: fails closed in PowerDNS too


def test_table_change_is_one_patch_and_rerun_is_none(pdns: tuple[int, PowerDnsBackend]) -> None:
    port, provider = pdns
    sync(provider, TABLE)
    germany = ANSWERS.country("DE")
    assert isinstance(germany, Served)
    victim = germany.answers[0]
    table = route_table(PROD, Health(frozenset(e.id for e in PROD.edges) - {victim.edge_id}, frozenset(PROD.center_ids)))
    before = provider.requests
    assert sync(provider, table) == 1
    assert provider.requests - before == 2  # one GET (list) + one PATCH
    assert victim.address not in addresses(query(port, NETWORKS_24["DE"]))
    assert sync(provider, table) == 0


def test_broken_lua_is_refused_before_it_reaches_powerdns() -> None:
    with pytest.raises(LuaValidationError, match="does not compile"):
        validate_lua("A \";local t={de={'198.18.0.1'} return t[countryCode()]\"")
    with pytest.raises(LuaValidationError, match="not an IP address"):
        lua_for_answers({"DE": ("198.18.0.1'} os.exit() --",)})
    for content in lua_for_answers({"DE": ("198.18.0.1",)}).values():
        validate_lua(content)
    keywords = [code for code in ("DO", "IN", "OR", "IF", "IS", "NO")]  # country codes that are Lua keywords
    validate_lua(lua_dispatch(keywords, "accel.example.net"))
    with pytest.raises(LuaValidationError, match="country code"):
        lua_dispatch(["DE'] os.exit() --"], "accel.example.net")
    # A snippet longer than a segment is stored in 255-byte strings and read back whole.
    long = lua_for_answers({"DE": tuple(f"198.18.0.{i}" for i in range(1, 60))})["DE"]
    assert long.count('" "') >= 2 and all(len(part) <= 255 for part in long.split('"')[1::2])
    assert lua_code(long)[1].count("198.18.0.") == 59


def test_why_validation_matters_powerdns_serves_servfail_for_broken_lua(pdns: tuple[int, PowerDnsBackend]) -> None:
    """Pushed straight through the API (bypassing our validation), broken Lua is accepted and then
    every query for the name fails. This is the behaviour validate_lua exists to prevent."""
    port, provider = pdns
    name = f"broken.{PROD.zone}."
    provider._http("PATCH", f"/zones/{provider.layout.zone}", {"rrsets": [{"name": name, "type": "LUA", "ttl": 60, "changetype": "REPLACE",
                   "records": [{"content": "A \";local t={ return\"", "disabled": False}]}]})
    try:
        assert query(port, NETWORKS["DE"], name=name).rcode() == dns.rcode.SERVFAIL
    finally:
        provider._http("PATCH", f"/zones/{provider.layout.zone}", {"rrsets": [{"name": name, "type": "LUA", "changetype": "DELETE"}]})


def synced_for_audit(pdns: tuple[int, PowerDnsBackend], monkeypatch: pytest.MonkeyPatch) -> tuple[int, PowerDnsBackend, Any]:
    """PowerDNS holding the prod table, and audit options that read it as the loop would open it."""
    from globalaccel.audit.run import AuditOptions
    from globalaccel.settings import BackendSettings

    port, provider = pdns
    sync(provider, TABLE)
    monkeypatch.setenv("PDNS_API_KEY", provider.api_key)
    options = AuditOptions(source="powerdns", backend=BackendSettings(kind="powerdns", endpoint_url=provider.base.split("/api/")[0],
                                                                      center_health=tuple(f"{c}={url}" for c, url in HEALTH.items())),
                           dns=f"127.0.0.1:{port}")
    return port, provider, options


def test_audit_through_powerdns_with_ecs_is_clean_and_finds_a_tampered_answer(pdns: tuple[int, PowerDnsBackend],
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from globalaccel.audit.run import run_audit

    _port, provider, options = synced_for_audit(pdns, monkeypatch)
    report = run_audit(PROD, options)
    assert report.violations == []
    served = [r for r in report.results if r.status == "served"]
    assert len(served) >= 150  # most countries' networks: PowerDNS agrees with us on where they are
    # Tamper: PowerDNS now also answers Russia (strict: no center at all) with a Singapore edge.
    # The dispatch record now sends Russian clients to Singapore's own name.
    rtype, code = lua_code(next(r for r in provider.records() if r.type == "LUA" and r.name == provider.layout.service).values[0])
    to_singapore = f"local c=countryCode() if c=='ru' then return 'sg.cc.{PROD.zone.rstrip('.')}' end"
    tampered = lua_record(rtype, code.replace("local c=countryCode()", to_singapore, 1))
    provider._http("PATCH", f"/zones/{provider.layout.zone}", {"rrsets": [{"name": provider.layout.service, "type": "LUA", "ttl": 60,
                   "changetype": "REPLACE", "records": [{"content": tampered, "disabled": False}]}]})
    report = run_audit(PROD, options)
    assert ("fail_closed_violated", "RU") in {(v.kind, v.subject) for v in report.violations}


def test_an_audit_that_cannot_place_clients_never_says_compliant(pdns: tuple[int, PowerDnsBackend],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe record that tells where PowerDNS places a network answers nonsense: no country can be
    verified, so the verdict is NOT VERIFIED (coverage is a verdict input), never COMPLIANT."""
    from globalaccel.audit.findings import NOT_VERIFIED
    from globalaccel.audit.run import run_audit

    _port, provider, options = synced_for_audit(pdns, monkeypatch)
    clean = run_audit(PROD, options)
    assert clean.violations == [] and clean.coverage["verified_demand_share"] > 0.5
    provider._http("PATCH", f"/zones/{provider.layout.zone}", {"rrsets": [{
        "name": provider.layout.geo_probe, "type": "LUA", "ttl": 60, "changetype": "REPLACE",
        "records": [{"content": "TXT \"'zz'\"", "disabled": False}]}]})
    try:
        report = run_audit(PROD, options)
        assert report.violations == [] and report.verdict == NOT_VERIFIED
        assert report.coverage["verified_demand_share"] == 0.0 and "RU" in report.coverage["strict_unverified"]
    finally:
        sync(provider, TABLE)  # restores the probe record


def test_a_country_served_out_of_region_in_one_of_its_networks_is_found(pdns: tuple[int, PowerDnsBackend],
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Tampered by hand: PowerDNS answers Germany correctly, except for clients in one German network,
    which it sends to a Singapore edge. The audit asks several networks per country, so it is found."""
    from globalaccel.audit.run import run_audit
    from globalaccel.audit.sources import country_networks

    port, provider, options = synced_for_audit(pdns, monkeypatch)
    german = country_networks()["DE"]
    assert len(german) >= 3
    odd_one = german[-1]  # not the first, most solid network, which a one-network audit would ask
    singapore = next(e for e in PROD.edges if e.country == "SG").address_for("ap-southeast-1")
    # Debian's country database gives PowerDNS no coordinates: every German network is answered by the
    # principal cell's record (test_powerdns_cells.py covers the per-cell placement).
    germany = f"{ANSWERS.principal_cell('DE')}.{provider.layout.countries}"
    rtype, code = lua_code(next(r for r in provider.records() if r.type == "LUA" and r.name == germany).values[0])
    tampered = lua_record(rtype, code.replace(";", f";if netmask({{'{odd_one}'}}) then return {{'{singapore}'}} end ", 1))
    provider._http("PATCH", f"/zones/{provider.layout.zone}", {"rrsets": [{"name": germany, "type": "LUA", "ttl": 60,
                   "changetype": "REPLACE", "records": [{"content": tampered, "disabled": False}]}]})
    try:
        assert addresses(query(port, odd_one)) == {singapore}  # the tampering is live in the real server
        assert addresses(query(port, german[0])) != {singapore}
        report = run_audit(PROD, options)
        assert ("out_of_region_answer", "DE") in {(v.kind, v.subject) for v in report.violations}
    finally:
        sync(provider, TABLE)


def test_a_secondary_powerdns_fed_by_axfr_answers_like_the_primary(pdns: tuple[int, PowerDnsBackend], tmp_path: Path) -> None:
    """Operators replicate zones between their PowerDNS servers by AXFR. A DNS record holds at most 65,535
    bytes and AXFR carries LUA code as 255-byte strings: one record per country, each cut only where a cut
    is inert, arrives whole. A second real PowerDNS, secondary of the first, pulls the prod zone and
    answers every test network exactly as the primary does."""
    import json
    import time
    import urllib.request

    port, provider = pdns
    sync(provider, TABLE)
    assert max(len(v) for r in provider.records() for v in r.values) < 65535
    with powerdns_server(tmp_path, secondary=True) as (second_port, second_api, second_key):
        def call(method: str, path: str, body: Any = None) -> Any:
            request = urllib.request.Request(f"{second_api}/api/v1/servers/localhost{path}", method=method,
                                             data=None if body is None else json.dumps(body).encode(),
                                             headers={"X-API-Key": second_key, "Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=30) as response:
                raw = response.read()
            return json.loads(raw) if raw else None

        zone = provider.layout.zone
        call("POST", "/zones", {"name": zone, "kind": "Slave", "masters": [f"127.0.0.1:{port}"]})
        call("PUT", f"/zones/{zone}/axfr-retrieve")
        # Prod's zone holds a record per cell: wait until the secondary holds every rrset the primary does.
        expected = len(provider.records())
        deadline = time.monotonic() + 60
        while len(call("GET", f"/zones/{zone}").get("rrsets") or []) < expected and time.monotonic() < deadline:
            time.sleep(0.5)
        for country, subnet in NETWORKS_24.items():
            theirs, ours = query(second_port, subnet), query(port, subnet)
            assert theirs.rcode() == ours.rcode() == dns.rcode.NOERROR, country
            assert addresses(theirs) == addresses(ours), country
            route = ANSWERS.country(country)
            assert addresses(theirs) == (set(route.addresses) if isinstance(route, Served) else set()), country


def test_a_source_prefix_coarser_than_24_gets_no_address(pdns: tuple[int, PowerDnsBackend]) -> None:
    """PowerDNS scopes a LUA answer to the query's source prefix, not to the GeoIP block it decided on. Asked
    for 1.0.0.0/16, it would place the /16 in one country and a resolver would cache that answer, scope /16,
    for every /24 inside, although PowerDNS's own data puts another country's clients in some of them (the
    reviewer's case: Australia's answer over Chinese /24s). So a source prefix shorter than /24 gets no
    address, and each /24 inside still gets its own country's answer."""
    port, provider = pdns
    sync(provider, TABLE)
    probe = provider.layout.geo_probe
    placed = {}
    for third in range(4):
        network = f"1.0.{third}.0/24"
        reply = query(port, network, name=probe.rstrip("."), rdtype="TXT")
        placed[network] = next(b"".join(r.strings).decode().upper() for rrset in reply.answer for r in rrset)
    assert len(set(placed.values())) > 1, placed  # the /16 really spans countries in PowerDNS's own data
    coarse = query(port, "1.0.0.0/16")
    assert coarse.rcode() == dns.rcode.NOERROR and addresses(coarse) == set()
    for network, code in placed.items():
        route = ANSWERS.country(code) if code in PROD.countries else None
        expected = set(route.addresses) if isinstance(route, Served) else set()
        assert addresses(query(port, network)) == expected, (network, code)


def test_an_unlawful_path_waiting_in_a_chain_is_found_before_any_center_fails(pdns: tuple[int, PowerDnsBackend],
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Seeded by hand: Germany's record gets a Singapore edge's ap-southeast-1 address as a path further down
    its chain. With every center as it is, PowerDNS still answers Germany's first path, so asking cannot see
    it; the audit judges every address each country's record may answer, and a stray A record beside the
    records (at none.cc, where fail-closed and unlocated clients go) too. Sync then removes the stray."""
    from globalaccel.audit.run import run_audit

    port, provider, options = synced_for_audit(pdns, monkeypatch)
    singapore = next(e for e in PROD.edges if e.country == "SG").address_for("ap-southeast-1")
    # Germany has several cells: its principal cell's record holds the chain its main networks are answered with.
    germany = f"{ANSWERS.principal_cell('DE')}.{provider.layout.countries}"
    assert len(ANSWERS.cells_of_country["DE"]) > 1
    rtype, code = lua_code(next(r for r in provider.records() if r.type == "LUA" and r.name == germany).values[0])
    # The Singapore path goes last: the chosen path stays first, the unlawful one waits for a failure.
    assert code.endswith("}}})")
    tampered = lua_record(rtype, code[: -len("}}})")] + f"}}}},{{'127.0.99.4',{{'{singapore}'}}}}}})")
    assert tampered != lua_record(rtype, code)
    stray = {"name": provider.layout.nowhere, "type": "A", "ttl": 60, "changetype": "REPLACE",
             "records": [{"content": singapore, "disabled": False}]}
    chain = {"name": germany, "type": "LUA", "ttl": 60, "changetype": "REPLACE", "records": [{"content": tampered, "disabled": False}]}
    provider._http("PATCH", f"/zones/{provider.layout.zone}", {"rrsets": [chain, stray]})
    try:
        assert singapore not in addresses(query(port, NETWORKS_24["DE"]))  # not answered now: only latent
        report = run_audit(PROD, options)
        found = {(v.kind, v.subject) for v in report.violations}
        assert ("latent_out_of_region_answer", "DE") in found, found
        assert ("latent_out_of_region_answer", provider.layout.nowhere) in found, found
    finally:
        sync(provider, TABLE)
    assert not [r for r in provider.records() if r.name == provider.layout.nowhere and r.type == "A"]  # sync removed the stray
