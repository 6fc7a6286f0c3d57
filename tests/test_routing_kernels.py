"""The router's speed-ups are invisible: its compiled kernels (numba) against the rules they replaced, written here in
plain Python and numpy as they were in the router before (globalaccel 016b1cd), and its scoring tile by tile against
scoring every edge. Every figure must be the same to the last bit (tiles: the same choices and ranks, costs but for
rounding), or a decision sitting exactly at a margin could tip. Random worlds via hypothesis; the router's own
behaviour is tested elsewhere (test_capacity_holds, test_center_capacity, test_hysteresis, ...)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from globalaccel.routing.capacity import SLIVER
from globalaccel.routing.final_ranks import final_ranks
from globalaccel.routing.greedy import place_in_order

# ------------------------------------------------------------------------------------------------------------------
# The greedy split as the router ran it in Python (capacity.py at 016b1cd), one cell at a time.


def _fill(demand: float, candidates: list[int], room_of: Callable[[int], float], per_answer: float, max_answers: int,
          passes: tuple[float, ...]) -> tuple[dict[int, float], float]:
    left, tiny = demand, demand * 1e-9
    taken: dict[int, float] = {}
    for least in passes:
        for i in candidates:
            if left <= tiny or len(taken) >= max_answers:
                break
            if i in taken:
                continue
            room = room_of(i)
            if room <= tiny or room < min(least, left):
                continue
            amount = min(room, per_answer, left)
            taken[i] = amount
            left -= amount
    return taken, left


def _greedy_one(demand: float, candidates: list[int], room_of: Callable[[int], float], k: int,
                max_answers: int) -> tuple[tuple[tuple[int, ...], tuple[float, ...]], dict[int, float]]:
    if demand <= 0:
        best = candidates[:k]
        return (tuple(best), (1.0 / len(best),) * len(best)), {}
    per_answer = demand / min(k, len(candidates))
    tiny = demand * 1e-9
    taken, left = _fill(demand, candidates, room_of, per_answer, max_answers, (tiny,))
    if left > tiny:
        spared, spared_left = _fill(demand, candidates, room_of, per_answer, max_answers, (per_answer * SLIVER, tiny))
        if spared_left < left - tiny:
            taken, left = spared, spared_left
    if not taken:
        best = candidates[:k]
        taken = {i: demand / len(best) for i in best}
        left = 0.0
    if left > tiny:
        placed = sum(taken.values())
        taken = {i: v + left * v / placed for i, v in taken.items()}
    rank = {i: r for r, i in enumerate(candidates)}
    taken = dict(sorted(taken.items(), key=lambda item: rank[item[0]]))
    return (tuple(taken), tuple([v / demand for v in taken.values()])), taken


@st.composite
def greedy_worlds(draw: st.DrawFn) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.float64], int, int]:
    n_edges = draw(st.integers(2, 30))
    n_cells = draw(st.integers(1, 25))
    width = draw(st.integers(1, min(12, n_edges)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    candidates = np.full((n_cells, width), -1, dtype=np.int64)
    for m in range(n_cells):
        count = int(rng.integers(1, width + 1))  # at least one: a cell the plan places has one
        candidates[m, :count] = rng.choice(n_edges, size=count, replace=False)
    demand = np.where(rng.random(n_cells) < 0.1, 0.0, rng.uniform(0.0, 100.0, n_cells).round(int(rng.integers(0, 4))))
    room = rng.uniform(-20.0, 80.0, n_edges) * (rng.random(n_edges) < 0.8)
    k = draw(st.integers(1, 4))
    max_answers = draw(st.integers(k, 8))
    return candidates, demand, room, k, max_answers


@settings(max_examples=300, deadline=None)
@given(greedy_worlds())
def test_greedy_kernel_places_every_cell_as_the_python_rule_did(world: tuple[NDArray[np.int64], NDArray[np.float64],
                                                                             NDArray[np.float64], int, int]) -> None:
    candidates, demand, room, k, max_answers = world
    expected_room = room.tolist()
    expected = []
    for m in range(candidates.shape[0]):
        route, taken = _greedy_one(float(demand[m]), [int(i) for i in candidates[m] if i >= 0], expected_room.__getitem__,
                                   k, max_answers)
        for i, amount in taken.items():
            expected_room[i] -= amount
        expected.append(route)
    width = max(k, max_answers)
    edges = np.full((candidates.shape[0], width), -1, dtype=np.int64)
    shares = np.zeros((candidates.shape[0], width))
    count = np.zeros(candidates.shape[0], dtype=np.int64)
    got_room = room.copy()
    place_in_order(candidates, demand, got_room, k, max_answers, SLIVER, edges, shares, count)
    got = [(tuple(edges[m, : count[m]].tolist()), tuple(shares[m, : count[m]].tolist())) for m in range(candidates.shape[0])]
    assert got == expected  # floats compared exactly: the same operations in the same order
    assert got_room.tolist() == expected_room


# ------------------------------------------------------------------------------------------------------------------
# Scoring tile by tile against scoring every edge of every cell (the dense search: the rule in its plainest form).


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([(0.2, 0.5), (1.0, 4.0), (3.0, 9.0), (6.0, 40.0)]), st.booleans(),
       st.booleans(), st.booleans(), st.booleans())
def test_tiles_choose_and_rank_exactly_as_scoring_every_edge(seed: int, degrees: tuple[float, float], restricted: bool,
                                                             subset: bool, near_poles: bool, infinite_legs: bool) -> None:
    """Cells clustered around edges (so that tiles hold many), some exactly on an edge or centimetres from it,
    co-located edges, every path measured with up to 60 ms of excess and some edges far slower (or, given as arrays,
    infinitely slow), forbidden edges per group, current centers to favour, and tiles from far smaller to far larger
    than the stack's. The tiles must give the same center, every rank (not only the first max_answers) and every cost,
    to the bit, as scoring every edge."""
    import random

    from globalaccel.cells import Cell
    from globalaccel.latency import LatencyModel
    from globalaccel.residency import Mode
    from globalaccel.routing import candidates
    from tests.worlds import make_topology

    rng = random.Random(seed)
    lat_range = (60.0, 89.0) if near_poles else (-60.0, 70.0)
    sites = [(rng.uniform(*lat_range), rng.uniform(-180, 180)) for _ in range(120)]
    edges = [(*rng.choice(sites), 100.0, rng.randrange(10)) for _ in range(300)]
    edges += [(*sites[0], 100.0, 0)] * rng.randint(1, 12)
    countries = [(rng.uniform(-60, 70), rng.uniform(-180, 180), 1000) for _ in range(10)]
    rules = [(Mode.OPEN, tuple(sorted(rng.sample(range(4), rng.randint(1, 4))))) for _ in countries]
    topo = make_topology([(40.0, -75.0), (50.0, 8.0), (25.0, 55.0), (1.0, 104.0)], edges, countries, rules, answers=4,
                         max_answers=6)
    cells = []
    for i in range(rng.randint(50, 900)):
        lat, lon = rng.choice(sites) if rng.random() < 0.9 else (rng.uniform(-85, 85), rng.uniform(-180, 180))
        spread = rng.choice([0.0, 1e-7, 2.0, 2.0])  # on the edge's site, centimetres from it, or around it
        cells.append(Cell(f"n{i}", topo.cells[i % len(topo.cells)].country,
                          max(-89.9, min(89.9, lat + rng.uniform(-spread, spread))),
                          (lon + rng.uniform(-spread, spread) + 180.0) % 360.0 - 180.0, 1.0))
    latency = LatencyModel(topo)
    for ci, center in enumerate(topo.center_ids):
        for ei, edge in enumerate(topo.edges):
            slow = 400.0 if rng.random() < 0.02 else 0.0
            latency.record(center, edge.id, float(latency.physics_center_edge[ci, ei]) + rng.uniform(0, 60) + slow, now=0.0)
    healthy = np.array([i for i in range(len(topo.edges)) if rng.random() > 0.1], dtype=np.intp)
    center_edge = latency.center_edge_ms(1.0)
    if infinite_legs:  # not from a LatencyModel (it refuses such figures), but the search must stay exact anyway
        center_edge[rng.randrange(4), rng.sample(range(len(topo.edges)), 40)] = np.inf
    penalty = latency.edge_penalty_ms(1.0, center_edge) + np.array([rng.uniform(0, 30) * (rng.random() < 0.3) for _ in topo.edges])
    allowed = np.array([[rng.random() < 0.7 for _ in cells] for _ in topo.center_ids])
    prefer = np.array([rng.randrange(-1, 4) for _ in cells], dtype=np.intp)
    edge_ok = np.array([[rng.random() < 0.4 for _ in topo.edges] for _ in range(3)]) if restricted else None
    cell_group = np.array([rng.randrange(3) for _ in cells], dtype=np.intp) if restricted else None
    only = np.array(sorted(rng.sample(range(len(cells)), len(cells) // 3)), dtype=np.intp) if subset else None
    saved = candidates.DENSE_LIMIT
    try:
        candidates.DENSE_LIMIT = 0
        search = candidates.CandidateSearch(topo, cells)
        search.tile_degrees = degrees
        tiled = search.select(latency, healthy, center_edge, penalty, allowed, prefer, edge_ok, cell_group, only)
        candidates.DENSE_LIMIT = 10**12
        dense = candidates.CandidateSearch(topo, cells).select(latency, healthy, center_edge, penalty, allowed, prefer, edge_ok,
                                                               cell_group, only)
    finally:
        candidates.DENSE_LIMIT = saved
    assert tiled[0].tolist() == dense[0].tolist()
    routed = dense[0] >= 0
    assert routed.sum() > 0
    finite = np.isfinite(dense[2][routed])  # past a cell's allowed edges only forbidden ones remain, in any order
    assert np.array_equal(np.isfinite(tiled[2][routed]), finite)
    assert tiled[1][routed][finite].tolist() == dense[1][routed][finite].tolist()
    assert tiled[2][routed][finite].tolist() == dense[2][routed][finite].tolist()
    for row in tiled[1][routed]:  # each edge ranked once
        assert len(set(row.tolist())) == row.size
    if restricted and not infinite_legs:  # the rest of a cell's ranks: edges it may not use, which the router drops
        assert edge_ok is not None and cell_group is not None
        rows, ranks = np.nonzero(~np.isfinite(tiled[2]) & routed[:, None])
        assert not edge_ok[cell_group[rows], healthy[tiled[1][rows, ranks]]].any()


def _numpy_final_ranks(ranked: NDArray[np.int64], cost: NDArray[np.float64], choice: NDArray[np.int64], prefer: NDArray[np.int64],
                       current: NDArray[np.int64], absolute_ms: float, relative: float, healthy_idx: NDArray[np.int64],
                       edge_ok: NDArray[np.bool_] | None, group: NDArray[np.int64]) -> NDArray[np.int64]:
    """candidates.favour_current_edges and the router's drop of forbidden ranks, as at 016b1cd."""
    same = (choice >= 0) & (choice == prefer)
    if same.any():
        hit = (ranked[:, :, None] == current[:, None, :]).any(axis=2) & same[:, None]
        with np.errstate(invalid="ignore"):  # infinity's margin: NaN, as in the router
            adjusted = cost - np.where(hit, np.maximum(absolute_ms, relative * cost), 0.0)
        ranked = np.take_along_axis(ranked, np.argsort(adjusted, axis=1, kind="stable"), axis=1)
    out = healthy_idx[ranked]
    if edge_ok is not None:
        ok = edge_ok[group[:, None], out]
        order = np.argsort(~ok, axis=1, kind="stable")
        out = np.where(np.take_along_axis(ok, order, axis=1), np.take_along_axis(out, order, axis=1), -1)
    out[choice < 0] = -1
    return out


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**32 - 1), st.booleans(), st.booleans())
def test_final_ranks_kernel_orders_as_numpy_did(seed: int, constrained: bool, ties: bool) -> None:
    rng = np.random.default_rng(seed)
    rows, n_healthy = int(rng.integers(1, 40)), int(rng.integers(4, 50))
    keep, width = int(rng.integers(1, min(12, n_healthy) + 1)), int(rng.integers(1, 5))
    ranked = np.stack([rng.choice(n_healthy, size=keep, replace=False) for _ in range(rows)]).astype(np.int64)
    cost = np.sort(rng.uniform(0.0, 200.0, (rows, keep)).round(0 if ties else 6), axis=1)
    cost[rng.random((rows, keep)) < 0.1] = np.inf  # forbidden edges: the margin of infinity gives NaN, sorted last
    cost = np.sort(cost, axis=1)
    for row in np.flatnonzero(rng.random(rows) < 0.2):  # rows not cheapest first: sorted too once any cell is favoured
        cost[row] = rng.permutation(cost[row])
    choice = rng.integers(-1, 3, rows).astype(np.int64)
    prefer = np.where(rng.random(rows) < 0.7, choice, rng.integers(-1, 3, rows)).astype(np.int64)
    current = np.where(rng.random((rows, width)) < 0.6, ranked[:, rng.integers(0, keep, width)], -1).astype(np.int64)
    healthy_idx = np.sort(rng.choice(4 * n_healthy, size=n_healthy, replace=False)).astype(np.int64)
    groups = rng.integers(0, 3, rows).astype(np.int64)
    edge_ok = rng.random((3, 4 * n_healthy)) < 0.7
    absolute_ms, relative = float(rng.choice([0.0, 2.0, 5.0])), float(rng.choice([0.0, 0.05, 0.1]))

    want = _numpy_final_ranks(ranked, cost, choice, prefer, current, absolute_ms, relative, healthy_idx,
                              edge_ok if constrained else None, groups)
    got = np.empty(ranked.shape, dtype=np.int64)
    final_ranks(ranked, cost, choice, prefer, current, absolute_ms, relative, healthy_idx,
                edge_ok if constrained else np.ones((1, 1), dtype=bool), groups if constrained else np.empty(0, dtype=np.int64), got)
    assert got.tolist() == want.tolist()


def test_tiles_fill_ranks_past_the_finite_keys_with_distinct_edges() -> None:
    """Where a cell has fewer edges at a finite key than ranks although it may use them all (edges infinitely slow: not
    from a LatencyModel, which refuses such figures, but the search takes arrays), the rest of its ranks hold other
    edges, each once, at infinite cost, as scoring every edge does (before: positions past the last edge)."""
    from globalaccel.cells import Cell
    from globalaccel.latency import LatencyModel
    from globalaccel.residency import Mode
    from globalaccel.routing import candidates
    from tests.worlds import make_topology

    edges = [(10.0 + i * 0.5, 20.0 + (i % 5), 100.0, 0) for i in range(30)]
    topo = make_topology([(40.0, -75.0), (50.0, 8.0)], edges, [(10.0, 20.0, 1000)], [(Mode.OPEN, (0, 1))], max_answers=6)
    cells = [Cell(f"n{i}", topo.cells[0].country, 10.0 + i * 0.01, 20.0 + i * 0.01, 1.0) for i in range(40)]
    latency = LatencyModel(topo)
    center_edge = latency.center_edge_ms(0.0)
    center_edge[:, :20] = np.inf  # 10 edges at a finite key, 24 ranks
    penalty = np.zeros(len(topo.edges))
    healthy = np.arange(len(topo.edges), dtype=np.intp)
    allowed = np.ones((2, len(cells)), dtype=bool)
    saved = candidates.DENSE_LIMIT
    try:
        candidates.DENSE_LIMIT = 0
        tiled = candidates.CandidateSearch(topo, cells).select(latency, healthy, center_edge, penalty, allowed)
        candidates.DENSE_LIMIT = 10**12
        dense = candidates.CandidateSearch(topo, cells).select(latency, healthy, center_edge, penalty, allowed)
    finally:
        candidates.DENSE_LIMIT = saved
    assert tiled[0].tolist() == dense[0].tolist()
    assert tiled[1][:, :10].tolist() == dense[1][:, :10].tolist()
    assert np.isinf(tiled[2][:, 10:]).all()
    for row in tiled[1]:
        assert sorted(row.tolist()) == sorted(set(row.tolist())) and row.max() < len(topo.edges)


def test_edges_whose_keys_are_equal_floats_rank_by_position_in_both_searches() -> None:
    """The position tie-break separates co-located edges, but two edges' keys can still be equal floats (legs that
    differ by exactly the geometry less the tie-break). Both searches then rank the lower position first (before: the
    dense search by position, the tiles by the tile's own key, so the table's order and hash hung on DENSE_LIMIT).
    The legs are found by stepping one float at a time until the keys are equal."""
    import math

    from globalaccel.cells import Cell
    from globalaccel.geo import unit_vectors
    from globalaccel.latency import LatencyModel
    from globalaccel.residency import Mode
    from globalaccel.routing import candidates
    from globalaccel.routing.candidates import TIE_BREAK_MS
    from globalaccel.routing.tile_scores import chord_angle
    from tests.worlds import make_topology

    edges = [(0.5, 0.0, 100.0, 0), (0.5, 2.0, 100.0, 0)]
    topo = make_topology([(40.0, -75.0)], edges, [(0.5, 0.5, 1000)], [(Mode.OPEN, (0,))], answers=2, max_answers=2)
    # A second cell near the second edge: their tile's centre finds the second edge the cheaper one.
    cells = [Cell("c", topo.cells[0].country, 0.5, 0.5, 1.0), Cell("d", topo.cells[0].country, 0.5, 2.5, 1.0)]
    latency = LatencyModel(topo)
    a, o = latency.physics.ms_per_radian, latency.physics.settings.overhead_ms
    cell = unit_vectors(np.array([0.5]), np.array([0.5]))[0]
    edge = unit_vectors(np.array([0.5, 0.5]), np.array([0.0, 2.0]))

    def key(j: int, leg: float) -> float:
        return float(chord_angle(cell, edge[j]) * a + o + 0.0 + j * TIE_BREAK_MS + leg)

    for i in range(2000):
        leg0 = 50.0 + i * 0.001
        leg1 = leg0 + (chord_angle(cell, edge[0]) - chord_angle(cell, edge[1])) * a - TIE_BREAK_MS
        for _ in range(50):
            if key(1, leg1) == key(0, leg0):
                break
            leg1 = math.nextafter(leg1, math.inf if key(1, leg1) < key(0, leg0) else -math.inf)
        if key(1, leg1) == key(0, leg0):
            break
    assert key(1, leg1) == key(0, leg0)
    args = (latency, np.arange(2), np.array([[leg0, leg1]]), np.zeros(2), np.ones((1, 2), dtype=bool))
    saved = candidates.DENSE_LIMIT
    try:
        candidates.DENSE_LIMIT = 0
        tiled = candidates.CandidateSearch(topo, cells).select(*args)
        candidates.DENSE_LIMIT = 10**12
        dense = candidates.CandidateSearch(topo, cells).select(*args)
    finally:
        candidates.DENSE_LIMIT = saved
    search = candidates.CandidateSearch(topo, cells)
    assert search._tiles(None).tile_of.tolist() == [0, 0]  # one tile, or the test would not test the tiles' order
    assert tiled[1][0].tolist() == dense[1][0].tolist() == [0, 1]
