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

import boto3
import pytest
from botocore.stub import Stubber

from globalaccel.answers import Answers, Served
from globalaccel.audit.sources import block_countries
from globalaccel.dns.backend import ApplyStats, OwnedZone, sync
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
            # The country dataset, asked independently, places the whole block in the cell's country.
            assert block_countries(block) == {cell.country}, (cell_id, block)
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
    before, after = backend._collection_requests(changes)
    assert all(sum(len(c["CidrList"]) for c in request) <= MAX_COLLECTION_BLOCKS for request in before + after)
    move = [request for request in before if any("198.51.100.0/24" in c["CidrList"] for c in request)]
    assert len(move) == 1
    (request,) = move
    actions = [(c["Action"], c["LocationName"]) for c in request if "198.51.100.0/24" in c["CidrList"]]
    assert actions == [("DELETE_IF_EXISTS", "aa-1"), ("PUT", "bb-2")]  # leave before arrive, one transaction
    # dd-4 takes blocks cc-3 holds: they move before the records change, so no block is in two locations at once.
    put = {b for request in before for c in request if c["Action"] == "PUT" and c["LocationName"] == "dd-4" for b in c["CidrList"]}
    assert put == set(many)
    assert after == []  # cc-3's blocks all moved to dd-4: nothing left to remove
    for request in before + after:
        stubber.add_response("change_cidr_collection", {"Id": str(uuid.uuid4())},
                             {"Id": "c8c02a84-7d6f-4c5e-9a3b-1f2e3d4c5b6a", "Changes": request})
    with stubber:
        stats = ApplyStats()
        for request in before + after:
            backend._change_collection(request, stats)
    stubber.assert_no_pending_responses()


def test_the_loop_publishes_cells_by_network_and_a_second_publish_changes_nothing() -> None:
    """moto + tests/moto_cidr.py (storage only): the zone and the collection as the loop leaves them, read back
    whole; publishing again finds nothing to change."""
    with moto_server() as url:
        client = route53_client(url)
        zone_id = new_zone(client)
        backend = cidr_provider(client, zone_id)
        first = sync(backend, prod_cell_records())
        assert first.converged and first.stats.requests > 0
        zone = OwnedZone(backend)
        again = plan(zone.records(), zone.with_claim(prod_cell_records()), zone.owns)
        assert len(again) == 0
        (collection,) = client.list_cidr_collections()["CidrCollections"]
        blocks = client.get_paginator("list_cidr_blocks").paginate(CollectionId=collection["Id"])
        listed = {(b["LocationName"], b["CidrBlock"]) for page in blocks for b in page["CidrBlocks"]}
        assert listed == {(c, b) for c in prod_cells().cells for b in prod_cells().blocks[c]}


def test_a_seeded_country_zone_moves_to_cells_without_an_empty_service_name() -> None:
    """Pulumi seeds the country tree (geolocation at the service name); the loop then routes cells by network.
    Route 53 refuses IP-based records beside geolocation ones: the old records go in the same request as the new
    ones arrive. After every request, the service name holds records, of one routing policy."""
    from globalaccel.dns.route53_compile import compile_route53 as country_tree
    from tests.test_dns_route53 import PROD_RECORDS, provider

    with moto_server() as url:
        client = route53_client(url)
        zone_id = new_zone(client)
        assert sync(provider(client, zone_id), PROD_RECORDS).converged
        assert country_tree(PROD, answers())  # (the seed is the country tree alone)
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
