"""Physics estimate and measured statistics."""

from __future__ import annotations

import pytest

from globalaccel.latency import LatencyModel, PathStats, PhysicsModel
from globalaccel.settings import LatencySettings
from globalaccel.topology import load_stack
from tests.conftest import STACKS


def test_physics_london_frankfurt() -> None:
    model = PhysicsModel(LatencySettings(route_inflation=2.0, overhead_ms=0.0))
    # ~638 km great circle; 2x inflation; 200 km/ms one way -> 2*638*2/200 = 12.8 ms RTT
    assert model.rtt_ms(51.5074, -0.1278, 50.1109, 8.6821) == pytest.approx(12.76, abs=0.1)


def test_backbone_is_cheaper_than_public_path() -> None:
    s = LatencySettings()
    public, backbone = PhysicsModel(s), PhysicsModel(s, backbone=True)
    assert backbone.rtt_ms(0, 0, 0, 90) < public.rtt_ms(0, 0, 0, 90)


def test_ewma_quantiles_and_loss() -> None:
    stats = PathStats(alpha=0.5, window=4)
    for i, rtt in enumerate([10.0, 20.0, None, 30.0, 40.0]):
        stats.record(rtt, now=float(i))
    # window keeps the last 4: 20, None, 30, 40
    assert stats.loss_rate == pytest.approx(0.25)
    assert stats.p50 == pytest.approx(30.0)
    assert stats.p95 == pytest.approx(39.0)
    # EWMA over non-lost samples: 10 -> 15 -> 22.5 -> 31.25
    assert stats.ewma == pytest.approx(31.25)


@pytest.mark.parametrize("rtt", [float("nan"), float("inf"), -1.0, 1e308, 60_000.5])
def test_rejects_impossible_rtt(rtt: float) -> None:
    """No probe waits a minute; beyond that a figure is a fault (and sums of 1e308 overflow to infinity, where costs
    no longer order edges)."""
    with pytest.raises(ValueError, match="RTT must be a number of ms from 0 to 60000"):
        PathStats(0.3, 8).record(rtt, 0.0)


@pytest.mark.parametrize("row", [["c", "e", float("inf"), 1.0], ["c", "e", 1e308, 1.0], ["c", "e", -2.0, 1.0], ["c", "e", "12", 1.0],
                                 ["c", "e", 12.0, float("nan")], ["c", "e", 12.0], "c,e,12,1"])
def test_restored_latencies_out_of_range_are_refused_naming_the_row(row: object) -> None:
    model = LatencyModel(load_stack("dev", STACKS))
    with pytest.raises(ValueError, match=r"latency row 1: expected \[vantage, target, EWMA ms"):
        model.load_json([["c", "e", 12.0, None], row])  # type: ignore[list-item]
    assert not model.paths  # nothing restored


def test_measured_overrides_physics_until_stale() -> None:
    topo = load_stack("dev", STACKS)
    model = LatencyModel(topo)
    edge = topo.edges[0].id
    center = topo.centers[0].id
    physics = model.center_edge_ms(now=0.0)[0, 0]
    model.record(center, edge, physics + 100.0, now=0.0)
    assert model.center_edge_ms(now=1.0)[0, 0] == pytest.approx(physics + 100.0)
    assert model.edge_penalty_ms(now=1.0)[0] == pytest.approx(0.0)  # median over 4 vantages: only 1 saw it
    for c in topo.centers[1:]:
        model.record(c.id, edge, model.physics_center_edge[topo.center_ids.index(c.id), 0] + 100.0, now=0.0)
    assert model.edge_penalty_ms(now=1.0)[0] == pytest.approx(100.0)
    stale = topo.latency.stale_after_s + 1
    assert model.center_edge_ms(now=stale)[0, 0] == pytest.approx(physics)
    assert model.measured(center, edge, now=stale) is None


def test_center_edge_matrix_is_each_paths_fresh_ewma_after_losses_and_a_restart() -> None:
    """center_edge_ms reads arrays kept beside the PathStats: every entry must be the path's own fresh EWMA
    (`measured`), physics where it has none, through losses, staleness and a restart's load_json."""
    topo = load_stack("dev", STACKS)
    model = LatencyModel(topo)
    stale_after = topo.latency.stale_after_s
    plan = [(0, 0, None, 0.0), (0, 0, 50.0, 1.0), (0, 0, None, 2.0), (1, 2, 80.0, 0.0), (2, 1, 30.0, 0.0),
            (2, 1, 35.0, stale_after + 5.0), (3, 3, None, 1.0)]
    for ci, ei, rtt, at in plan:
        model.record(topo.center_ids[ci], topo.edges[ei].id, rtt, at)

    def agrees(m: LatencyModel, now: float) -> None:
        matrix = m.center_edge_ms(now)
        for ci, center in enumerate(topo.center_ids):
            for ei, edge in enumerate(topo.edges[:4]):
                measured = m.measured(center, edge.id, now)
                expected = m.physics_center_edge[ci, ei] if measured is None else measured
                assert matrix[ci, ei] == expected, (center, edge.id, now)

    for now in (2.0, stale_after + 1.5, stale_after + 2.5, stale_after + 6.0, 3 * stale_after):
        agrees(model, now)
    restarted = LatencyModel(topo)
    restarted.load_json(model.to_json())
    for now in (2.0, stale_after + 2.5, stale_after + 6.0):
        agrees(restarted, now)
    assert restarted.center_edge_ms(stale_after + 6.0)[2, 1] != restarted.physics_center_edge[2, 1]  # not all physics
