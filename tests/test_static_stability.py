"""Static stability on Route 53: losing centers changes answers in the DNS data plane, with no API call,
and never outside a country's allowed set.

What is real here: the zone is written through boto3 to a moto server (botocore validates every request
against Route 53's service model on the way), the centers' health checks are created in it, and the zone
is read back with boto3's own paginator, never from our compiler's output. What is not: moto evaluates no
health and answers no DNS, so Route 53's answers come from `route53_sim`, whose rules are each taken from
AWS's documentation (cited in that module and in the semantic tests below, which pin every rule the
failover chain relies on to a documented sentence).
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Mapping
from typing import Any

import pytest

from globalaccel.answers import Answers, Served
from globalaccel.audit.sources import block_countries
from globalaccel.dns.factory import open_backend
from globalaccel.dns.records import Geo, Record
from globalaccel.dns.route53 import Route53Backend, from_route53
from globalaccel.dns.route53_sim import Client, Route53Simulator
from globalaccel.dns.route53_validate import ROUTE53_UNSUPPORTED_COUNTRIES
from globalaccel.routing.summary import route_table
from globalaccel.settings import BackendSettings
from globalaccel.topology import load_stack
from tests.conftest import STACKS
from tests.services import moto_server, route53_client

PROD = load_stack("prod", STACKS)
Z = "z.example."


def a(name: str, value: str, **kw: Any) -> Record:
    return Record(f"{name}.{Z}", "A", (value,), 60, **kw)


def alias(name: str, target: str, **kw: Any) -> Record:
    return Record(f"{name}.{Z}", "A", (), None, alias=f"{target}.{Z}", **kw)


GERMANY = Client("DE", "EU")


def answers(records: list[Record], failing: set[str], name: str = "svc", client: Client = GERMANY,
            calculated: Mapping[str, tuple[int, tuple[str, ...]]] | None = None) -> set[str]:
    return set(Route53Simulator(records, failing, calculated=calculated).resolve(f"{name}.{Z}", client).addresses)


# ---- the documented rules the chain relies on ---------------------------------------------------------

FAILOVER = [
    alias("svc", "p", set_id="1", failover="PRIMARY", health_check="hp", evaluate_target_health=True),
    alias("svc", "s", set_id="2", failover="SECONDARY", health_check="hs", evaluate_target_health=True),
    a("p", "192.0.2.1"), a("s", "192.0.2.2"),
]


def test_failover_follows_the_documented_table() -> None:
    """API reference, ResourceRecordSet.Failover: a healthy primary answers regardless of the secondary; an
    unhealthy primary with a healthy secondary gives the secondary; an unhealthy secondary gives the
    primary regardless of the primary's health."""
    assert answers(FAILOVER, set()) == {"192.0.2.1"}
    assert answers(FAILOVER, {"hs"}) == {"192.0.2.1"}
    assert answers(FAILOVER, {"hp"}) == {"192.0.2.2"}
    assert answers(FAILOVER, {"hp", "hs"}) == {"192.0.2.1"}


def test_a_secondary_without_a_check_always_answers_when_the_primary_is_down() -> None:
    """ResourceRecordSet.Failover: 'If you omit the HealthCheckId element for the secondary ... Route 53
    always responds ... with the secondary', regardless of its endpoint."""
    records = [FAILOVER[0], alias("svc", "s", set_id="2", failover="SECONDARY", evaluate_target_health=False), *FAILOVER[2:]]
    assert answers(records, {"hp"}) == {"192.0.2.2"}


def test_evaluate_target_health_inherits_the_target_groups_health() -> None:
    """'Alias record with Evaluate Target Health set to Yes - Route 53 checks the health status of the
    resource that the alias record references' (another record in the zone): here a weighted group whose
    records are all unhealthy makes the alias unhealthy, so the failover goes to the secondary; without
    ETH the same primary stays."""
    target = [a("p", "192.0.2.1", set_id="w1", weight=1, health_check="h1"),
              a("p", "192.0.2.3", set_id="w2", weight=1, health_check="h2")]
    eth = [alias("svc", "p", set_id="1", failover="PRIMARY", evaluate_target_health=True),
           alias("svc", "s", set_id="2", failover="SECONDARY", evaluate_target_health=True), a("s", "192.0.2.2"), *target]
    assert answers(eth, {"h1"}) == {"192.0.2.3"}
    assert answers(eth, {"h1", "h2"}) == {"192.0.2.2"}
    no_eth = [alias("svc", "p", set_id="1", failover="PRIMARY", evaluate_target_health=False), *eth[1:]]
    assert answers(no_eth, {"h1", "h2"}) == {"192.0.2.1", "192.0.2.3"}  # weighted, all unhealthy: fails open


def test_calculated_checks_count_their_children() -> None:
    """A calculated health check is healthy while at least its threshold of child checks are."""
    records = [*FAILOVER[:1], alias("svc", "s", set_id="2", failover="SECONDARY", health_check="hs",
                                    evaluate_target_health=True), *FAILOVER[2:]]
    calc = {"hp": (2, ("c1", "c2", "c3"))}
    assert answers(records, {"c1"}, calculated=calc) == {"192.0.2.1"}
    assert answers(records, {"c1", "c3"}, calculated=calc) == {"192.0.2.2"}


def test_geolocation_gives_no_answer_to_a_client_it_cannot_place_without_a_default() -> None:
    """Geolocation: without a default ('*') record, Route 53 answers 'no answer' for a location it
    cannot map; with one, that record answers."""
    records = [alias("svc", "p", set_id="DE", geo=Geo(country="DE")), a("p", "192.0.2.1")]
    assert answers(records, set(), client=Client(None, None)) == set()
    with_default = [*records, a("svc", "192.0.2.9", set_id="any", geo=Geo())]
    assert answers(with_default, set(), client=Client(None, None)) == {"192.0.2.9"}


def test_a_geolocation_record_evaluating_an_unhealthy_target_falls_back_to_the_continent() -> None:
    """Why the compiler's geolocation records never evaluate target health: an unhealthy country record
    gives way to its continent's record, which serves other countries' rules."""
    records = [alias("svc", "p", set_id="DE", geo=Geo(country="DE"), evaluate_target_health=True),
               a("p", "192.0.2.1", set_id="w", weight=1, health_check="h"),
               a("svc", "192.0.2.7", set_id="EU", geo=Geo(continent="EU"))]
    assert answers(records, {"h"}) == {"192.0.2.7"}
    assert answers([replace_eth(records[0]), *records[1:]], {"h"}) == {"192.0.2.1"}


def replace_eth(record: Record) -> Record:
    from dataclasses import replace

    return replace(record, evaluate_target_health=False)


# ---- prod's zone, written to moto and read back, under every combination of center health ----------


@pytest.fixture(scope="module")
def live_prod_zone() -> Any:
    """Prod's all-healthy table published once through the backend factory (which creates the centers'
    health checks in moto), then the zone as boto3 lists it, and the ids of the checks."""
    table = route_table(PROD)
    answers_view = Answers.from_table(table, PROD)
    with moto_server() as url, pytest.MonkeyPatch.context() as env:
        for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
            env.setenv(key, value)
        client = route53_client(url)
        client.create_hosted_zone(Name=PROD.zone, CallerReference=str(uuid.uuid4()))
        from globalaccel.dns.backend import publish

        # moto has no quota (Route 53's is tested elsewhere): the flags an operator would use against it
        zone = open_backend(PROD, BackendSettings(kind="route53", endpoint_url=url, create_zone=True, requests_per_s=100,
                                                  tokens_per_s=100_000))
        assert isinstance(zone.backend, Route53Backend)
        publish(zone, answers_view)
        zone_id = client.list_hosted_zones_by_name(DNSName=PROD.zone)["HostedZones"][0]["Id"]
        listed = [from_route53(r) for page in client.get_paginator("list_resource_record_sets").paginate(HostedZoneId=zone_id)
                  for r in page["ResourceRecordSets"]]
        checks = {}
        for check in client.list_health_checks()["HealthChecks"]:
            address = check["HealthCheckConfig"]["IPAddress"]
            checks[next(c.id for c in PROD.centers if c.address == address)] = check["Id"]
        # The collection as boto3 lists it: which countries' clients each location's blocks hold (the country
        # dataset's placement of each block), keyed as the records name it (collection id, location).
        (collection,) = client.list_cidr_collections()["CidrCollections"]
        blocks: dict[str, list[str]] = {}
        for page in client.get_paginator("list_cidr_blocks").paginate(CollectionId=collection["Id"]):
            for block in page["CidrBlocks"]:
                blocks.setdefault(block["LocationName"], []).append(block["CidrBlock"])
        held = {(collection["Id"], loc): frozenset().union(*(block_countries(b) for b in bs)) for loc, bs in blocks.items()}
    return answers_view, listed, checks, held


def test_every_combination_of_center_checks_keeps_every_country_in_its_allowed_set(live_prod_zone: Any) -> None:
    """2^4 health combinations x every country, on the zone read back from moto. Each answered address is
    read back to (edge, center) through the catalog: the center must be one the country's rule allows and
    the edge one it allows on the path. And the data plane does fail over: whenever some center of the
    country's chain is up, the answer goes through the first such one (no controller involved)."""
    answers_view, listed, checks, _ = live_prod_zone
    assert set(checks) == set(PROD.center_ids)
    assert {r.health_check for r in listed if r.health_check} == set(checks.values())
    path_of = PROD.path_by_address
    residency = PROD.residency
    moved = 0
    for n in range(len(PROD.center_ids) + 1):
        for down in itertools.combinations(PROD.center_ids, n):
            sim = Route53Simulator(listed, failing_checks={checks[c] for c in down})
            for code, country in PROD.countries.items():
                got = sim.resolve(PROD.service_name, Client(code, country.continent)).addresses
                decision = answers_view.country(code)
                if not isinstance(decision, Served) or code in ROUTE53_UNSUPPORTED_COUNTRIES:
                    assert not got, (down, code)
                    continue
                centers = set()
                for address in got:
                    edge, center = path_of[address]
                    assert residency.allows(code, center), (down, code, address, center)
                    assert residency.edge_violation(code, edge.country, edge.role) is None, (down, code, edge.id)
                    centers.add(center)
                up = [p.center for p in decision.paths if p.center not in down]
                assert len(centers) == 1
                if up:
                    assert centers == {up[0]}, (down, code)
                    moved += decision.center in down
                else:
                    assert centers == {decision.center}  # every check failing: Route 53 fails open to the primary
    assert moved > 1000  # the failover was exercised for many (down set, country) pairs, not vacuously


def test_nobody_route53_cannot_place_gets_an_answer(live_prod_zone: Any) -> None:
    _, listed, checks, _ = live_prod_zone
    for n in range(len(PROD.center_ids) + 1):
        for down in itertools.combinations(PROD.center_ids, n):
            sim = Route53Simulator(listed, failing_checks={checks[c] for c in down})
            assert sim.resolve(PROD.service_name, Client(None, None)).empty


def test_every_possible_answer_of_the_live_zone_is_allowed(live_prod_zone: Any) -> None:
    """The audit's question on the same zone: any health, any record of any group, any location whose live
    blocks hold a network of the country (and the default: its networks in no block)."""
    _, listed, _, held = live_prod_zone
    assert len(held) >= 50 and all(len(countries) == 1 for countries in held.values())
    sim = Route53Simulator(listed, every_possible=True, cidr_countries=held)
    by_location = 0
    for code, country in PROD.countries.items():
        resolution = sim.resolve(PROD.service_name, Client(code, country.continent))
        by_location += sum(1 for step in resolution.path if step.startswith(f"{PROD.service_name}. A cidr-") and "default" not in step)
        for address in resolution.addresses:
            edge, center = PROD.path_by_address[address]
            assert PROD.residency.allows(code, center), (code, center)
            assert PROD.residency.edge_violation(code, edge.country, edge.role) is None, (code, edge.id)
    assert by_location == len(held)  # every location was reached, by its own country's clients only


def test_every_cell_routed_by_network_fails_over_in_its_allowed_set(live_prod_zone: Any) -> None:
    """A client in a location's block gets that cell's chain: under every combination of center checks, an
    answer its country allows, through the first center of the cell's chain still up (no controller)."""
    answers_view, listed, checks, held = live_prod_zone
    locations = {r.cidr.location: r for r in listed if r.cidr is not None and not r.cidr.is_default}
    assert len(locations) == len(held)
    moved = 0
    for n in range(len(PROD.center_ids) + 1):
        for down in itertools.combinations(PROD.center_ids, n):
            sim = Route53Simulator(listed, failing_checks={checks[c] for c in down})
            for location in locations:
                cell = PROD.cell_by_id[location]
                decision = answers_view.cell(location)
                got = sim.resolve(PROD.service_name, Client(cell.country, None, location=location)).addresses
                assert isinstance(decision, Served) and got, location
                centers = {PROD.path_by_address[a][1] for a in got}
                assert all(PROD.residency.allows(cell.country, c) for c in centers), (down, location, centers)
                assert set(got) <= {a for p in decision.paths for a in p.addresses}
                up = [p.center for p in decision.paths if p.center not in down]
                assert centers == {up[0] if up else decision.center}, (down, location)
                moved += bool(up) and decision.center in down
    assert moved > 100


def test_a_country_gaining_a_second_center_loses_its_weighted_records_before_its_chain_is_written() -> None:
    """Route 53 refuses non-failover records beside failover ones under one name and type (moto does not):
    when a rule change turns `<cc>.cc` from weighted records into a failover chain, the weighted ones are
    deleted first, whatever their set identifiers."""
    from globalaccel.dns.plan import Change, Changes
    from globalaccel.dns.route53 import order_changes
    from globalaccel.dns.route53_compile import layout_for

    layout = layout_for(PROD)
    cc = layout.country_name("ae")
    old = [Record(cc, "A", (f"198.18.0.{i}",), 60, set_id=f"AE-me-central-1-e{i}", weight=1) for i in range(3)]
    new = [Record(cc, "A", (), None, set_id="AE-0-PRIMARY", alias=layout.path_name("ae", "me-central-1"), health_check="me-central-1",
                  evaluate_target_health=True, failover="PRIMARY"),
           Record(cc, "A", (), None, set_id="AE-0-SECONDARY", alias=layout.path_name("ae", "eu-central-1"),
                  health_check="eu-central-1", evaluate_target_health=True, failover="SECONDARY")]
    ordered = order_changes(Changes(creates=tuple(Change("CREATE", r) for r in new), deletes=tuple(Change("DELETE", r) for r in old)),
                            layout)
    first_failover = next(i for i, c in enumerate(ordered) if c.record.failover)
    assert all(i < first_failover for i, c in enumerate(ordered) if c.action == "DELETE")
