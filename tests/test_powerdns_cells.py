"""PowerDNS per client cell: Debian's pdns-server on loopback, its geoip backend reading the stack's own
city-level network database (the file `cells.networks` names), prod's table pushed through the HTTP API,
then asked with ECS from networks the database holds. PowerDNS reads the database itself (libmaxminddb)
and runs the pushed Lua itself; the expectation is each network's own cell's decision, from the locator
the embedded server uses."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dns.edns
import dns.message
import dns.query
import dns.rdatatype
import pytest

from globalaccel.answers import Answers, Served
from globalaccel.dns import backend
from globalaccel.dns.powerdns import PowerDnsBackend, compile_powerdns, layout_for, lua_code
from globalaccel.dns.powerdns_cells import cell_label
from globalaccel.locate import NetworkMap, locator_for
from globalaccel.routing.summary import route_table
from globalaccel.topology import load_stack
from tests.conftest import STACKS
from tests.services import free_port, powerdns_server

PROD = load_stack("prod", STACKS)
ANSWERS = Answers.from_table(route_table(PROD), PROD)
# Where ifurlup checks the centers: closed loopback ports (every center seen down: each cell gets its chosen
# path), never the stack's own center addresses, which are not on this machine.
HEALTH_PORT = free_port()
HEALTH = {c.id: f"http://127.0.99.{j + 1}:{HEALTH_PORT}" for j, c in enumerate(PROD.centers)}


@pytest.fixture(scope="module")
def pdns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    assert PROD.client_networks is not None
    folder: Path = tmp_path_factory.mktemp("pdns-cells")
    with powerdns_server(folder, geoip=str(PROD.client_networks)) as (port, api, key):
        provider = PowerDnsBackend(api, key, layout_for(PROD), PROD, health=HEALTH)
        assert provider.ensure_zone()
        backend.publish(provider, ANSWERS)
        yield port


@contextmanager
def fresh_zone(tmp_path: Path, max_body: int = 1_800_000) -> Iterator[tuple[int, PowerDnsBackend, backend.SyncReport]]:
    """A PowerDNS of its own reading the stack's network database, prod's table pushed: for tests that tamper."""
    assert PROD.client_networks is not None
    with powerdns_server(tmp_path, geoip=str(PROD.client_networks)) as (port, api, key):
        provider = PowerDnsBackend(api, key, layout_for(PROD), PROD, health=HEALTH, max_body=max_body)
        provider.ensure_zone()
        yield port, provider, backend.publish(provider, ANSWERS)


def ask(port: int, network: str) -> set[str]:
    address, prefix = network.split("/")
    # Resolvers send /24 (IPv4) and /56 (IPv6); PowerDNS answers nothing coarser (powerdns.lua_dispatch).
    bits = max(int(prefix), 24 if ":" not in address else 56)
    rdtype = "AAAA" if ":" in address else "A"
    query = dns.message.make_query(PROD.service_name, rdtype, use_edns=0, options=[dns.edns.ECSOption(address, bits)])
    response = dns.query.udp(query, "127.0.0.1", port=port, timeout=5)
    return {rr.address for rrset in response.answer if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA) for rr in rrset}


def expected(cell_id: str) -> set[str]:
    decision = ANSWERS.cell(cell_id)
    return set(decision.addresses) if isinstance(decision, Served) else set()


def test_each_network_gets_its_own_cells_answer_from_powerdns(pdns: int) -> None:
    """Every cell of the ten countries with the most cells, plus a random sample of all others, asked from
    a network the database places there (IPv4; the service has A records only)."""
    located = locator_for(PROD)
    assert isinstance(located, NetworkMap)
    by_cell = {loc.cell: nets for loc, nets in located.sample_networks(1).items()
               if loc.cell is not None and ":" not in nets[0]}
    cells_of = defaultdict(list)
    for cell in PROD.cells:
        cells_of[cell.country].append(cell.id)
    busiest = sorted(cells_of, key=lambda c: -len(cells_of[c]))[:10]
    chosen = [cid for code in busiest for cid in cells_of[code]]
    rest = sorted(set(by_cell) - set(chosen))
    chosen += random.Random(5).sample(rest, 200)
    wrong, seen_by_country = [], defaultdict(set)
    asked = 0
    for cid in chosen:
        if cid not in by_cell:
            continue
        asked += 1
        got = ask(pdns, by_cell[cid][0])
        if got != expected(cid):
            wrong.append((cid, by_cell[cid][0], sorted(got), sorted(expected(cid))))
        seen_by_country[cid.split("-")[0]].add(frozenset(got))
    assert asked > 500, asked
    assert not wrong, (len(wrong), wrong[:5])
    # Not vacuous: within one country, cells get different answers (the country's name does pick a cell).
    assert max(len(v) for v in seen_by_country.values()) > 20, {k: len(v) for k, v in seen_by_country.items()}


def test_a_network_without_coordinates_gets_the_principal_cells_answer() -> None:
    """PowerDNS reports no coordinates as "0.000000 0.000000": the snippet answers the principal cell, as the
    locator answers a record without a location (not the cell nearest to 0N 0E). Run in LuaJIT (the runtime
    PowerDNS links) with `latlon` and `include` stubbed: PowerDNS cannot be made to report a given position."""
    from lupa import luajit21

    from globalaccel.dns.powerdns import LIBRARY

    layout = layout_for(PROD)
    records = {r.name: r for r in compile_powerdns(PROD, ANSWERS, health=HEALTH)}
    _, library = lua_code(records[f"{LIBRARY}.{layout.zone}"].values[0])
    _, us = lua_code(records[f"us.{layout.countries}"].values[0])
    runtime = luajit21.LuaRuntime(register_eval=False)
    runtime.execute(library)
    run = runtime.eval("function(src, ll) latlon = function() return ll end include = function() end return loadstring(src)() end")
    principal = f"{cell_label(ANSWERS.principal_cell('US'))}.{layout.countries.rstrip('.')}"
    assert run(us[1:], "0.000000 0.000000") == principal
    assert run(us[1:], "") == principal
    seattle = run(us[1:], "47.606200 -122.332100")
    assert seattle != principal and seattle != run(us[1:], "25.774300 -80.193600")  # Miami is another cell


def test_a_country_record_sending_clients_to_another_countrys_cell_is_found(tmp_path: Path) -> None:
    """Seeded by hand into the live zone: Germany's record names a Chinese cell among its own. The audit's
    reading of the live records (latent_paths, as `audit --source powerdns` runs it) names the record."""
    from globalaccel.audit.powerdns_latent import latent_paths
    from globalaccel.dns.powerdns import lua_record

    layout = layout_for(PROD)
    with fresh_zone(tmp_path) as (_, provider, _):
        health = [h.split("//")[1].split(":")[0] for h in HEALTH.values()]
        assert not latent_paths(PROD, provider.records(), layout, health)
        germany = layout.country_name("DE")
        rtype, code = lua_code(next(r for r in provider.records() if r.name == germany).values[0])
        chinese = next(c.id for c in PROD.cells if c.country == "CN")
        german = ANSWERS.cells_of_country["DE"][1]
        tampered = lua_record(rtype, code.replace(f"'{german}'", f"'{chinese}'", 1))
        assert tampered != lua_record(rtype, code)
        provider._http("PATCH", f"/zones/{layout.zone}", {"rrsets": [{"name": germany, "type": "LUA", "ttl": 60,
                       "changetype": "REPLACE", "records": [{"content": tampered, "disabled": False}]}]})
        found = {(f.kind, f.subject) for f in latent_paths(PROD, provider.records(), layout, health)}
        assert ("dispatch_tampered", germany) in found, found


def test_a_push_larger_than_the_api_takes_is_split_and_arrives_whole(tmp_path: Path) -> None:
    """PowerDNS refuses a body over webserver-max-bodysize (2 MB by default; prod's first push is about
    1.6 MB of JSON). With the backend's limit lowered to 200 KB, the push takes several PATCHes, the library and the
    cells before the names that lead to them, and the real server then holds every record and answers."""
    with fresh_zone(tmp_path, max_body=200_000) as (port, provider, result):
        assert result.stats.requests >= 5, result.stats
        held = {(r.name, r.type): r.values for r in provider.records()}
        for record in compile_powerdns(PROD, ANSWERS, health=HEALTH):
            assert held.get((record.name, record.type)) == record.values, record.name
        located = locator_for(PROD)
        assert isinstance(located, NetworkMap)
        for location, nets in list(located.sample_networks(1).items())[:50]:
            if location.cell is not None and ":" not in nets[0]:
                assert ask(port, nets[0]) == expected(location.cell), nets[0]


def test_code_that_builds_its_answer_is_a_violation(tmp_path: Path) -> None:
    """A reviewer's seeds, by hand into the live zone: a German cell's record answers a Singapore edge's
    address built by joining two strings, and the dispatch turns Russia (fail closed) into Singapore. Neither
    writes an address or a name whole, so the latent-path check reads nothing in them; PowerDNS answers both.
    The audit's shape check flags both records as code the compiler does not write."""
    from globalaccel.audit.powerdns_latent import latent_paths
    from globalaccel.audit.powerdns_shapes import uncompiled_records
    from globalaccel.dns.powerdns import lua_record

    layout = layout_for(PROD)
    with fresh_zone(tmp_path) as (port, provider, _):
        assert not uncompiled_records(provider.records(), layout)
        german = f"{ANSWERS.cells_of_country['DE'][1]}.{layout.countries}"
        singapore = next(e for e in PROD.edges if e.country == "SG").address_for("ap-southeast-1")
        head, tail = singapore.rsplit(".", 2)[0] + ".", ".".join(singapore.rsplit(".", 2)[1:])
        built = lua_record("A", f";return {{'{head}'..'{tail}'}}")
        rtype, dispatch = lua_code(next(r for r in provider.records() if r.name == layout.service).values[0])
        turned = lua_record(rtype, dispatch.replace("local c=countryCode()", "local c=countryCode() if c=='ru' then c='sg' end", 1))
        assert turned != lua_record(rtype, dispatch)
        provider._http("PATCH", f"/zones/{layout.zone}", {"rrsets": [
            {"name": name, "type": "LUA", "ttl": 60, "changetype": "REPLACE", "records": [{"content": content, "disabled": False}]}
            for name, content in ((german, built), (layout.service, turned))]})
        located = locator_for(PROD)
        assert isinstance(located, NetworkMap)
        network = next(n[0] for loc, n in located.sample_networks(1).items() if loc.cell == german.split(".")[0] and ":" not in n[0])
        assert ask(port, network) == {singapore}  # live in the real server
        health = [h.split("//")[1].split(":")[0] for h in HEALTH.values()]
        assert not [f for f in latent_paths(PROD, provider.records(), layout, health) if german in f.subject or "dispatch" in f.subject]
        flagged = {f.subject for f in uncompiled_records(provider.records(), layout) if f.kind == "record_not_compiled"}
        assert flagged == {german, layout.service}, flagged
