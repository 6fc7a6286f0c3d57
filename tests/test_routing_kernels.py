"""The router's speed-ups are invisible: its compiled kernels (numba) against the rules they replaced, written here in
plain Python and numpy as they were in the router before (globalaccel 016b1cd), and its kept nearest-edge balls against
asking the tree every time. Every figure must be the same to the last bit, or a decision sitting exactly at a margin
could tip. Random worlds via hypothesis; the router's own behaviour is tested elsewhere (test_capacity_holds,
test_center_capacity, test_hysteresis, ...)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from globalaccel.routing.ball_scores import ball_best, ball_ranks
from globalaccel.routing.candidates import TIE_BREAK_MS, _top_k
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
# The ball scoring as candidates.py computed it in numpy at 016b1cd.


def _numpy_ball(angle: NDArray[np.float64], near: NDArray[np.int64], ms_per_radian: float, overhead: float,
                penalty: NDArray[np.float64], center_edge: NDArray[np.float64], blocked: NDArray[np.bool_] | None,
                choice: NDArray[np.int64], keep: int) -> tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.float64]]:
    key_base = (angle * ms_per_radian + overhead) + penalty[near] + near * TIE_BREAK_MS
    if blocked is not None:
        key_base = np.where(blocked, np.inf, key_base)
    best = np.stack([(key_base + center_edge[c][near]).min(axis=1) for c in range(center_edge.shape[0])])
    ranked = np.zeros((near.shape[0], keep), dtype=np.int64)
    ranked_cost = np.zeros((near.shape[0], keep))
    for c in np.unique(choice[choice >= 0]):
        mine = np.nonzero(choice == c)[0]
        key = key_base[mine] + center_edge[c][near[mine]]
        order = _top_k(key, keep)
        ranked[mine] = np.take_along_axis(near[mine], order, axis=1)
        ranked_cost[mine] = np.take_along_axis(key, order, axis=1)
    return best, ranked, ranked_cost


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1), st.booleans(), st.integers(1, 5))
def test_ball_kernels_score_and_rank_as_numpy_did(seed: int, constrained: bool, n_centers: int) -> None:
    rng = np.random.default_rng(seed)
    n_edges, rows = int(rng.integers(8, 60)), int(rng.integers(1, 30))
    width = int(rng.integers(2, n_edges + 1))
    keep = int(rng.integers(1, width + 1))
    near = np.stack([rng.choice(n_edges, size=width, replace=False) for _ in range(rows)]).astype(np.int64)
    angle = np.sort(rng.uniform(0.0, 0.5, (rows, width)), axis=1)
    penalty = rng.uniform(0.0, 30.0, n_edges) * (rng.random(n_edges) < 0.5)
    center_edge = rng.uniform(1.0, 300.0, (n_centers, n_edges))
    groups = rng.integers(0, 3, rows).astype(np.int64)
    edge_ok = rng.random((3, n_edges)) < 0.7
    blocked = ~edge_ok[groups[:, None], near] if constrained else None
    choice = rng.integers(-1, n_centers, rows).astype(np.int64)
    ms_per_radian, overhead = 6371.0 * 2.1 * 2 / 200.0, 2.0

    best_np, ranked_np, cost_np = _numpy_ball(angle, near, ms_per_radian, overhead, penalty, center_edge, blocked, choice, keep)
    key_base = np.empty((rows, width))
    best = np.empty((n_centers, rows))
    healthy_idx = np.arange(n_edges, dtype=np.int64)
    ball_best(angle, near, np.arange(rows, dtype=np.int64), ms_per_radian, overhead, penalty, TIE_BREAK_MS,
              np.ascontiguousarray(center_edge.T), edge_ok if constrained else np.ones((1, 1), dtype=bool),
              groups if constrained else np.empty(0, dtype=np.int64), healthy_idx, key_base, best)
    ranked = np.zeros((rows, keep), dtype=np.int64)
    cost = np.zeros((rows, keep))
    ball_ranks(key_base, near, np.arange(rows, dtype=np.int64), choice, np.ascontiguousarray(center_edge.T), ranked, cost)
    assert best.tolist() == best_np.tolist()
    assert cost.tolist() == cost_np.tolist()
    # Forbidden edges (infinite keys) come last in both, in an order neither promises: the router drops them.
    finite = np.isfinite(cost_np)
    assert ranked[finite].tolist() == ranked_np[finite].tolist()


def test_ball_kernels_read_each_row_from_its_own_line() -> None:
    """Rows may be any lines of the kept ball (the cells asked this round), not the first ones."""
    angle = np.array([[0.1, 0.2], [0.01, 0.3], [0.05, 0.06]])
    near = np.array([[0, 1], [2, 0], [1, 2]], dtype=np.int64)
    at = np.array([2, 0], dtype=np.int64)
    center_edge_t = np.array([[10.0], [20.0], [5.0]])
    key_base = np.empty((2, 2))
    best = np.empty((1, 2))
    ball_best(angle, near, at, 100.0, 1.0, np.zeros(3), TIE_BREAK_MS, center_edge_t, np.ones((1, 1), dtype=bool),
              np.empty(0, dtype=np.int64), np.arange(3, dtype=np.int64), key_base, best)
    assert key_base[0].tolist() == [0.05 * 100.0 + 1.0 + 0.0 + 1 * TIE_BREAK_MS, 0.06 * 100.0 + 1.0 + 0.0 + 2 * TIE_BREAK_MS]
    assert best[0, 1] == 0.1 * 100.0 + 1.0 + 0.0 + 0 * TIE_BREAK_MS + 10.0


@pytest.mark.parametrize("entries", [0, 150_000, 96_000 + 1_472 * 512])
def test_nearest_balls_kept_within_any_bound_give_the_same_tables(entries: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Candidate search keeps each row's nearest-edge ball once asked, within NEAR_CACHE_ENTRIES, and asks the tree
    without keeping what does not fit. Whatever the bound (nothing kept, some widths or rows kept, everything), the
    tables over cycles with moving latencies and a lost edge are the very same. (1,500 cells: 96,000 entries at 64
    edges, and about 1,470 of them at 512: the last bound keeps the first cycle's 512-edge balls and no more.)"""
    import random

    import globalaccel.routing.candidates as candidates
    from globalaccel.cells import Cell
    from globalaccel.latency import LatencyModel
    from globalaccel.routing import Router, RouterState
    from globalaccel.routing.table import Health
    from globalaccel.topology import load_stack
    from tests.conftest import STACKS

    topo = load_stack("prod", STACKS)  # 3,200 edges: the nearest-edge balls of 64 and 512
    spread = random.Random(3)
    cells = [Cell(f"g{i}", e.country, e.lat + spread.uniform(-1, 1), e.lon + spread.uniform(-1, 1), float(spread.randint(1, 100)))
             for i, e in enumerate(spread.choices(topo.edges, k=1500))]

    def run() -> list[tuple[str, object]]:
        router, latency, rng = Router(topo, cells), LatencyModel(topo), random.Random(5)
        state: RouterState | None = None
        out: list[tuple[str, object]] = []
        for cycle in range(4):
            for ci, center in enumerate(topo.center_ids):
                for ei, edge in enumerate(topo.edges):
                    latency.record(center, edge.id, float(latency.physics_center_edge[ci, ei]) + rng.uniform(0, 20), 5.0 * cycle)
            health = Health.all_up(topo)
            if cycle == 2:
                health = Health(health.edges - {topo.edges[0].id}, health.centers)
            table, state = router.compute(latency, health, 5.0 * cycle, state)
            out.append((table.content_hash, sorted(table.routes.items())))
        return out

    monkeypatch.setattr(candidates, "NEAR_CACHE_ENTRIES", 10**9)
    reference = run()
    monkeypatch.setattr(candidates, "NEAR_CACHE_ENTRIES", entries)
    assert run() == reference


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
