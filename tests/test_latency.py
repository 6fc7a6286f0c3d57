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


def test_rejects_impossible_rtt() -> None:
    with pytest.raises(ValueError, match="finite non-negative"):
        PathStats(0.3, 8).record(float("nan"), 0.0)


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
