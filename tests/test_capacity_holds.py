"""Capacity with held routes: a switch never counts on room a held cell still uses, cells may trade places, and a
large cell's answers are not spent on slivers of nearly full edges. Real Router and CapacityPlanner on small
in-memory worlds."""

from __future__ import annotations

import dataclasses

import numpy as np

from globalaccel.latency import LatencyModel
from globalaccel.residency import Mode
from globalaccel.routing import Health, Router, RouterState
from globalaccel.routing.capacity import CapacityPlanner
from globalaccel.routing.route_costs import RouteCosts
from globalaccel.routing.table import CellState
from globalaccel.settings import HysteresisSettings
from tests.worlds import make_topology

EAGER = HysteresisSettings(absolute_ms=5.0, relative=0.1, consecutive=1, hold_down_s=0.0)


def test_a_switch_does_not_take_room_a_held_cell_still_uses() -> None:
    """AA sits on e0 but e2 is far better for it; it switched 5 s ago, so the hold-down keeps it on e0. AB sits
    on e1, far away. Planned as if every cell took its fresh route, AA would be on e2 and AB would get e0; but
    AA is still on e0, which fits one cell: AB's switch onto e0 is withdrawn. Once AA's hold-down has passed,
    both move in the same cycle (AA to e2, AB to e0), and nothing is ever over budget."""
    hold_down = HysteresisSettings(absolute_ms=5.0, relative=0.1, consecutive=1, hold_down_s=300.0)
    topo = make_topology(
        [(0.0, 0.0)],
        [(10.0, 0.0, 1.0, 0), (10.0, -40.0, 1.0, 0), (10.0, 10.0, 1.0, 0)],  # e0, e1 (far from both), e2
        [(10.0, 9.0, 1), (10.0, -1.0, 1)],  # AA near e2; AB near e0
        [(Mode.OPEN, ())] * 2, answers=1, max_answers=1, headroom=1.5, hysteresis=hold_down)
    router = Router(topo)
    plan, _ = router.compute(LatencyModel(topo))
    assert plan.routes["AA"].edge_ids == ("e2",) and plan.routes["AB"].edge_ids == ("e0",)
    held = RouterState(1, "", {"AA": CellState("c0", ("e0",), (1.0,), 0, 95.0), "AB": CellState("c0", ("e1",), (1.0,))})
    table, state = router.compute(LatencyModel(topo), now=100.0, state=held)
    assert table.routes["AA"].edge_ids == ("e0",), "AA is within its hold-down: held"
    assert table.routes["AB"].edge_ids == ("e1",) and table.routes["AB"].reason == "held", "AB would take AA's room"
    assert table.overflow == 0
    table, state = router.compute(LatencyModel(topo), now=400.0, state=state)
    assert table.routes["AA"].edge_ids == ("e2",) and table.routes["AB"].edge_ids == ("e0",)
    assert table.overflow == 0


def test_two_cells_on_each_others_edges_trade_places() -> None:
    """AA sits on e1 (near AB) and AB on e0 (near AA), 40 degrees apart; each edge fits one cell. Neither fits
    where it belongs until the other has left: judged one at a time, both would stay forever. Judged together,
    they trade places in one cycle."""
    topo = make_topology(
        [(0.0, 0.0)], [(10.0, 0.0, 1.0, 0), (10.0, -40.0, 1.0, 0)],
        [(10.0, 0.5, 10), (10.0, -39.5, 11)], [(Mode.OPEN, ())] * 2,
        answers=1, max_answers=2, headroom=1.25, hysteresis=EAGER)
    router = Router(topo)
    swapped = RouterState(1, "", {"AA": CellState("c0", ("e1",), (1.0,)), "AB": CellState("c0", ("e0",), (1.0,))})
    table, _ = router.compute(LatencyModel(topo), now=100.0, state=swapped)
    assert table.routes["AA"].edge_ids == ("e0",) and table.routes["AB"].edge_ids == ("e1",), table.routes
    assert table.overflow == 0


def test_contested_room_goes_to_one_switch() -> None:
    """AA and AB both sit far away and both would gain by moving onto e0, which fits one of them: one moves (the
    plan gives it to the larger, here the first by id), the other stays, and no edge goes over budget."""
    topo = make_topology(
        [(0.0, 0.0)],
        [(10.0, 0.0, 1.0, 0), (10.0, -20.0, 1.0, 0), (10.0, 20.0, 1.0, 0)],  # e0 near both; e1, e2 far
        [(10.0, -0.5, 1), (10.0, 0.5, 1)],
        [(Mode.OPEN, ())] * 2, answers=1, max_answers=1, headroom=1.5, hysteresis=EAGER)
    router = Router(topo)
    held = RouterState(1, "", {"AA": CellState("c0", ("e1",), (1.0,)), "AB": CellState("c0", ("e2",), (1.0,))})
    table, _ = router.compute(LatencyModel(topo), now=100.0, state=held)
    assert table.routes["AA"].edge_ids == ("e0",) and table.routes["AB"].edge_ids == ("e2",), table.routes
    assert table.overflow == 0


def test_a_large_cell_does_not_spend_its_answers_on_slivers() -> None:
    """e0 and e1 are nearly full (held by AB); the large cell AA ranks them first. Taking their slivers would
    use both of its two answers and push most of its demand over budget; it takes e2 and e3, which fit it."""
    topo = make_topology(
        [(0.0, 0.0)],
        [(10.0, 0.0, 1.0, 0), (10.0, 0.1, 1.0, 0), (10.0, 0.2, 1.0, 0), (10.0, 0.3, 1.0, 0)],
        [(10.0, 0.0, 8), (10.0, 0.05, 8)],
        [(Mode.OPEN, ())] * 2, answers=2, max_answers=2, headroom=1.0)
    planner = CapacityPlanner(topo, topo.cells)
    budget = {e.id: 4.0 for e in topo.edges}  # room for 16, the whole demand
    # AB holds 3.99 on e0 and 3.99 on e1 (shares of its demand of 8; the other 0.02 does not matter here)
    holding = RouteCosts(topo, topo.cells).columns([1], [CellState("c0", ("e0", "e1"), (3.99 / 8, 3.99 / 8))])
    ranked = np.array([[0, 1, 2, 3], [0, 1, 2, 3]], dtype=np.intp)
    allocation = planner.allocate(ranked, np.array([True, True]), budget, holding)
    edges, shares = allocation.route(0, [e.id for e in topo.edges])
    assert edges == ("e2", "e3") and abs(sum(shares) - 1) < 1e-12
    assert float(allocation.room.min()) >= -1e-9, "nothing over budget"


def test_a_switch_that_lowers_overflow_in_total_goes_through() -> None:
    """(A reviewer's case.) AA (demand 9) lives by e1 and e2; they go down, AA moves onto e0, far over its budget;
    they come back. Returning puts e1 and e2 over their budgets (AA alone is more than two edges' worth), but
    lowers the overflow in total: AA returns, and the table ends where a fresh plan is."""
    topo = make_topology([(10.0, 0.0)], [(10.0, 0.0, 1.0, 0), (10.0, 20.0, 1.0, 0), (10.0, 21.0, 1.0, 0)],
                         [(10.0, 20.5, 9), (10.0, 0.0, 1)], [(Mode.OPEN, ())] * 2,
                         answers=1, max_answers=2, headroom=1.0, hysteresis=EAGER)
    router, latency = Router(topo), LatencyModel(topo)
    everything = Health.all_up(topo)
    state = None
    for cycle, down in enumerate([set(), {"e1", "e2"}, set(), set()]):
        table, state = router.compute(latency, Health(everything.edges - down, everything.centers), now=100.0 * cycle, state=state)
        if cycle == 1:
            assert table.routes["AA"].edge_ids == ("e0",)
    plan, _ = Router(topo).compute(latency, everything, now=1000.0)
    assert table.routes["AA"].edge_ids == plan.routes["AA"].edge_ids == ("e1", "e2")
    assert abs(table.overflow - plan.overflow) < 1e-9



def test_a_cell_let_go_by_a_full_center_is_placed_in_the_room_really_left() -> None:
    """(A reviewer's case.) Center c0 (capacity 100) holds AA (60) and AB (50), both within their hold-down. AB lives
    by c1 and e1, where it would go but for its hold-down; c0 beyond capacity lets it go anyway. AC holds e1, which
    fits one cell, and stays. Let go only after hysteresis, AB took e1 with no budget check: 50 beyond budget for
    good. Let go before the capacity plan, it is placed where there is room (e2): nothing over budget, c0 within
    capacity, and the next cycles change nothing."""
    hold_down = HysteresisSettings(absolute_ms=5.0, relative=0.1, consecutive=1, hold_down_s=300.0)
    topo = make_topology([(0.0, 0.0), (0.0, 40.0)],
                         [(1.0, 1.0, 120.0, 0), (1.0, 39.0, 50.0, 0), (1.0, 41.0, 60.0, 0)],  # e0 by c0; e1, e2 by c1
                         [(2.0, 0.5, 60), (2.0, 39.2, 50), (2.0, 40.8, 50)], [(Mode.OPEN, ())] * 3,
                         answers=1, max_answers=2, headroom=230.0 / 160.0, hysteresis=hold_down)
    topo = dataclasses.replace(topo, centers=(dataclasses.replace(topo.centers[0], capacity=100.0), topo.centers[1]))
    router = Router(topo)
    state = RouterState(1, "", {"AA": CellState("c0", ("e0",), (1.0,), 0, 990.0), "AB": CellState("c0", ("e0",), (1.0,), 0, 990.0),
                                "AC": CellState("c1", ("e1",), (1.0,), 0, 990.0)})
    table, state = router.compute(LatencyModel(topo), now=1000.0, state=state)
    assert table.routes["AB"].center == "c1" and table.routes["AB"].reason == "center_capacity"
    assert table.routes["AB"].edge_ids == ("e2",) and table.routes["AC"].edge_ids == ("e1",), table.routes
    assert table.overflow == 0
    for now in (1060.0, 1400.0):
        again, state = router.compute(LatencyModel(topo), now=now, state=state)
        assert again.content_hash == table.content_hash and again.overflow == 0


def test_cells_let_go_along_a_chain_of_full_centers_leave_none_beyond_capacity() -> None:
    """(A reviewer's case.) Four centers of capacity 100, every route within its hold-down. c0 holds 105 (X, 35, lives
    by c1), c1 holds 85 (Y, 45, lives by c2), c2 holds 90 (W, 50, lives by c3), c3 nothing; every cell on its best
    center fits (70, 75, 85, 50). Letting X go fills c1 beyond capacity after Y was passed over, and so on along the
    chain: one pass left c2 at 135 while c3 was empty. Passes repeat until nothing moves: the first cycle is within
    capacity everywhere, with no demand beyond edge budgets."""
    centers = [(0.0, 0.0), (0.0, 40.0), (0.0, 80.0), (0.0, 120.0)]
    topo = make_topology(centers, [(1.0, lon, 100.0, 0) for _, lon in centers],
                         [(2.0, 0.0, 70), (2.0, 32.0, 35), (2.0, 40.0, 40), (2.0, 72.0, 45), (2.0, 80.0, 40), (2.0, 112.0, 50)],
                         [(Mode.OPEN, ())] * 6, answers=1, max_answers=2, headroom=1.25,
                         hysteresis=HysteresisSettings(absolute_ms=5.0, relative=0.1, consecutive=3, hold_down_s=300.0))
    topo = dataclasses.replace(topo, centers=tuple(dataclasses.replace(c, capacity=100.0) for c in topo.centers))
    held = {"AA": "c0", "AB": "c0", "AC": "c1", "AD": "c1", "AE": "c2", "AF": "c2"}
    state = RouterState(1, "", {cid: CellState(c, (f"e{c[1]}",), (1.0,), 0, 990.0) for cid, c in held.items()})
    table, _ = Router(topo).compute(LatencyModel(topo), now=1000.0, state=state)
    demand = {c.id: c.demand for c in topo.cells}
    load = {c: sum(demand[cid] for cid, r in table.routes.items() if r.center == c) for c in topo.center_ids}
    assert load == {"c0": 70, "c1": 75, "c2": 85, "c3": 50}, load
    assert table.overflow == 0
