"""Route 53 per client cell: IP-based routing over the stack's CIDR collection (globalaccel.dns.route53_cells).

What AWS accepts comes from its documentation and botocore's service model, not from moto: moto has no CIDR
collections, so the backend's requests are checked with botocore's Stubber (which validates every parameter
against the service model) and stored in moto extended by tests/moto_cidr.py (storage only)."""

from __future__ import annotations

import functools
import ipaddress
import json
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import iptocc
import pytest
from botocore.stub import Stubber

from globalaccel.answers import Answers, Served
from globalaccel.dns.backend import ApplyStats, BackendError, OwnedZone, claim_record, sync
from globalaccel.dns.plan import plan
from globalaccel.dns.records import CIDR_TYPE, Geo, Record
from globalaccel.dns.route53 import MAX_COLLECTION_BLOCKS, Route53Backend
from globalaccel.dns.route53_cells import CIDR_LOCATION_LIMIT, location_pseudo_name
from globalaccel.dns.route53_compile import compile_route53
from globalaccel.dns.route53_validate import Route53ValidationError, validate_records
from globalaccel.settings import Route53Settings
from tests.services import moto_server, route53_client
from tests.test_dns_route53 import LAYOUT, PROD, PROD_TABLE, cidr_provider, new_zone, prod_cell_records, prod_cells


@functools.lru_cache(maxsize=1)
def answers() -> Answers:
    return Answers.from_table(PROD_TABLE, PROD)


def _asked_directly(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> set[str]:
    first, size = int(network.network_address), network.num_addresses
    if network.version == 4:
        points = [first + base + host for base in range(0, size, 256) for host in (0, 1, 77, 128, 200, 255) if base + host < size]
    else:
        points = [first + (size - 1) * k // 64 for k in range(65)]
    addresses = [str(ipaddress.ip_address(p)) for p in points]
    return {str(c) for c in iptocc.country_code(addresses) if c}


def test_the_chosen_cells_fit_the_quotas_and_hold_only_their_own_countrys_networks() -> None:
    cells = prod_cells()
    assert 0 < len(cells.cells) <= CIDR_LOCATION_LIMIT
    assert cells.block_count <= PROD.route53.cidr_blocks and cells.blocks_left_out > 0  # the quota binds on prod
    principal = set(PROD.principal_cell.values())
    seen: set[str] = set()
    for cell_id in cells.cells:
        cell = PROD.cell_by_id[cell_id]
        assert cell_id not in principal  # the country tree already answers for it
        assert not PROD.residency.eligibility(cell.country, set(PROD.center_ids), PROD.center_ids).fail_closed
        for block in cells.blocks[cell_id]:
            network = ipaddress.ip_network(block)  # strict: no host bits
            assert 1 <= network.prefixlen <= (24 if network.version == 4 else 48)
            # The country dataset, asked directly at several addresses of every /24 (IPv4) or across the block
            # (IPv6), places all of it in the cell's country.
            assert _asked_directly(network) == {cell.country}, (cell_id, block)
            assert block not in seen
            seen.add(block)


def test_the_zone_routes_each_chosen_cell_to_its_own_chain_and_everyone_else_to_the_country_tree() -> None:
    records = compile_route53(PROD, answers(), cells=prod_cells())
    validate_records(records, LAYOUT.zone, PROD.countries, PROD.route53.max_records, PROD.route53.cidr_blocks)
    service = [r for r in records if r.name == LAYOUT.service]
    assert all(r.cidr is not None for r in service)  # no geolocation record beside them (AWS refuses the mix)
    default = next(r for r in service if r.cidr and r.cidr.is_default)
    assert default.alias == LAYOUT.geo_root and not default.evaluate_target_health
    assert {r.name for r in records if r.geo is not None and r.geo.continent} == {LAYOUT.geo_root}
    for cell_id in prod_cells().cells:
        mine = next(r for r in service if r.cidr and r.cidr.location == cell_id)
        decision = answers().cell(cell_id)
        assert isinstance(decision, Served)
        assert mine.alias == LAYOUT.cell_name(cell_id)
        chain_addresses = {v for r in records if r.name.endswith(LAYOUT.cell_name(cell_id)) for v in r.values}
        assert chain_addresses == {a for p in decision.paths for a in p.addresses}
    locations = [r for r in records if r.type == CIDR_TYPE]
    assert [r.name for r in locations] == [location_pseudo_name(c, LAYOUT.zone) for c in prod_cells().cells]


def test_cells_lose_their_chains_lowest_value_first_when_the_zone_quota_binds() -> None:
    full = [r for r in compile_route53(PROD, answers(), cells=prod_cells()) if r.type != CIDR_TYPE]
    country_only = compile_route53(PROD, answers())
    quota = len(country_only) + 4 + 1 + len(prod_cells().cells) + 100  # room for a handful of chains
    tight = replace(PROD, route53=replace(PROD.route53, max_records=quota))
    records = compile_route53(tight, answers(), cells=prod_cells())
    dns = [r for r in records if r.type != CIDR_TYPE]
    validate_records(records, LAYOUT.zone, PROD.countries, quota - 4, PROD.route53.cidr_blocks)
    assert len(dns) < len(full)
    with_chain = [r.cidr.location for r in dns if r.cidr and not r.cidr.is_default and r.alias != LAYOUT.geo_root]
    assert 0 < len(with_chain) < len(prod_cells().cells)
    order = list(prod_cells().cells)
    assert sorted(order.index(c) for c in with_chain)[0] == 0  # the most valuable cell kept its chain
    # A cell without a chain still has its record: to the country tree, as the default (never an empty location).
    assert {r.cidr.location for r in dns if r.cidr and not r.cidr.is_default} == set(order)


def test_no_cells_routed_by_network_when_the_stack_says_none() -> None:
    off = replace(PROD, route53=Route53Settings(cidr_cells=0))
    from globalaccel.dns.route53_cells import cidr_selection

    assert cidr_selection(off) is None
    records = compile_route53(off, answers(), cells=None)
    assert {r.name for r in records if r.geo is not None and r.geo.continent} == {LAYOUT.service}


def _stubbed(backend_blocks: dict[str, set[str]]) -> tuple[Route53Backend, Stubber]:
    client = boto3.client("route53", region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t")
    stubber = Stubber(client)
    backend = Route53Backend(client, "Z0123456789", LAYOUT, health_checks={c: f"check-{c}" for c in PROD.center_ids},
                             cidr_collection=("globalaccel-prod", "c8c02a84-7d6f-4c5e-9a3b-1f2e3d4c5b6a"))
    backend._live_blocks = {k: set(v) for k, v in backend_blocks.items()}
    backend._location_of_label = {k.lower(): k for k in backend_blocks}
    return backend, stubber


def test_collection_requests_move_blocks_in_one_transaction_within_the_documented_limits() -> None:
    """MOCK (botocore Stubber): moto has no CIDR API. Stubber validates each request against botocore's service
    model (types, lengths, required members); the request content is checked here against what AWS documents:
    at most 1,000 blocks per request, a move leaving and arriving in the same request."""
    many = [f"10.{i // 256}.{i % 256}.0/24" for i in range(1500)]
    live = {"aa-1": {"192.0.2.0/24", "198.51.100.0/24"}, "bb-2": {"203.0.113.0/24"}, "cc-3": set(many[:10])}
    backend, stubber = _stubbed(live)
    # Wanted: 198.51.100.0/24 moves aa-1 -> bb-2, a new location dd-4 with 1,500 blocks, cc-3 goes.
    changes = plan(
        [Record(location_pseudo_name(k, LAYOUT.zone), CIDR_TYPE, tuple(sorted(v)), None) for k, v in live.items()],
        [Record(location_pseudo_name("aa-1", LAYOUT.zone), CIDR_TYPE, ("192.0.2.0/24",), None),
         Record(location_pseudo_name("bb-2", LAYOUT.zone), CIDR_TYPE, ("198.51.100.0/24", "203.0.113.0/24"), None),
         Record(location_pseudo_name("dd-4", LAYOUT.zone), CIDR_TYPE, tuple(sorted(many)), None)],
        lambda r: True)
    early, arriving = backend._collection_requests(changes)
    assert all(sum(len(c["CidrList"]) for c in request) <= MAX_COLLECTION_BLOCKS for request in early + arriving)
    move = [request for request in early if any("198.51.100.0/24" in c["CidrList"] for c in request)]
    assert len(move) == 1
    (request,) = move
    actions = [(c["Action"], c["LocationName"]) for c in request if "198.51.100.0/24" in c["CidrList"]]
    assert actions == [("DELETE_IF_EXISTS", "aa-1"), ("PUT", "bb-2")]  # leave before arrive, one transaction
    # dd-4 is new: its blocks arrive later (just before its record), cc-3's ten leaving in the same requests.
    assert not any(c["LocationName"] == "dd-4" for request in early for c in request)
    put = {b for request in arriving for c in request if c["Action"] == "PUT" and c["LocationName"] == "dd-4" for b in c["CidrList"]}
    assert put == set(many) and len(arriving) == 2
    for block in many[:10]:
        (holder,) = [r for r in arriving if any(block in c["CidrList"] for c in r)]
        steps = [(c["Action"], c["LocationName"]) for c in holder if block in c["CidrList"]]
        assert steps == [("DELETE_IF_EXISTS", "cc-3"), ("PUT", "dd-4")]
    for request in early + arriving:
        stubber.add_response("change_cidr_collection", {"Id": str(uuid.uuid4())},
                             {"Id": "c8c02a84-7d6f-4c5e-9a3b-1f2e3d4c5b6a", "Changes": request})
    with stubber:
        stats = ApplyStats()
        for request in early + arriving:
            backend._change_collection(request, stats)
    stubber.assert_no_pending_responses()


def _live_locations(client: Any, zone_id: str) -> tuple[set[str], set[str]]:
    """(locations holding blocks, locations an IP-based record names), as boto3 lists them."""
    (collection,) = client.list_cidr_collections()["CidrCollections"]
    pages = client.get_paginator("list_cidr_blocks").paginate(CollectionId=collection["Id"])
    holding = {b["LocationName"] for page in pages for b in page["CidrBlocks"]}
    pages = client.get_paginator("list_resource_record_sets").paginate(HostedZoneId=zone_id)
    named = {r["CidrRoutingConfig"]["LocationName"] for page in pages for r in page["ResourceRecordSets"] if "CidrRoutingConfig" in r}
    return holding, named


def test_the_loop_publishes_cells_by_network_and_a_second_publish_changes_nothing() -> None:
    """moto + tests/moto_cidr.py (storage only): the zone and the collection as the loop leaves them, read back
    whole; publishing again finds nothing to change. After every request of the first publish, and of a second
    one that drops most locations (a smaller block quota), every location holding blocks has its record."""
    with moto_server() as url:
        client = route53_client(url)
        zone_id = new_zone(client)
        backend = cidr_provider(client, zone_id)
        unanswered: list[set[str]] = []

        def look(_: int) -> None:
            holding, named = _live_locations(client, zone_id)
            unanswered.append(holding - named)

        backend.after_batch = look
        first = sync(backend, prod_cell_records())
        assert first.converged and first.stats.requests > 0 and len(unanswered) > 3
        zone = OwnedZone(backend)
        again = plan(zone.records(), zone.with_claim(prod_cell_records()), zone.owns)
        assert len(again) == 0
        (collection,) = client.list_cidr_collections()["CidrCollections"]
        blocks = client.get_paginator("list_cidr_blocks").paginate(CollectionId=collection["Id"])
        listed = {(b["LocationName"], b["CidrBlock"]) for page in blocks for b in page["CidrBlocks"]}
        assert listed == {(c, b) for c in prod_cells().cells for b in prod_cells().blocks[c]}
        # Fewer blocks: most locations go, their blocks first.
        smaller = replace(PROD, route53=replace(PROD.route53, cidr_blocks=150))
        from globalaccel.dns.route53_cells import cidr_selection

        fewer = cidr_selection(smaller)
        assert fewer is not None and 0 < len(fewer.cells) < len(prod_cells().cells)
        backend.cidr_selection = fewer
        records = [claim_record(LAYOUT), *compile_route53(smaller, answers(), cells=fewer)]
        second = sync(backend, records)
        assert second.converged
        holding, named = _live_locations(client, zone_id)
        assert holding == set(fewer.cells) and named - {"*"} == holding
    assert all(not gap for gap in unanswered), [g for g in unanswered if g][:3]


def test_a_controller_without_the_lease_changes_no_block() -> None:
    """The lease guard stops collection requests as it stops record batches: nothing is written."""
    with moto_server() as url:
        client = route53_client(url)
        zone_id = new_zone(client)
        backend = cidr_provider(client, zone_id)
        backend.guard = lambda: False
        with pytest.raises(BackendError, match="no longer holds the lease"):
            sync(backend, prod_cell_records())
        holding, named = _live_locations(client, zone_id)
    assert holding == set() and named == set()


def test_a_zone_quota_too_small_for_the_locations_answers_by_geolocation_alone() -> None:
    """The IP-based records come all or none: a quota that holds the country tree but not one record per location
    gives the geolocation layout (no location, so the collection empties), never a zone the validator refuses."""
    country_only = [r for r in compile_route53(PROD, answers()) if ".cell." not in r.name and not (r.geo and r.geo.subdivision)]
    quota = len(country_only) + 4 + 10
    tight = replace(PROD, route53=replace(PROD.route53, max_records=quota))
    records = compile_route53(tight, answers(), cells=prod_cells())
    assert not [r for r in records if r.cidr is not None or r.type == CIDR_TYPE]
    assert {r.name for r in records if r.geo is not None and r.geo.continent} == {LAYOUT.service}
    validate_records(records, LAYOUT.zone, PROD.countries, quota - 4)
    with pytest.raises(Route53ValidationError, match="exceed the zone quota"):
        validate_records(records, LAYOUT.zone, PROD.countries, len(records) - 1)


def test_a_seeded_country_zone_moves_to_cells_without_an_empty_service_name() -> None:
    """Pulumi seeds the country tree (geolocation at the service name); the loop then routes cells by network.
    Route 53 refuses IP-based records beside geolocation ones: the old records go in the same request as the new
    ones arrive. After every request, the service name holds records, of one routing policy."""
    from tests.test_dns_route53 import PROD_RECORDS, provider

    with moto_server() as url:
        client = route53_client(url)
        zone_id = new_zone(client)
        assert sync(provider(client, zone_id), PROD_RECORDS).converged
        assert not [r for r in PROD_RECORDS if r.cidr is not None]  # the seed is the country tree alone
        policies_seen: list[set[str]] = []

        def look(_: int) -> None:
            pages = client.get_paginator("list_resource_record_sets").paginate(HostedZoneId=zone_id)
            at_service = [r for page in pages for r in page["ResourceRecordSets"] if r["Name"] == LAYOUT.service]
            policies_seen.append({"ip-based" if "CidrRoutingConfig" in r else "geolocation" for r in at_service})

        backend = cidr_provider(client, zone_id)
        backend.after_batch = look
        report = sync(backend, prod_cell_records())
    assert report.converged and len(policies_seen) > 3
    assert all(len(p) == 1 for p in policies_seen), policies_seen
    assert policies_seen[0] == {"geolocation"} and policies_seen[-1] == {"ip-based"}


def test_the_selection_kept_on_disk_is_the_one_computed_and_a_damaged_copy_is_recomputed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from globalaccel.dns import route53_cells

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(route53_cells, "_SELECTIONS", {})
    computed = route53_cells.cidr_selection(PROD)
    (kept,) = (tmp_path / "globalaccel").glob("cidr-selection-*.json")
    monkeypatch.setattr(route53_cells, "_SELECTIONS", {})
    assert route53_cells.cidr_selection(PROD) == computed == prod_cells()
    kept.write_text('{"cells": [')
    monkeypatch.setattr(route53_cells, "_SELECTIONS", {})
    assert route53_cells.cidr_selection(PROD) == computed
    assert json.loads(kept.read_text())["cells"] == list(computed.cells)  # rewritten whole
    # Any input changing changes the key: a smaller block quota is a different entry, never the kept one.
    smaller = replace(PROD, route53=replace(PROD.route53, cidr_blocks=100))
    assert route53_cells.cidr_selection(smaller) != computed
    assert len(list((tmp_path / "globalaccel").glob("cidr-selection-*.json"))) == 2


def test_each_us_state_gets_its_largest_cells_chain_by_geolocation_subdivision() -> None:
    """Route 53 supports geolocation subdivisions for US states only (API reference, GeoLocation, checked
    2026-11-26). A client Route 53 places in a state gets that state's largest cell's chain; one it places only
    in the US gets the country's record."""
    from globalaccel.dns.route53_compile import state_cells
    from globalaccel.dns.route53_sim import Client, Route53Simulator

    records = compile_route53(PROD, answers(), cells=prod_cells())
    states = {r.geo.subdivision: r for r in records if r.geo is not None and r.geo.subdivision}
    chosen = state_cells(PROD)
    assert len(states) == len(chosen) >= 40 and set(states) <= set(chosen)
    na = [r for r in records if r.name == LAYOUT.continent_name("NA")]
    assert len(na) <= 100  # one name's quota, states and countries together
    sim = Route53Simulator(records)
    us = answers().country("US")
    assert isinstance(us, Served)
    for state, record in states.items():
        assert record.geo is not None and record.geo.country == "US" and record.alias == LAYOUT.cell_name(chosen[state])
        decision = answers().cell(chosen[state])
        assert isinstance(decision, Served)
        got = set(sim.resolve(PROD.service_name, Client("US", "NA", subdivision=state)).addresses)
        assert got and got <= set(decision.paths[0].addresses), state
    unplaced = set(sim.resolve(PROD.service_name, Client("US", "NA")).addresses)
    assert unplaced and unplaced <= set(us.paths[0].addresses)
    # A subdivision anywhere else is refused, as AWS refuses it.
    bad = [*records, Record(LAYOUT.continent_name("EU"), "A", (), None, set_id="EU-DE-BY", geo=Geo(country="DE", subdivision="BY"),
                            alias=LAYOUT.country_name("de"))]
    with pytest.raises(Route53ValidationError, match="US states only"):
        validate_records(bad, LAYOUT.zone, PROD.countries, PROD.route53.max_records, PROD.route53.cidr_blocks)


def test_states_never_push_their_continents_name_past_the_per_name_quota(monkeypatch: pytest.MonkeyPatch) -> None:
    """North America's countries and the states share `na.geo`: with a lower limit, the least populous states go."""
    from globalaccel.dns import route53_compile

    monkeypatch.setattr(route53_compile, "MAX_SAME_NAME_TYPE", 60)
    records = compile_route53(PROD, answers(), cells=prod_cells())
    na = [r for r in records if r.name == LAYOUT.continent_name("NA")]
    states = [r.geo.subdivision for r in na if r.geo is not None and r.geo.subdivision]
    assert len(na) == 60 and 0 < len(states) < len(route53_compile.state_cells(PROD))
    assert states == list(route53_compile.state_cells(PROD))[: len(states)]  # the most populous first
