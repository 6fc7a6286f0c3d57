"""Route 53: compile, validate, plan, sync to a real moto server over HTTP, simulate resolution."""

from __future__ import annotations

import functools
import itertools
import math
import uuid
from dataclasses import replace
from typing import Any

import pytest
from botocore.exceptions import ClientError

from globalaccel.answers import Answers, Served
from globalaccel.dns.backend import ApplyStats, OwnedZone, claim_record, sync
from globalaccel.dns.budget import ApiBudget
from globalaccel.dns.factory import find_collection
from globalaccel.dns.health_checks import ensure_center_checks
from globalaccel.dns.plan import Change, plan
from globalaccel.dns.records import Geo, Record, fqdn
from globalaccel.dns.route53 import RetryPolicy, Route53Backend, ZoneOwnedByAnother, batches, order_changes
from globalaccel.dns.route53_cells import CidrSelection, cidr_selection
from globalaccel.dns.route53_compile import compile_route53, layout_for
from globalaccel.dns.route53_sim import Client, Route53Simulator
from globalaccel.dns.route53_validate import ROUTE53_UNSUPPORTED_COUNTRIES, Route53ValidationError, validate_batch, validate_records
from globalaccel.residency import Mode
from globalaccel.routing import Health, RoutingTable
from globalaccel.routing.summary import route_table
from globalaccel.topology import Topology, load_stack
from tests.conftest import STACKS
from tests.services import FaultProxy, route53_client

PROD = load_stack("prod", STACKS)
PROD_TABLE = route_table(PROD)
LAYOUT = layout_for(PROD)
PROD_RECORDS = [claim_record(LAYOUT), *compile_route53(PROD, Answers.from_table(PROD_TABLE, PROD))]


def new_zone(client: Any, topo: Topology = PROD) -> str:
    zone = client.create_hosted_zone(Name=topo.zone, CallerReference=str(uuid.uuid4()))["HostedZone"]["Id"]
    return str(zone)


def provider(client: Any, zone_id: str, **kw: Any) -> Route53Backend:
    """The backend as the factory opens it, with the centers' health checks created in moto (the Pulumi
    program creates them in production); a client without health-check calls (a fake) gets made-up ids."""
    fast = ApiBudget.route53(requests_per_s=1000, tokens_per_s=100_000)
    if "health_checks" not in kw:
        try:
            kw["health_checks"] = ensure_center_checks(client, "prod", PROD.centers, 443)
        except AttributeError:
            kw["health_checks"] = {c: f"check-{c}" for c in PROD.center_ids}
    return Route53Backend(client, zone_id, LAYOUT, budget=fast, retry=RetryPolicy(base_s=0.001, cap_s=0.01), **kw)


@functools.lru_cache(maxsize=1)
def prod_cells() -> CidrSelection:
    """Prod's cells routed by network (reading the stack's network database takes seconds: once per worker)."""
    selection = cidr_selection(PROD)
    assert selection is not None and selection.cells
    return selection


def prod_cell_records(table: RoutingTable = PROD_TABLE) -> list[Record]:
    """Prod's zone as the loop publishes it: the CIDR layout (route53_cells) with its collection's locations."""
    return [claim_record(LAYOUT), *compile_route53(PROD, Answers.from_table(table, PROD), cells=prod_cells())]


def cidr_provider(client: Any, zone_id: str, **kw: Any) -> Route53Backend:
    """`provider` with the stack's CIDR collection, created as the factory does with --create-zone."""
    collection = find_collection(client, prod_cells().collection, create=True)
    backend = provider(client, zone_id, cidr_collection=collection, **kw)
    backend.cidr_selection = prod_cells()
    return backend


def table_route(table: RoutingTable, code: str) -> Served:
    decision = Answers.from_table(table, PROD).country(code)
    assert isinstance(decision, Served)
    return decision


def assert_answers_equal_table(records: list[Record], topo: Topology, table: RoutingTable, failing: set[str] | None = None) -> None:
    sim = Route53Simulator(records, failing_checks=failing or set())
    answers = Answers.from_table(table, topo)
    for code, country in topo.countries.items():
        res = sim.resolve(topo.service_name, Client(code, country.continent))
        decision = answers.country(code)
        served = isinstance(decision, Served) and code not in ROUTE53_UNSUPPORTED_COUNTRIES  # no record can exist for those
        assert set(res.addresses) == (set(decision.addresses) if served and isinstance(decision, Served) else set()), code
        assert not res.failed_open


# ---- compiler and validator -----------------------------------------------------------------------


def test_prod_tree_is_within_quota_and_has_no_fallbacks_out_of_a_country() -> None:
    """No default record anywhere, geolocation records never evaluate health (so Route 53 never falls
    back from a country to its continent), and health checks only on failover legs, each naming a center."""
    validate_records(PROD_RECORDS, LAYOUT.zone, PROD.countries)
    per_name = itertools.groupby(sorted((r.name, r.type) for r in PROD_RECORDS))
    assert max(len(list(g)) for _, g in per_name) <= 100
    assert len(PROD_RECORDS) <= 10_000
    assert not [r for r in PROD_RECORDS if r.geo is not None and r.geo.is_default]
    assert not [r for r in PROD_RECORDS if r.geo is not None and (r.evaluate_target_health or r.health_check)]
    checked = [r for r in PROD_RECORDS if r.health_check is not None]
    assert checked and all(r.failover is not None and r.health_check in PROD.center_ids for r in checked)


def test_simulated_answers_equal_the_table_for_every_country() -> None:
    assert_answers_equal_table(PROD_RECORDS, PROD, PROD_TABLE)


def test_strict_countries_never_reach_a_disallowed_center_even_with_every_check_failing() -> None:
    """Also with the EU center down: EU falls over to us-east-1 (allowed). Every health check id in the
    zone is marked failing. Each resolved address names its edge and the center it forwards to: both
    must be the route's."""
    path_by_address = PROD.path_by_address
    for down in PROD.center_ids:
        health = Health(frozenset(e.id for e in PROD.edges), frozenset(PROD.center_ids) - {down})
        table = route_table(PROD, health)
        answers = Answers.from_table(table, PROD)
        records = compile_route53(PROD, answers)
        sim = Route53Simulator(records, failing_checks={r.health_check for r in records if r.health_check} | {"all"})
        for code in PROD.residency.strict_countries(PROD.countries):
            res = sim.resolve(PROD.service_name, Client(code, PROD.countries[code].continent))
            route = answers.country(code)
            if not isinstance(route, Served):
                assert res.empty, f"{code} must fail closed with {down} down"
                continue
            assert PROD.residency.allows(code, route.center)
            assert set(res.addresses) <= {a.address for a in route.answers}
            assert all(path_by_address[a][0].id in route.edge_ids and path_by_address[a][1] == route.center for a in res.addresses)
    assert PROD.residency.rule_for("RU").mode is Mode.STRICT


def test_simulator_sees_a_fallback_that_fails_open() -> None:
    """A default record plus a failing health check is exactly what Route 53 fails open on."""
    zone = LAYOUT.zone
    records = [
        Record(f"svc.{zone}", "A", ("192.0.2.1",), 60, set_id="RU", geo=Geo(country="RU"), health_check="hc1"),
        Record(f"svc.{zone}", "A", ("192.0.2.9",), 60, set_id="default", geo=Geo()),
    ]
    res = Route53Simulator(records, failing_checks={"hc1"}).resolve(f"svc.{zone}", Client("RU", "EU"))
    assert set(res.addresses) == {"192.0.2.9"}  # unhealthy country record gives way to the default


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: replace(r, geo=Geo(country="XX")), "unknown country code 'XX'"),
        (lambda r: replace(r, geo=Geo(continent="EA")), "unknown continent code 'EA'"),
        (lambda r: replace(r, set_id=None), "needs a SetIdentifier"),
        (lambda r: replace(r, alias=r.alias + "missing."), "does not exist in the zone"),
    ],
)
def test_validator_rejects_what_aws_rejects(mutate: Any, message: str) -> None:
    geo_record = next(r for r in PROD_RECORDS if r.geo is not None and r.geo.country == "DE")
    broken = [mutate(r) if r is geo_record else r for r in PROD_RECORDS]
    with pytest.raises(Route53ValidationError, match=message):
        validate_records(broken, LAYOUT.zone, PROD.countries)


def test_validator_rejects_weights_mixed_policies_apex_cname_and_crowds() -> None:
    zone = LAYOUT.zone
    weighted = Record(f"a.{zone}", "A", ("192.0.2.1",), 60, set_id="x", weight=300)
    with pytest.raises(Route53ValidationError, match="weight must be an integer 0-255"):
        validate_records([weighted], zone, PROD.countries)
    mixed = [replace(weighted, weight=1), Record(f"a.{zone}", "A", ("192.0.2.2",), 60, set_id="y", geo=Geo(country="DE"))]
    with pytest.raises(Route53ValidationError, match="mixed routing policies"):
        validate_records(mixed, zone, PROD.countries)
    with pytest.raises(Route53ValidationError, match="CNAME at the zone apex"):
        validate_records([Record(zone, "CNAME", ("x.example.org.",), 60)], zone, PROD.countries)
    crowd = [Record(f"b.{zone}", "A", (f"192.0.2.{i % 250 + 1}",), 60, set_id=str(i), weight=1) for i in range(101)]
    with pytest.raises(Route53ValidationError, match="101 records with the same name and type"):
        validate_records(crowd, zone, PROD.countries)


def test_batches_respect_values_and_characters_with_upsert_counted_twice() -> None:
    changes = plan([], PROD_RECORDS, LAYOUT.owns)
    upserts = [Change("UPSERT", c.record) for c in changes.creates]
    for batch in batches(upserts):
        validate_batch(batch)
        assert sum(c.values for c in batch) <= 1000
    with pytest.raises(Route53ValidationError, match="values"):
        validate_batch(upserts[:501])
    big = Record(f"t.{LAYOUT.zone}", "TXT", tuple('"' + "x" * 250 + '"' for _ in range(70)), 60)
    with pytest.raises(Route53ValidationError, match="characters"):
        validate_batch([Change("UPSERT", big)])


def test_plan_never_touches_records_it_does_not_own() -> None:
    foreign = Record(f"www.{LAYOUT.zone}", "A", ("192.0.2.80",), 300)
    apex_ns = Record(LAYOUT.zone, "NS", ("ns1.example.org.",), 172800)
    changes = plan([foreign, apex_ns], PROD_RECORDS, LAYOUT.owns)
    assert all(c.record not in (foreign, apex_ns) for c in changes.all)
    assert not changes.deletes
    with pytest.raises(ValueError, match="outside what the controller owns"):
        plan([], [foreign], LAYOUT.owns)


def test_order_creates_leaves_first_and_deletes_roots_first() -> None:
    changes = plan([], PROD_RECORDS, LAYOUT.owns)
    depths = [LAYOUT.depth(c.record.name) for c in order_changes(changes, LAYOUT)]
    assert depths == sorted(depths)
    removal = plan(PROD_RECORDS, [], LAYOUT.owns)
    depths = [LAYOUT.depth(c.record.name) for c in order_changes(removal, LAYOUT)]
    assert depths == sorted(depths, reverse=True)


# ---- against moto server over HTTP ----------------------------------------------------------------


def test_full_prod_sync_lists_back_and_resolves_like_the_table(moto_url: str) -> None:
    client = route53_client(moto_url)
    zone_id = new_zone(client)
    p = provider(client, zone_id)
    report = sync(p, PROD_RECORDS)
    assert report.converged
    values = sum(r.value_count for r in PROD_RECORDS)
    assert report.stats.requests == math.ceil(values / 500)  # UPSERT counts twice: 500 records a request
    assert report.stats.change_tokens == 2 * values
    listed = OwnedZone(p).records()
    assert set(listed) == set(PROD_RECORDS)
    assert_answers_equal_table(listed, PROD, PROD_TABLE)
    again = sync(p, PROD_RECORDS)
    assert again.planned == {"create": 0, "update": 0, "delete": 0} and again.stats.requests == 0
    # Foreign records (SOA/NS from the zone, one added by a person) survive every sync.
    client.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": [{"Action": "CREATE", "ResourceRecordSet": {
        "Name": f"www.{PROD.zone}", "Type": "A", "TTL": 300, "ResourceRecords": [{"Value": "192.0.2.80"}]}}]})
    sync(p, PROD_RECORDS[:10])
    names = {r["Name"] for r in client.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]}
    assert f"www.{PROD.zone}." in names and f"{PROD.zone}." in names


def test_one_edge_down_takes_the_fewest_requests(moto_url: str) -> None:
    """One German edge down: its cells move, and edge capacity re-splits demand elsewhere (country and US-state
    chains, ~530 records); the changes go out in as few requests as Route 53's 1,000-value limit allows."""
    client = route53_client(moto_url)
    p = provider(client, new_zone(client))
    sync(p, PROD_RECORDS)
    victim = table_route(PROD_TABLE, "DE").answers[0].edge_id
    health = Health(frozenset(e.id for e in PROD.edges) - {victim}, frozenset(PROD.center_ids))
    table = route_table(PROD, health)
    desired = compile_route53(PROD, Answers.from_table(table, PROD))
    zone = OwnedZone(p)
    changes = plan(zone.records(), zone.with_claim(desired), zone.owns)
    values = sum(c.values for c in order_changes(changes, LAYOUT))
    report = sync(p, desired)
    assert report.converged and report.stats.requests == math.ceil(values / 1000) <= 2
    victim_addresses = {address for _, address in PROD.edge_by_id[victim].center_addresses}  # its address for every center
    assert not victim_addresses & {v for r in p.records() for v in r.values}
    assert_answers_equal_table(p.records(), PROD, table)


def test_zone_owned_by_another_stack_is_refused(moto_url: str) -> None:
    client = route53_client(moto_url)
    zone_id = new_zone(client)
    client.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": [{"Action": "CREATE", "ResourceRecordSet": {
        "Name": LAYOUT.owner_name, "Type": "TXT", "TTL": 300, "ResourceRecords": [{"Value": '"heritage=globalaccel,owner=other"'}]}}]})
    with pytest.raises(ZoneOwnedByAnother):
        sync(provider(client, zone_id), PROD_RECORDS)
    assert len(client.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]) == 3  # nothing pushed


@pytest.mark.parametrize("schedule", [
    ["throttle", "prior", "throttle"],
    ["500-after"],
    ["drop-after"],
    ["500", "drop-after", "throttle", "500-after", "prior"],
])
def test_faults_converge_without_loss_or_duplication(moto_url: str, schedule: list[str | None]) -> None:
    client = route53_client(moto_url)
    zone_id = new_zone(client)
    with FaultProxy(moto_url, schedule) as proxy:
        p = provider(route53_client(proxy.url), zone_id)
        report = sync(p, PROD_RECORDS)
        assert report.converged, report
        assert proxy.seen[: len(schedule)] == schedule  # every fault was really injected
    direct = provider(client, zone_id)
    assert set(OwnedZone(direct).records()) == set(PROD_RECORDS)
    assert sync(direct, PROD_RECORDS).planned == {"create": 0, "update": 0, "delete": 0}


def test_crash_between_batches_then_rerun_converges(moto_url: str) -> None:
    client = route53_client(moto_url)
    zone_id = new_zone(client)

    def crash(batch: int) -> None:
        raise KeyboardInterrupt(f"killed after batch {batch}")

    big = [replace(r, ttl=30) if r.alias is None else r for r in PROD_RECORDS]  # same shape, two batches
    with pytest.raises(KeyboardInterrupt):
        sync(provider(client, zone_id, after_batch=crash), big)
    partial = provider(client, zone_id).records()
    assert 0 < len(partial) < len(big)
    report = sync(provider(client, zone_id), big)
    assert report.converged
    assert set(OwnedZone(provider(client, zone_id)).records()) == set(big)


def test_policy_change_deletes_first_and_converges_on_moto(moto_url: str) -> None:
    """A record whose routing policy changes is DELETE old + CREATE new under one key: the delete must
    go first (Route 53 rejects the other order; moto, deleting by set id, would drop the new record)."""
    client = route53_client(moto_url)
    p = provider(client, new_zone(client))
    leaf = f"zz.cc.{PROD.zone}."
    geo = Record(leaf, "A", ("192.0.2.1",), 60, set_id="ZZ-x", geo=Geo(country="DE"))
    weighted = Record(leaf, "A", ("192.0.2.1",), 60, set_id="ZZ-x", weight=10)
    sync(p, [geo])
    zone = OwnedZone(p)
    changes = plan(zone.records(), zone.with_claim([weighted]), zone.owns)
    ordered = [(c.action, c.record.policy) for c in order_changes(changes, LAYOUT)]
    assert ordered == [("DELETE", "geolocation"), ("UPSERT", "weighted")]
    report = sync(p, [weighted])
    assert report.converged and OwnedZone(p).records() == [claim_record(LAYOUT), weighted]


def test_connect_timeout_retries_the_same_batch() -> None:
    """MOCK client: a connect timeout cannot be produced on loopback (nothing times out connecting to
    127.0.0.1). A request that never connected was never sent, so the same batch is retried."""
    from botocore.exceptions import ConnectTimeoutError

    class Client:
        calls = 0

        def change_resource_record_sets(self, **_: Any) -> dict[str, Any]:
            Client.calls += 1
            if Client.calls == 1:
                raise ConnectTimeoutError(endpoint_url="https://route53.amazonaws.com")
            return {"ChangeInfo": {"Id": "/change/x", "Status": "INSYNC"}}

    p = provider(Client(), "Z1")
    stats = ApplyStats()
    p.apply(plan([], PROD_RECORDS[:3], LAYOUT.owns), stats)
    assert stats.requests == 1 and stats.retries == 1 and Client.calls == 2


def test_the_tree_names_only_locations_route53_supports() -> None:
    """AWS rejects a whole change batch that names a country ListGeoLocations does not return (BV, CX, EH,
    HM); moto accepts it. The compiler leaves them out (clients there get no answer), the validator
    refuses them, and Kosovo (XK), which Route 53 does place, is accepted."""
    countries = {r.geo.country for r in PROD_RECORDS if r.geo is not None and r.geo.country}
    assert countries and not countries & {"BV", "CX", "EH", "HM"}
    leaf = f"bv.cc.{PROD.zone}."
    bad = Record(f"eu.geo.{PROD.zone}.", "A", (), None, set_id="EU-BV", geo=Geo(country="BV"), alias=leaf)
    with pytest.raises(Route53ValidationError, match="rejects the whole change batch"):
        validate_records([*PROD_RECORDS, Record(leaf, "A", ("192.0.2.1",), 60, set_id="BV-x", weight=1), bad], LAYOUT.zone,
                         PROD.countries)
    assert "XK" in countries  # Kosovo is a country of the world and Route 53 places it: prod's zone answers it
    validate_records(PROD_RECORDS, LAYOUT.zone, PROD.countries)


def zone_answers(records: list[Record], topo: Topology) -> dict[str, set[str]]:
    """Per country, the addresses the zone's tree gives it, read structurally (service -> continent
    alias -> country alias -> leaf). An alias whose target has no record is an inconsistent zone."""
    by_name: dict[str, list[Record]] = {}
    for r in records:
        by_name.setdefault(r.name, []).append(r)
    for r in records:
        if r.alias is not None:
            assert by_name.get(r.alias), f"alias {r.name} [{r.set_id}] -> {r.alias}, which has no record"
    service = fqdn(topo.service_name)
    continents = {r.geo.continent: r.alias for r in by_name.get(service, []) if r.geo is not None and r.geo.continent}
    out: dict[str, set[str]] = {}
    for code in topo.countries:
        got: set[str] = set()
        for name in continents.values():
            for r in by_name.get(name or "", []):
                if r.geo is not None and r.geo.country == code and r.alias is not None:
                    got |= {v for leaf in by_name[r.alias] for v in leaf.values}
        out[code] = got
    return out


def test_every_applied_prefix_of_a_sync_is_a_consistent_zone(moto_url: str) -> None:
    """AWS rejects a batch whole (InvalidChangeBatch); the batches before it stay applied. Behind a fault
    proxy, reject batch k for every k: the zone left behind must be consistent (every alias resolves),
    give each country only answers of the old or the new table, keep every country served by both
    tables answered, and every answered path (edge and the center its address names) compliant."""
    before = route_table(PROD)
    two_down = frozenset(PROD.center_ids) - {"eu-central-1", "me-central-1"}
    after = route_table(PROD, Health(frozenset(e.id for e in PROD.edges), two_down))
    old = [claim_record(LAYOUT), *compile_route53(PROD, Answers.from_table(before, PROD))]
    new = [claim_record(LAYOUT), *compile_route53(PROD, Answers.from_table(after, PROD))]
    old_answers, new_answers = zone_answers(old, PROD), zone_answers(new, PROD)
    client = route53_client(moto_url)
    probe_zone = new_zone(client)
    sync(provider(client, probe_zone), old)
    dry = sync(provider(client, probe_zone), new, dry_run=True)
    assert dry.changes is not None
    n_batches = provider(client, probe_zone).estimate(dry.changes)["requests"]
    assert n_batches >= 2, "the transition must span several batches for the test to mean anything"
    for k in range(n_batches):
        zone_id = new_zone(client)
        sync(provider(client, zone_id), old)
        with FaultProxy(moto_url, [None] * k + ["reject"]) as proxy:
            with pytest.raises(ClientError, match="InvalidChangeBatch"):
                sync(provider(route53_client(proxy.url), zone_id), new)
            assert proxy.seen[-1] == "reject" and len(proxy.seen) == k + 1
        left = zone_answers(provider(client, zone_id).records(), PROD)  # asserts every alias resolves
        for code, got in left.items():
            assert got <= old_answers[code] | new_answers[code], (k, code)
            if old_answers[code] and new_answers[code]:
                assert got, f"batch {k + 1} rejected: {code} lost its answer"
            for address in got:
                edge, center = PROD.path_by_address[address]
                assert PROD.residency.allows(code, center) and PROD.residency.edge_allowed(code, edge.country, edge.role), (k, code)
