"""Router invariants over random worlds, rules, latencies and health states (hypothesis)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from globalaccel.latency import LatencyModel
from globalaccel.residency import Mode, Role
from globalaccel.routing import REASON_FAIL_CLOSED, Health, Router
from globalaccel.topology import Topology
from globalaccel.verify import verify_table
from tests.worlds import worlds


@st.composite
def scenario(draw: st.DrawFn, max_edges: int = 60) -> tuple[Topology, Health, LatencyModel]:
    topo = draw(worlds(max_edges=max_edges))
    up_edges = draw(st.sets(st.sampled_from([e.id for e in topo.edges])))
    up_centers = draw(st.sets(st.sampled_from(list(topo.center_ids))))
    latency = LatencyModel(topo)
    # Random measured congestion on some center->edge paths.
    for _ in range(draw(st.integers(0, 10))):
        edge = draw(st.sampled_from(topo.edges))
        center = draw(st.sampled_from(topo.centers))
        base = latency.physics_center_edge[topo.center_ids.index(center.id), topo.edges.index(edge)]
        latency.record(center.id, edge.id, base + draw(st.floats(0, 300)), now=0.0)
    return topo, Health(frozenset(up_edges), frozenset(up_centers)), latency


def path_allowed_by_rule_data(topo: Topology, country: str, center: str, edge_id: str, address: str) -> bool:
    """The whole-path rule read straight from the rule's data, not through the policy's methods (which
    are what the router itself calls): every element outside never_transit; whatever decrypts (the
    center, a terminating edge) inside terminate_in or at home; the address is the edge's for that center."""
    rule = topo.residency.rule_for(country)
    edge = topo.edge_by_id[edge_id]
    center_at = topo.center_by_id[center].country

    def may_decrypt(where: str) -> bool:
        return where not in rule.never_transit and (rule.terminate_in is None or where in rule.terminate_in or where == country)

    return (edge.country not in rule.never_transit and (edge.role is Role.TRANSIT or may_decrypt(edge.country))
            and (not center_at or may_decrypt(center_at)) and (rule.mode is not Mode.STRICT or center in rule.centers)
            and dict(edge.center_addresses)[center] == address)


@given(scenario())
def test_never_forbidden_center_never_unhealthy_edge(case: tuple[Topology, Health, LatencyModel]) -> None:
    topo, health, latency = case
    table, _ = Router(topo).compute(latency, health, now=1.0)
    assert verify_table(table, topo, health) == []
    for route in table.routes.values():
        if route.center is not None:
            assert topo.residency.allows(route.country, route.center)
            assert all(path_allowed_by_rule_data(topo, route.country, route.center, a.edge_id, a.address) for a in route.answers)
            assert route.center in health.centers
            assert route.answers and all(a.edge_id in health.edges for a in route.answers)
            assert abs(sum(a.weight for a in route.answers) - 1.0) < 1e-9
            assert len(route.answers) <= topo.routing.max_answers


@given(scenario())
def test_fails_closed_exactly_when_no_allowed_path(case: tuple[Topology, Health, LatencyModel]) -> None:
    topo, health, latency = case
    table, _ = Router(topo).compute(latency, health, now=1.0)
    for cell in topo.cells:
        route, code = table.routes[cell.id], cell.country
        rule = topo.residency.rule_for(code)
        allowed_up = [c for c in topo.center_ids if topo.residency.allows(code, c) and c in health.centers]
        usable_edges = [e for e in topo.edges if e.id in health.edges and topo.residency.edge_allowed(code, e.country, e.role)]
        if rule.mode is Mode.STRICT and not allowed_up:
            assert route.center is None and route.answers == () and route.reason == REASON_FAIL_CLOSED
        elif allowed_up and usable_edges:
            assert route.center is not None  # liveness: a path exists, so it is used
        if rule.mode is Mode.PREFERRED and route.center is not None:
            listed_up = [c for c in rule.centers if c in health.centers and topo.residency.allows(code, c)]
            assert not listed_up or route.center in listed_up


@given(scenario())
def test_deterministic(case: tuple[Topology, Health, LatencyModel]) -> None:
    topo, health, latency = case
    first, _ = Router(topo).compute(latency, health, now=1.0)
    second, _ = Router(topo).compute(latency, Health(frozenset(sorted(health.edges)), frozenset(health.centers)), now=1.0)
    assert first.content_hash == second.content_hash
    assert first.routes == second.routes


@given(scenario(max_edges=120))
def test_best_answer_matches_brute_force_oracle(case: tuple[Topology, Health, LatencyModel]) -> None:
    """With capacity out of the way, the first answer is the true cheapest allowed healthy path.
    This checks the candidate search's bounds against an exhaustive search."""
    topo, health, latency = case
    topo = Topology(**{**topo.__dict__, "routing": type(topo.routing)(1, 1, 1e9, topo.routing.hysteresis)})
    latency.topology = topo
    table, _ = Router(topo).compute(latency, health, now=1.0)
    center_edge = latency.center_edge_ms(1.0)
    penalty = latency.edge_penalty_ms(1.0)
    for cell in topo.cells:
        elig = topo.residency.eligibility(cell.country, health.centers, topo.center_ids)
        best = min(
            (
                latency.physics.rtt_ms(cell.lat, cell.lon, e.lat, e.lon) + penalty[ei] + center_edge[topo.center_ids.index(c), ei]
                for c in elig.centers
                for ei, e in enumerate(topo.edges)
                if e.id in health.edges and topo.residency.edge_allowed(cell.country, e.country, e.role)
            ),
            default=None,
        )
        route = table.routes[cell.id]
        if best is None:
            assert route.center is None
        else:
            assert route.rtt_ms is not None and abs(route.rtt_ms - best) < 1e-6


@given(scenario())
def test_capacity_budgets_hold_or_overflow_is_reported(case: tuple[Topology, Health, LatencyModel]) -> None:
    topo, health, latency = case
    table, _ = Router(topo).compute(latency, health, now=1.0)
    excess = sum(max(0.0, load - table.edge_budget.get(e, 0.0)) for e, load in table.edge_load.items())
    assert abs(excess - table.overflow) <= 1e-6 * max(1.0, sum(c.demand for c in topo.cells))


@given(st.integers(2, 6), st.integers(0, 2**31))
def test_capacity_respected_when_it_fits(cells_per_edge: int, seed: int) -> None:
    """Many small cells, one capacity class: every edge stays within its share of demand."""
    import random

    from tests.worlds import make_topology

    rng = random.Random(seed)
    edges = [(rng.uniform(-60, 60), rng.uniform(-180, 180), 100.0, 0) for _ in range(30)]
    countries = [(rng.uniform(-60, 60), rng.uniform(-180, 180), rng.randint(1000, 2000)) for _ in range(30 * cells_per_edge // 4)]
    topo = make_topology([(0.0, 0.0)], edges, countries, [(Mode.OPEN, ())] * len(countries), answers=2, max_answers=8, headroom=1.5)
    table, _ = Router(topo).compute(LatencyModel(topo))
    assert table.overflow == 0
    for edge, load in table.edge_load.items():
        assert load <= table.edge_budget[edge] * (1 + 1e-9)


@given(st.integers(0, 2**32 - 1), st.integers(1, 12), st.booleans())
def test_tile_search_equals_full_search_even_with_colocated_edges(seed: int, copies: int, restricted: bool) -> None:
    """Scoring tile by tile must choose the same center and the same ranked edges as scoring every edge, including
    the tie-break among edges at one site (several edges per city are common in the catalog)."""
    import random

    import numpy as np

    from globalaccel.routing import candidates
    from tests.worlds import make_topology

    rng = random.Random(seed)
    sites = [(rng.uniform(-60, 70), rng.uniform(-180, 180)) for _ in range(150)]
    edges = [(*rng.choice(sites), 100.0, rng.randrange(40)) for _ in range(300)]
    edges += [(*sites[0], 100.0, 0)] * copies
    countries = [(rng.uniform(-60, 70), rng.uniform(-180, 180), rng.randint(1, 10**6)) for _ in range(40)]
    rules = [(rng.choice(list(Mode)), tuple(sorted(rng.sample(range(4), rng.randint(1, 4))))) for _ in countries]
    topo = make_topology([(40.0, -75.0), (50.0, 8.0), (25.0, 55.0), (1.0, 104.0)], edges, countries, rules, answers=4, max_answers=6)
    health = Health(frozenset(e.id for e in topo.edges if rng.random() > 0.1), frozenset(c for c in topo.center_ids if rng.random() > 0.2))
    latency = LatencyModel(topo)
    for e in rng.sample(topo.edges, 30):
        latency.record(rng.choice(topo.center_ids), e.id, rng.uniform(0, 300), now=0.0)
    healthy = np.array([i for i, e in enumerate(topo.edges) if e.id in health.edges], dtype=np.intp)
    center_edge = latency.center_edge_ms(1.0)
    penalty = latency.edge_penalty_ms(1.0, center_edge)
    eligibility = {c.country: topo.residency.eligibility(c.country, health.centers, topo.center_ids) for c in topo.cells}
    allowed = np.array([[cid in eligibility[c.country].centers for c in topo.cells] for cid in topo.center_ids])
    # Edge groups as residency makes them: some cells may use only part of the fleet (forbidden edges cost
    # infinity for them), which the tiles' bounds must still hold with.
    edge_ok = np.array([[rng.random() < 0.3 for _ in topo.edges] for _ in range(3)]) if restricted else None
    cell_group = np.array([rng.randrange(3) for _ in topo.cells], dtype=np.intp) if restricted else None
    saved = candidates.DENSE_LIMIT
    try:
        candidates.DENSE_LIMIT = 0
        tiled_choice, tiled_ranked, tiled_cost = candidates.CandidateSearch(topo, topo.cells).select(
            latency, healthy, center_edge, penalty, allowed, None, edge_ok, cell_group)
        candidates.DENSE_LIMIT = 10**12
        full_choice, full_ranked, full_cost = candidates.CandidateSearch(topo, topo.cells).select(
            latency, healthy, center_edge, penalty, allowed, None, edge_ok, cell_group)
    finally:
        candidates.DENSE_LIMIT = saved
    assert np.array_equal(tiled_choice, full_choice)
    routed = full_choice >= 0
    finite = np.isfinite(full_cost[routed])  # past a cell's allowed edges only forbidden ones remain, in any order
    assert np.array_equal(np.isfinite(tiled_cost[routed]), finite)
    assert np.array_equal(tiled_ranked[routed][finite], full_ranked[routed][finite])
    if restricted:
        assert edge_ok is not None and cell_group is not None
        for n in np.nonzero(routed)[0]:
            assert edge_ok[cell_group[n], healthy[full_ranked[n, 0]]]  # the best is always an allowed edge
