"""The router's bulk arithmetic against its one-cell definitions: routing.route_costs against
PhysicsModel.rtt_ms (haversine, one pair at a time) and a plain loop over the answers, to the last bit (a
last bit can tip a decision sitting exactly at the hysteresis margin), and hysteresis.judge against the
rule written out for one cell. Pure computation: nothing to mock."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from globalaccel.latency import PhysicsModel
from globalaccel.routing.hysteresis import judge
from globalaccel.routing.route_costs import RouteCosts
from globalaccel.routing.table import CellState
from globalaccel.topology import load_stack
from tests.conftest import STACKS

DEV = load_stack("dev", STACKS)
PHYSICS = PhysicsModel(DEV.latency)
COSTS = RouteCosts(DEV, DEV.cells)


@st.composite
def routes(draw: st.DrawFn) -> tuple[list[int], list[CellState], np.ndarray]:
    n = draw(st.integers(1, 12))
    cells = [draw(st.integers(0, len(DEV.cells) - 1)) for _ in range(n)]
    out = []
    for _ in range(n):
        edges = draw(st.lists(st.sampled_from([e.id for e in DEV.edges]), min_size=1, max_size=DEV.routing.max_answers, unique=True))
        raw = [draw(st.floats(0.01, 1.0)) for _ in edges]
        out.append(CellState(draw(st.sampled_from(DEV.center_ids)), tuple(edges), tuple(w / sum(raw) for w in raw)))
    lookup = np.array(draw(st.lists(st.floats(0.0, 300.0), min_size=len(DEV.center_ids) * len(DEV.edges),
                                    max_size=len(DEV.center_ids) * len(DEV.edges)))).reshape(len(DEV.center_ids), len(DEV.edges))
    return cells, out, lookup


@settings(max_examples=60, deadline=None)
@given(routes())
def test_bulk_costs_equal_the_per_answer_definition(case: tuple[list[int], list[CellState], np.ndarray]) -> None:
    cells, states, lookup = case
    columns = COSTS.columns(cells, states)
    per_answer = COSTS.per_answer(columns, lookup, PHYSICS)
    weighted = COSTS.weighted(columns, lookup, PHYSICS)
    noise = COSTS.noise(columns, lookup / 10)
    edge_pos = {e.id: i for i, e in enumerate(DEV.edges)}
    for row, (n, route) in enumerate(zip(cells, states, strict=True)):
        cell, ci = DEV.cells[n], DEV.center_ids.index(route.center or "")
        expected = [PHYSICS.rtt_ms(cell.lat, cell.lon, DEV.edges[edge_pos[e]].lat, DEV.edges[edge_pos[e]].lon)
                    + lookup[ci, edge_pos[e]] for e in route.edges]
        assert per_answer[row, : len(expected)].tolist() == expected  # PhysicsModel.rtt_ms to the last bit
        assert not per_answer[row, len(expected):].any()  # padding costs nothing
        # Summed in the answers' order, as sum() does: equal to the last bit on these very terms.
        assert weighted[row] == sum(w * c for w, c in zip(route.weights, per_answer[row].tolist(), strict=False))
        assert math.isclose(noise[row], sum(w * lookup[ci, edge_pos[e]] / 10 for e, w in zip(route.edges, route.weights, strict=True)),
                            rel_tol=1e-12, abs_tol=1e-12)


@settings(max_examples=200, deadline=None)
@given(st.floats(1.0, 400.0), st.floats(1.0, 400.0), st.floats(0.0, 30.0), st.integers(0, 5),
       st.one_of(st.none(), st.floats(0.0, 2000.0)), st.floats(0.0, 2000.0))
def test_judge_is_the_one_cell_rule(current: float, fresh: float, spread: float, pending: int, last: float | None, now: float) -> None:
    hyst = DEV.routing.hysteresis
    switch, kept = judge(np.array([current]), np.array([fresh]), np.array([spread]), np.array([pending]),
                         np.array([np.nan if last is None else last]), now, hyst)
    better = current - fresh >= max(hyst.absolute_ms, hyst.relative * current) + spread
    count = pending + 1 if better else 0
    held_down = last is not None and now - last < hyst.hold_down_s
    assert bool(switch[0]) == (better and count >= hyst.consecutive and not held_down)
    assert int(kept[0]) == count


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.one_of(st.floats(0.0, 500.0), st.just(float("nan"))), min_size=5, max_size=5), min_size=1, max_size=20))
def test_row_medians_are_numpys_nanmedian(rows: list[list[float]]) -> None:
    """latency.nanmedian_rows (one sort) gives np.nanmedian's figures exactly, NaN for a row of NaNs."""
    import warnings

    from globalaccel.latency import nanmedian_rows

    values = np.array(rows)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # nanmedian warns on an all-NaN row
        expected = np.nanmedian(values, axis=1)
    assert np.array_equal(nanmedian_rows(values), expected, equal_nan=True)


def test_a_route_whose_weights_do_not_match_its_edges_is_refused_by_name() -> None:
    """A hand-edited state file: the router names the cell rather than shifting weights between routes."""
    import pytest

    from globalaccel.routing.table import RouterState

    edges = tuple(e.id for e in DEV.edges[:3])
    good = CellState(DEV.center_ids[0], edges, (0.5, 0.5, 0.0))
    bad = CellState(DEV.center_ids[0], edges, (0.5, 0.5))
    with pytest.raises(ValueError, match=f"cell {DEV.cells[1].id}: 3 edges but 2 weights"):
        COSTS.columns([0, 1], [good, bad])
    with pytest.raises(ValueError, match="cell DE: 3 edges but 2 weights"):
        RouterState.from_json({"cells": {"DE": {"center": bad.center, "edges": list(edges), "weights": [0.5, 0.5],
                                                "pending": 0, "last_switch_at": None}}})


def test_cells_with_the_same_id_are_refused() -> None:
    import dataclasses

    import pytest

    from globalaccel.routing import Router

    twin = dataclasses.replace(DEV.cells[1], id=DEV.cells[0].id)
    with pytest.raises(ValueError, match=f"given more than once: {DEV.cells[0].id}"):
        Router(DEV, (DEV.cells[0], twin, *DEV.cells[2:]))


def test_reloaded_figures_leave_no_old_window_behind() -> None:
    """load_json replaces a path's figures: its window starts empty, so the steady level is physics again until
    new samples come (the array the router reads and the path's PathStats agree)."""
    from globalaccel.latency import LatencyModel

    latency = LatencyModel(DEV)
    center, edge = DEV.center_ids[0], DEV.edges[0].id
    for t in range(5):
        latency.record(center, edge, 400.0, float(t))
    steady, _ = latency.center_edge_steady_ms(5.0)
    assert steady[0, 0] == 400.0
    latency.load_json([[center, edge, 123.0, 5.0]])
    steady, _ = latency.center_edge_steady_ms(5.0)
    assert steady[0, 0] == latency.physics_center_edge[0, 0]


def test_the_table_hash_is_table_hash_whatever_type_the_weights_had() -> None:
    """The router keeps each cell's line of the hash while its decision is unchanged; a state handed in with
    whole-number weights (1, not 1.0: equal, but another repr) must not reuse the line of 1.0."""
    from globalaccel.latency import LatencyModel
    from globalaccel.routing import Router, RouterState
    from globalaccel.routing.table import table_hash

    router, latency = Router(DEV), LatencyModel(DEV)
    table, state = router.compute(latency, now=0.0)
    assert table.content_hash == table_hash(table.routes)
    whole = {cid: cell._replace(weights=tuple(int(w) if w == int(w) else w for w in cell.weights)) for cid, cell in state.cells.items()}
    assert any(type(w) is int for cell in whole.values() for w in cell.weights)
    again, _ = router.compute(latency, now=1.0, state=RouterState(state.generation, state.content_hash, whole))
    assert again.content_hash == table_hash(again.routes)


def test_a_saved_state_with_mismatched_weights_is_refused_naming_its_file(tmp_path: Path) -> None:
    """The loop (and the audit's drift check) read the router state through StateStore: a hand-edited file
    gets an operator's error naming the file and the cell, not a traceback."""
    import json

    import pytest

    from globalaccel.control.state import StateError, StateStore

    edges = [e.id for e in DEV.edges[:2]]
    (tmp_path / "state.json").write_text(json.dumps({"stack": DEV.stack, "router": {"cells": {
        "FR": {"center": DEV.center_ids[0], "edges": edges, "weights": [1.0], "pending": 0, "last_switch_at": None}}}}))
    store = StateStore(tmp_path)
    data = store.load()
    assert data is not None
    with pytest.raises(StateError, match=r"state\.json: router state is invalid \(router state, cell FR: 2 edges but 1 weights\)"):
        store.router_state(data)


def test_a_state_whose_cells_were_replaced_is_read_anew_not_from_the_arrays_kept_with_it() -> None:
    """The router keeps its own routes as arrays with the state it returns and takes them back next time instead of
    reading the state cell by cell. The loop replaces a state's cells (dataclasses.replace after a restart), which
    carries those arrays over: they must then be ignored, and the result be the same as for a state built afresh.
    The cells it hands out cannot be changed in place."""
    import dataclasses

    import pytest

    from globalaccel.latency import LatencyModel
    from globalaccel.routing import Router, RouterState

    router, latency = Router(DEV), LatencyModel(DEV)
    _, state = router.compute(latency, now=0.0)
    with pytest.raises(TypeError):
        state.cells[next(iter(state.cells))] = CellState(None, (), ())  # type: ignore[index]
    with pytest.raises(ValueError, match="read-only"):
        state.columns.routes.edges[0, 0] = 7  # type: ignore[attr-defined]
    # Still a state like any other: it pickles, copies and converts, and compares equal to its copies.
    import copy
    import pickle

    assert pickle.loads(pickle.dumps(state)) == state == copy.deepcopy(state) == copy.copy(state)
    assert dataclasses.asdict(state)["cells"] == dict(state.cells)
    assert RouterState.from_json(state.to_json()) == state
    # Every routed cell moved onto another edge of the catalog, its center kept: valid routes the router must judge.
    spare = DEV.edges[-1].id
    moved = {cid: cell._replace(edges=(spare,), weights=(1.0,), last_switch_at=0.0) if cell.center else cell
             for cid, cell in state.cells.items()}
    replaced = dataclasses.replace(state, cells=moved)
    assert replaced.columns is state.columns  # carried over: the case this test is about
    fresh_state = RouterState(state.generation, state.content_hash, moved)
    got, got_state = router.compute(latency, now=1000.0, state=replaced)
    want, want_state = Router(DEV).compute(latency, now=1000.0, state=fresh_state)
    assert got.routes == want.routes and dict(got_state.cells) == dict(want_state.cells)
    assert got.edge_load == want.edge_load


_lat = st.floats(-90.0, 90.0, allow_nan=False)
_lon = st.floats(-180.0, 180.0, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_lat, _lon, _lat, _lon), min_size=1, max_size=50), st.integers(0, 2**32 - 1))
def test_compiled_client_legs_are_physics_rtt_ms_to_the_last_bit(pairs: list[tuple[float, float, float, float]], seed: int) -> None:
    """The compiled haversine against PhysicsModel.rtt_ms, compared exactly: random pairs, near-equal, equal and
    near-antipodal ones, and 20,000 random pairs per example (a compiled x * x in place of Python's `** 2` differed in
    the last bit about once in a thousand)."""
    from globalaccel.geo import EARTH_RADIUS_KM
    from globalaccel.routing.route_costs import physics_rtts
    from globalaccel.settings import LatencySettings

    physics = PhysicsModel(LatencySettings())
    rng = np.random.default_rng(seed)
    n = 20_000
    lat1, lon1 = rng.uniform(-90, 90, n), rng.uniform(-180, 180, n)
    lat2, lon2 = rng.uniform(-90, 90, n), rng.uniform(-180, 180, n)
    lat2[: n // 4], lon2[: n // 4] = lat1[: n // 4] + rng.normal(0, 1e-3, n // 4), lon1[: n // 4] + rng.normal(0, 1e-3, n // 4)
    lat2[n // 4 : n // 2], lon2[n // 4 : n // 2] = -lat1[n // 4 : n // 2], lon1[n // 4 : n // 2] + 180.0 - rng.normal(0, 1e-4, n // 4)
    lat2[-10:], lon2[-10:] = lat1[-10:], lon1[-10:]
    given_pairs = np.array(pairs, dtype=np.float64).reshape(-1, 4)
    lat1, lon1 = np.concatenate([given_pairs[:, 0], lat1]), np.concatenate([given_pairs[:, 1], lon1])
    lat2, lon2 = np.concatenate([given_pairs[:, 2], lat2]), np.concatenate([given_pairs[:, 3], lon2])
    out = np.empty(lat1.size)
    physics_rtts(lat1, lon1, lat2, lon2, EARTH_RADIUS_KM, physics.ms_per_km, physics.settings.overhead_ms, 2.0, out)
    want = [physics.rtt_ms(*p) for p in zip(lat1.tolist(), lon1.tolist(), lat2.tolist(), lon2.tolist(), strict=True)]
    assert out.tolist() == want


def test_a_router_reused_across_cycles_gives_the_tables_a_fresh_router_gives() -> None:
    """The router keeps what it built last time (hash lines, arrays of the state) and hands out the very decided states
    again where a cell's route is unchanged, their hash lines unformatted. Over cycles that hold still, move figures, lose
    and regain a center (reasons and fallbacks change) and lose edges, each table must equal the one a new router
    computes from the same state, and the unchanged cycle must really reuse states (or this test would not test it)."""
    import random

    from globalaccel.latency import LatencyModel
    from globalaccel.routing import Health, Router, RouterState

    topo = load_stack("prod", STACKS)
    reused, latency, rng = Router(topo), LatencyModel(topo), random.Random(11)
    everything = Health.all_up(topo)
    lost_center = topo.center_ids[1]
    plan = [everything, everything, Health(everything.edges, everything.centers - {lost_center}), everything,
            Health(everything.edges - {e.id for e in topo.edges[::5]}, everything.centers), everything]
    state: RouterState | None = None
    for cycle, health in enumerate(plan):
        now = 10.0 * cycle
        if cycle >= 3:  # figures move
            for ci, center in enumerate(topo.center_ids):
                for ei in rng.sample(range(len(topo.edges)), 400):
                    latency.record(center, topo.edges[ei].id, float(latency.physics_center_edge[ci, ei]) + rng.uniform(0, 20), now)
        table, next_state = reused.compute(latency, health, now, state)
        fresh_table, fresh_state = Router(topo).compute(latency, health, now, state)
        assert table.routes == fresh_table.routes and table.content_hash == fresh_table.content_hash
        assert next_state.cells == fresh_state.cells
        if cycle == 1:
            assert state is not None
            same_objects = sum(decided is state.cells.get(cid) for cid, decided in next_state.cells.items())
            assert same_objects > 0.5 * len(table.routes)
        state = next_state
    import copy
    import pickle

    # A table pickles and copies as the routes it stands for (they are built when read: routing.table_routes).
    assert pickle.loads(pickle.dumps(table)) == table == copy.deepcopy(table)

