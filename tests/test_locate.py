"""Client cells and the network locator: prod's cells, the emulated network database read with MaxMind's
reader, and the ECS scope rule checked against databases the tests build themselves with mmdb-writer."""

from __future__ import annotations

import functools
import ipaddress
import os
import random
from collections import defaultdict
from pathlib import Path

import iptocc
import maxminddb
import netaddr
from hypothesis import given, settings
from hypothesis import strategies as st
from mmdb_writer import MMDBWriter

from globalaccel.locate import CountryLocator, Location, NetworkMap, ipv4_country_grid
from globalaccel.topology import load_stack
from tests.conftest import STACKS

PROD = load_stack("prod", STACKS)


@functools.lru_cache(maxsize=1)
def prod_map() -> NetworkMap:
    assert PROD.client_networks is not None
    return NetworkMap.from_mmdb(PROD.client_networks, PROD.cells)


def test_prod_has_metro_cells_in_every_country() -> None:
    cells = PROD.cells
    assert len(cells) >= 2000
    by_country: dict[str, list[float]] = defaultdict(list)
    for cell in cells:
        by_country[cell.country].append(cell.demand)
    assert set(by_country) == set(PROD.countries)  # every country routed
    assert len(by_country["US"]) > 50 and len(by_country["IN"]) > 50  # not one answer for a whole subcontinent
    for code, demands in by_country.items():  # cells carry the country's people, no more, no fewer
        assert abs(sum(demands) - max(PROD.countries[code].population, 1)) <= 1e-6 * max(sum(demands), 1), code
    assert len({c.id for c in cells}) == len(cells)


def test_the_grid_holds_every_country_of_each_ipv4_24() -> None:
    """The /24 grid the locator reads: each /24's countries include the country of every address in it.
    Random addresses, and a /24 the dataset splits three ways (found by a reviewer: .5 AE, .130 NL, .200 OM)."""
    grid, codes = ipv4_country_grid()
    rng = random.Random(7)
    addresses = [rng.getrandbits(32) for _ in range(50_000)]
    exact = iptocc.country_code([str(ipaddress.IPv4Address(a)) for a in addresses])
    for a, code in zip(addresses, exact, strict=True):
        held = codes[int(grid[a >> 8])]
        assert (code or "") in held or (code is None and held == ()), (ipaddress.IPv4Address(a), code, held)
    split = int(ipaddress.IPv4Address("91.213.211.0")) >> 8
    assert {"AE", "NL", "OM"} <= set(codes[int(grid[split])])
    location, scope = CountryLocator(PROD.countries).locate("91.213.211.130", 32)
    assert location is not None and {"AE", "NL", "OM"} <= set(location.countries) and scope == 24


def test_emulated_database_places_networks_where_the_country_dataset_does() -> None:
    """Read with maxminddb (MaxMind's reader), every sampled network's record names the country iptocc
    gives it, and the locator puts it in a cell of that country."""
    assert PROD.client_networks is not None
    rng = random.Random(3)
    with maxminddb.open_database(str(PROD.client_networks)) as reader:
        networks = [(n, r) for n, r in reader]
    assert len(networks) > 50_000
    cells = PROD.cell_by_id
    located = prod_map()
    for network, record in rng.sample(networks, 2000):
        assert isinstance(record, dict)
        code = record["country"]["iso_code"]
        assert iptocc.country_code(str(network.network_address)) == code, network
        assert iptocc.country_code(str(network.broadcast_address)) == code, network
        location, scope = located.locate(str(network.network_address), network.prefixlen)
        assert location is not None and location.countries == (code,)
        assert location.cell is not None and cells[location.cell].country == code
        assert scope <= network.prefixlen


# ---- the scope rule, on a database the test writes -------------------------------------------------------
def _write(path: Path, entries: list[tuple[str, dict[str, object]]]) -> Path:
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="test-City")
    for network, record in entries:
        writer.insert_network(netaddr.IPSet([network]), record)
    writer.to_db_file(str(path))
    return path


def _record(code: str, lat: float, lon: float) -> dict[str, object]:
    return {"country": {"iso_code": code}, "location": {"latitude": lat, "longitude": lon}}


def _find_v4(code: str, avoid: set[int]) -> int:
    """The first /24 the country dataset gives `code`, for a network the test places elsewhere."""
    for top in range(2, 223):
        starts = [(top << 24) | (i << 8) for i in range(0, 1 << 16, 16)]
        for s, found in zip(starts, iptocc.country_code([str(ipaddress.IPv4Address(s)) for s in starts]), strict=True):
            if found == code and s >> 16 not in avoid:
                return s
    raise AssertionError(f"no /24 of {code}")


LONDON, MANCHESTER, BERLIN = (51.5, -0.12), (53.48, -2.24), (52.52, 13.40)


@functools.lru_cache(maxsize=1)
def small_map() -> tuple[NetworkMap, dict[str, str]]:
    tmp = f"/tmp/globalaccel-test-locate-{os.getpid()}.mmdb"  # one per test process (pytest-xdist workers)
    gb = _find_v4("GB", set())
    ru = _find_v4("RU", {gb >> 16})
    nets = {
        "london": str(ipaddress.IPv4Network((gb, 24))),
        "manchester": str(ipaddress.IPv4Network((gb + 256, 25))),
        "disputed": str(ipaddress.IPv4Network((ru, 24))),  # the city database says Berlin; the country dataset, Russia
        "london6": "2a00:23c0::/48",
    }
    path = _write(Path(tmp), [
        (nets["london"], _record("GB", *LONDON)),
        (nets["manchester"], _record("GB", *MANCHESTER)),
        (nets["disputed"], _record("DE", *BERLIN)),
        (nets["london6"], _record("GB", *LONDON)),
    ])
    return NetworkMap.from_mmdb(path, PROD.cells), nets


def _cell_near(code: str, lat: float, lon: float) -> str:
    from globalaccel.geo import great_circle_km

    return min((c for c in PROD.cells if c.country == code), key=lambda c: great_circle_km(c.lat, c.lon, lat, lon)).id


def test_scope_is_the_matched_range_not_the_source_prefix() -> None:
    located, nets = small_map()
    london = ipaddress.ip_network(nets["london"])
    manchester = ipaddress.ip_network(nets["manchester"])
    here, scope = located.locate(str(london.network_address + 7), 32)
    assert here == Location(_cell_near("GB", *LONDON), ("GB",)) and scope == 24  # a /32 inside a /24: the answer holds for the /24
    there, scope = located.locate(str(manchester.network_address), 24)
    # Manchester's /25 is only half of the /24 asked about; the other half is unlocatable: no answer, and a
    # scope longer than the source so no resolver reuses it for the half that was not located.
    assert there is None and scope == 25
    assert located.locate(str(manchester.network_address + 3), 30) == (Location(_cell_near("GB", *MANCHESTER), ("GB",)), 25)
    # A source prefix spanning London's /24 and Manchester's /25 (and a gap) gets nothing.
    assert located.locate(str(london.network_address), 22) == (None, 24)


def test_networks_two_countries_claim_get_both_rules() -> None:
    located, nets = small_map()
    disputed = ipaddress.ip_network(nets["disputed"])
    location, scope = located.locate(str(disputed.network_address + 1), 32)
    assert location is not None and location.countries == ("DE", "RU") and scope == 24
    assert location.cell == _cell_near("DE", *BERLIN)


def test_ipv6_networks_are_located_and_scoped() -> None:
    located, _ = small_map()
    for srclen in (48, 56, 64, 128):
        assert located.locate("2a00:23c0::1", srclen) == (Location(_cell_near("GB", *LONDON), ("GB",)), 48)
    location, scope = located.locate("2a00:23c0::", 32)  # wider than the network: the rest of the /32 is unknown
    assert location is None and scope == 48
    assert located.locate("2001:db8::1", 56)[0] is None


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(8, 32), st.sampled_from(["london", "manchester", "disputed"]))
def test_an_answer_covers_every_address_its_scope_lets_a_resolver_reuse_it_for(offset: int, srclen: int, which: str) -> None:
    """The RFC 7871 property a caching resolver depends on. Scope <= source: every address of the scope
    block is located alike (a resolver may reuse the answer for any of them). Scope > source: a resolver
    reuses it only for the same source prefix, so the answer must be lawful for every country in that prefix."""
    located, nets = small_map()
    base = ipaddress.ip_network(nets[which])
    address = ipaddress.IPv4Address((int(base.network_address) & ~0xFFFF) | (offset & 0xFFFF))  # near the networks
    location, scope = located.locate(str(address), srclen)
    block = ipaddress.ip_network((int(address) >> (32 - min(scope, srclen)) << (32 - min(scope, srclen)), min(scope, srclen)))
    rng = random.Random(offset)
    samples = {block.network_address, block.broadcast_address,
               *(block.network_address + rng.randrange(block.num_addresses) for _ in range(32))}
    for sample in samples:
        exact, _ = located.locate(str(sample), 32)
        if scope <= srclen:
            assert exact == location, (address, srclen, sample)
        elif location is not None:
            assert exact is not None and set(exact.countries) <= set(location.countries), (address, srclen, sample)


def test_country_locator_scopes_at_its_grain_and_widens_only_when_one_country_throughout() -> None:
    locator = CountryLocator(PROD.countries)
    assert locator.locate("8.8.8.8", 32) == (Location(None, ("US",)), 24)
    location, scope = locator.locate("85.214.0.0", 16)
    assert location == Location(None, ("DE",)) and scope == 16
    wide, scope = locator.locate("81.0.0.0", 8)  # many countries, holes: no answer
    assert wide is None or len(wide.countries) > 1
    assert scope == 24
