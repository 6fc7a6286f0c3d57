"""Relief: a cell held on an edge beyond its budget moves into the room really left, near where it is, and relief only
ever lowers the demand beyond budgets. Real Router on small in-memory worlds and on random ones; relief switched off
(Relief.moves answering nothing) only to compare against."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from globalaccel.latency import LatencyModel
from globalaccel.residency import Mode
from globalaccel.routing import REASON_EDGE_FULL, Health, Router, RouterState
from globalaccel.routing.relief import Relief, relieve_in_order
from globalaccel.routing.table import CellState, RoutingTable
from globalaccel.settings import HysteresisSettings
from globalaccel.topology import Topology
from tests.worlds import make_topology, worlds

HOLD = HysteresisSettings(absolute_ms=5.0, relative=0.1, consecutive=3, hold_down_s=300.0)


def crowded(far_room: bool = False) -> Topology:
    """One center; e0 near three cells of demand 10, e1 a little north, e2 a little south (each budget 12.5 with
    headroom 1.25), or with `far_room` e2 on another continent and three answers a cell (enough to fit: the slivers
    left on e0 and e1, and the rest on e2). AA and AB are both held on e0 (20 on a budget of 12.5)."""
    e2 = (10.0, 90.0, 1.0, 0) if far_room else (9.6, 0.0, 1.0, 0)
    return make_topology([(0.0, 0.0)], [(10.0, 0.0, 1.0, 0), (10.4, 0.0, 1.0, 0), e2],
                         [(10.0, 0.1, 10), (10.0, -0.1, 10), (10.4, 0.1, 10)], [(Mode.OPEN, ())] * 3,
                         answers=1, max_answers=3 if far_room else 2, headroom=1.25, hysteresis=HOLD)


def held(last_switch_at: float | None = None) -> RouterState:
    return RouterState(1, "", {"AA": CellState("c0", ("e0",), (1.0,), 0, last_switch_at),
                               "AB": CellState("c0", ("e0",), (1.0,), 0, last_switch_at),
                               "AC": CellState("c0", ("e1",), (1.0,), 0, last_switch_at)})


def changed(table: RoutingTable, state: RouterState) -> dict[str, tuple[str, ...]]:
    return {cid: r.edge_ids for cid, r in table.routes.items() if r.edge_ids != state.cells[cid].edges}


def test_a_held_cell_on_an_edge_beyond_budget_moves_into_room_near_it() -> None:
    """Hysteresis alone would keep both cells on e0 for good (each route is valid and none is faster by the margin).
    Relief moves one of them, the first by id, with a share kept on e0 where it fits: nothing beyond budget is left."""
    topo = crowded()
    state = held()
    table, after = Router(topo).compute(LatencyModel(topo), now=1000.0, state=state)
    moved = changed(table, state)
    assert list(moved) == ["AA"] and table.routes["AA"].reason == REASON_EDGE_FULL, table.routes
    assert set(moved["AA"]) == {"e0", "e2"}
    assert table.overflow == 0
    assert after.cells["AA"].last_switch_at == 1000.0, "a relief is a switch: the hold-down runs from it"
    again, _ = Router(topo).compute(LatencyModel(topo), now=1005.0, state=after)
    assert again.content_hash == table.content_hash, "nothing beyond budget is left: relief stops"


def test_relief_never_sends_a_cell_to_another_continent() -> None:
    """The only room is 90 degrees away: far slower than the slowest edge the cells have now plus the margin. They stay,
    and the demand beyond e0's budget is reported."""
    topo = crowded(far_room=True)
    state = held()
    table, _ = Router(topo).compute(LatencyModel(topo), now=1000.0, state=state)
    assert changed(table, state) == {}
    assert table.overflow == pytest.approx(7.5)


def test_relief_waits_for_the_hold_down() -> None:
    """Switched 100 s ago (hold-down 300 s): held where they are; once the hold-down has passed, relieved."""
    topo = crowded()
    state = held(last_switch_at=900.0)
    table, state = Router(topo).compute(LatencyModel(topo), now=1000.0, state=state)
    assert changed(table, held()) == {} and table.overflow == pytest.approx(7.5)
    table, _ = Router(topo).compute(LatencyModel(topo), now=1200.0, state=state)
    assert table.overflow == 0 and table.routes["AA"].reason == REASON_EDGE_FULL


def test_kernel_moves_only_what_fits_whole_and_cuts_enough() -> None:
    """relieve_in_order alone: room per edge [-5, 3, 100], beyond budget below 0; two cells of demand 4 on edge 0, one
    answer each (k=1), up to two. Row 0 may only use edge 1 (room 3): its demand does not fit whole, it stays and its
    load is put back. Row 1 may use edges 1 and 2: 3 on edge 1, 1 on edge 2, best first, and room is taken off."""
    room = np.array([-5.0, 3.0, 100.0])
    beyond = np.zeros(3)
    candidates = np.array([[1, -1], [1, 2]], dtype=np.int64)
    demand = np.array([4.0, 4.0])
    current_edges = np.array([[0], [0]], dtype=np.int64)
    current_weights = np.array([[1.0], [1.0]])
    out_edges = np.full((2, 2), -1, dtype=np.int64)
    out_shares = np.zeros((2, 2))
    out_count = np.zeros(2, dtype=np.int64)
    moved = np.zeros(2, dtype=bool)
    relieve_in_order(candidates, demand, current_edges, current_weights, room, beyond, 1, 2, 0.25, 0.5, out_edges, out_shares,
                     out_count, moved)
    assert moved.tolist() == [False, True]
    assert out_edges[1].tolist() == [1, 2] and out_shares[1].tolist() == pytest.approx([0.75, 0.25])
    assert room.tolist() == pytest.approx([-1.0, 0.0, 99.0]), "row 0's load is back where it was; row 1's is moved"


def test_kernel_leaves_a_cell_whose_move_cuts_too_little() -> None:
    """A cell of demand 10 with a quarter on an edge beyond budget by only 1: moving it whole cuts 1 of the 2.5 it
    carried there, under least_cut 0.5: it stays (a sliver over budget is not worth a cell's move)."""
    room = np.array([-1.0, 0.0, 0.0, 0.0, 100.0])
    candidates = np.array([[1, 2, 3, 4]], dtype=np.int64)
    current_edges = np.array([[0, 1, 2, 3]], dtype=np.int64)
    current_weights = np.array([[0.25, 0.25, 0.25, 0.25]])
    out_edges = np.full((1, 4), -1, dtype=np.int64)
    moved = np.zeros(1, dtype=bool)
    relieve_in_order(candidates, np.array([10.0]), current_edges, current_weights, room, np.zeros(5), 4, 4, 0.25, 0.5, out_edges,
                     np.zeros((1, 4)), np.zeros(1, dtype=np.int64), moved)
    assert not moved[0] and room.tolist() == [-1.0, 0.0, 0.0, 0.0, 100.0]


def _beyond(table: RoutingTable) -> dict[str, float]:
    return {e: v - table.edge_budget.get(e, 0.0) for e, v in table.edge_load.items()
            if v > table.edge_budget.get(e, 0.0) * (1 + 1e-9)}


@settings(max_examples=120, deadline=None)
@given(worlds(), st.integers(0, 2**32 - 1))
def test_relief_only_lowers_the_demand_beyond_budgets(topo: Topology, seed: int) -> None:
    """Random worlds, held states that crowd random edges: the same evaluation with and without relief. With it, the
    demand beyond budgets is never higher, no edge within its budget without relief is beyond it with relief, every
    relieved cell keeps its center and is outside its hold-down, and every other cell's route is the same."""
    rng = random.Random(seed)
    router, latency = Router(topo), LatencyModel(topo)
    _, state = router.compute(latency, now=0.0)
    edge_ids = [e.id for e in topo.edges]
    cells = dict(state.cells)
    for cid, cell in list(cells.items()):
        if cell.center is not None and rng.random() < 0.6:
            edges = tuple(rng.sample(edge_ids, k=min(len(edge_ids), rng.randint(1, 3))))
            switched = rng.choice([None, 900.0, 500.0])
            cells[cid] = CellState(cell.center, edges, tuple(1.0 / len(edges) for _ in edges), 0, switched)
    crowded_state = RouterState(1, "", cells)
    health = Health(frozenset(e for e in edge_ids if rng.random() < 0.9), frozenset(topo.center_ids))
    with_relief, _ = router.compute(latency, health, now=1000.0, state=crowded_state)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Relief, "moves", lambda self, *args, **kwargs: [])
        without, _ = Router(topo).compute(latency, health, now=1000.0, state=crowded_state)
    assert with_relief.overflow <= without.overflow * (1 + 1e-9) + 1e-6
    over_with, over_without = _beyond(with_relief), _beyond(without)
    tolerance = {e: 1e-9 * (1.0 + with_relief.edge_budget.get(e, 0.0)) for e in over_with}
    assert all(e in over_without or x <= tolerance[e] for e, x in over_with.items()), (over_with, over_without)
    for cid, route in with_relief.routes.items():
        other = without.routes[cid]
        if route.reason == REASON_EDGE_FULL:
            assert route.center == other.center == cells[cid].center
            switched = cells[cid].last_switch_at
            assert switched is None or 1000.0 - switched >= topo.routing.hysteresis.hold_down_s
        else:
            assert (route.center, route.edge_ids, [a.weight for a in route.answers]) == \
                   (other.center, other.edge_ids, [a.weight for a in other.answers]), cid
    assert math.isfinite(with_relief.overflow)


def test_a_router_that_found_nothing_to_move_still_sees_room_that_appears() -> None:
    """One router, reused (it remembers what it was given when relief moved nothing, to skip the same work next time):
    first nothing fits near AA and AB; then AC has left e1 (for the far edge), room appears near them, and one moves."""
    topo = crowded(far_room=True)
    router = Router(topo)
    state = held()
    table, _ = router.compute(LatencyModel(topo), now=1000.0, state=state)
    assert changed(table, state) == {}
    again, _ = router.compute(LatencyModel(topo), now=1005.0, state=state)
    assert again.content_hash == table.content_hash
    cells = dict(state.cells)
    cells["AC"] = CellState("c0", ("e2",), (1.0,))
    moved_off = RouterState(1, "", cells)
    table, _ = router.compute(LatencyModel(topo), now=1010.0, state=moved_off)
    assert table.routes["AA"].reason == REASON_EDGE_FULL and "e1" in table.routes["AA"].edge_ids, table.routes
    assert table.overflow == 0


def test_cells_that_cannot_move_do_not_hide_the_ones_after_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """Relief ranks and tries cells in batches (here of 2), most demand beyond budgets first. AA and AB, held on e0 far
    beyond its budget, have room only on another continent: they stay. The next batch is still tried: AD, held with AE
    on e3 a little beyond its budget, moves part of its demand to e4 next door (helper-37: a batch that moved nothing
    hid every cell after it, for good)."""
    import globalaccel.routing.relief as relief

    monkeypatch.setattr(relief, "RELIEF_BATCH", 2)
    topo = make_topology([(0.0, 0.0)],
                         [(10.0, 0.0, 1.0, 0), (10.4, 0.0, 1.0, 0), (10.0, 90.0, 1.0, 0), (-10.0, 0.0, 1.0, 0), (-10.4, 0.0, 1.0, 0)],
                         [(10.0, 0.1, 10), (10.0, -0.1, 10), (10.4, 0.1, 10), (-10.0, 0.1, 6), (-10.0, -0.1, 6)],
                         [(Mode.OPEN, ())] * 5, answers=1, max_answers=3, headroom=1.25, hysteresis=HOLD)
    state = RouterState(1, "", {"AA": CellState("c0", ("e0",), (1.0,)), "AB": CellState("c0", ("e0",), (1.0,)),
                                "AC": CellState("c0", ("e1",), (1.0,)), "AD": CellState("c0", ("e3",), (1.0,)),
                                "AE": CellState("c0", ("e3",), (1.0,))})
    table, _ = Router(topo).compute(LatencyModel(topo), now=1000.0, state=state)
    moved = changed(table, state)
    assert list(moved) == ["AD"] and set(moved["AD"]) == {"e3", "e4"}, table.routes
    assert "e3" not in _beyond(table) and "e0" in _beyond(table)
