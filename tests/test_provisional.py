"""Provisional routes: what the first, noisy cycles place is not held, the plan places it afresh until each path has
`steadySamples` samples; a restart's restored routes stay held although its windows start empty. Real Router and
LatencyModel on prod and on small in-memory worlds."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from globalaccel.latency import LatencyModel
from globalaccel.residency import Mode
from globalaccel.routing import Router, RouterState
from globalaccel.routing.hysteresis import Case, classify, decide
from globalaccel.routing.table import CellState, Health
from globalaccel.topology import Topology, load_stack
from tests.conftest import STACKS
from tests.worlds import make_topology

PROD = load_stack("prod", STACKS)


def measure_every_path(topo: Topology, latency: LatencyModel, rng: random.Random, now: float, jitter_ms: float = 20.0) -> None:
    """One cycle of probes: every center -> edge path, physics plus up to `jitter_ms` of uniform noise."""
    for ci, center in enumerate(topo.center_ids):
        for ei, edge in enumerate(topo.edges):
            latency.record(center, edge.id, float(latency.physics_center_edge[ci, ei]) + rng.uniform(0.0, jitter_ms), now)


def test_settled_once_at_most_a_tenth_of_the_paths_are_young() -> None:
    """Young: a fresh moving average over a window holding fewer than `steadySamples` results. Losses are results (a
    lossy path settles too); a restart's restored averages are fresh while its windows start empty: young again."""
    topo = make_topology([(0.0, 0.0)], [(10.0, float(k), 1.0, 0) for k in range(20)], [(10.0, 1.0, 10)], [(Mode.OPEN, ())])
    samples = topo.routing.hysteresis.steady_samples
    latency = LatencyModel(topo)
    assert latency.settled(0.0, samples), "physics only: nothing jitters"
    latency.record("c0", "e0", 20.0, 0.0)
    latency.record("c0", "e1", 20.0, 0.0)
    assert latency.settled(0.0, samples), "2 young paths of 20"
    latency.record("c0", "e2", 20.0, 0.0)
    assert not latency.settled(0.0, samples), "3 young paths of 20"
    for k in range(1, samples):
        latency.record("c0", "e2", 20.0 if k % 2 else None, float(k))  # every other probe lost
    assert latency.settled(float(samples), samples), "e2's window holds its results, half of them losses"
    restarted = LatencyModel(topo)
    restarted.load_json(latency.to_json())
    assert not restarted.settled(float(samples), samples), "restored averages are fresh, the windows empty"
    stale = topo.latency.stale_after_s
    assert restarted.settled(samples + stale + 1.0, samples), "stale paths read physics"


def test_the_first_noisy_tables_are_not_held() -> None:
    """Prod, every path measured each cycle with up to 20 ms of jitter. The first table (one sample per path) puts about
    a quarter of the demand beyond edge budgets: the noise on an edge is the same for every cell near it, so their
    ranked edges crowd onto the same few. Held, that stayed for good. Provisional, it is placed afresh each cycle; once
    the paths hold their steady samples, the table settles far lower, and its routes are held from then on."""
    rng = random.Random(11)
    router, latency = Router(PROD), LatencyModel(PROD)
    settle = PROD.routing.hysteresis.steady_samples
    state: RouterState | None = None
    shares = []
    for cycle in range(settle + 3):
        now = 5.0 * cycle
        measure_every_path(PROD, latency, rng, now)
        table, state = router.compute(latency, now=now, state=state)
        shares.append(table.overflow / sum(table.edge_load.values()))
        routed = [s for s in state.cells.values() if s.center is not None]
        if cycle < settle - 1:
            assert all(s.provisional for s in routed), cycle
        elif cycle >= settle:
            assert not any(s.provisional for s in routed), cycle
    assert shares[0] > 0.15, shares
    assert shares[-1] < 0.04, shares


def test_a_restart_keeps_its_restored_routes_although_its_windows_start_empty() -> None:
    """Settled routes saved as JSON and restored into a loop whose windows are empty (one noisy sample per path: young,
    not settled): they stay where they were (held, not provisional), for several cycles in a row."""
    rng = random.Random(5)
    router, latency = Router(PROD), LatencyModel(PROD)
    state: RouterState | None = None
    for cycle in range(PROD.routing.hysteresis.steady_samples + 2):
        measure_every_path(PROD, latency, rng, 5.0 * cycle, jitter_ms=5.0)
        _, state = router.compute(latency, now=5.0 * cycle, state=state)
    assert state is not None
    restored = RouterState.from_json(state.to_json())
    assert restored.cells == state.cells
    fresh_latency, restarted = LatencyModel(PROD), Router(PROD)
    now = 10_000.0  # far beyond every hold-down
    current = restored
    for k in range(3):
        measure_every_path(PROD, fresh_latency, rng, now + 5.0 * k, jitter_ms=5.0)
        assert not fresh_latency.settled(now + 5.0 * k, PROD.routing.hysteresis.steady_samples)
        _, current = restarted.compute(fresh_latency, now=now + 5.0 * k, state=current)
        moved = [cid for cid, s in current.cells.items() if (s.center, s.edges) != (state.cells[cid].center, state.cells[cid].edges)]
        assert moved == [], (k, moved[:10])


def test_a_provisional_flag_round_trips_and_old_states_read_as_settled() -> None:
    state = RouterState(3, "h", {"AA": CellState("c0", ("e0",), (1.0,), 0, None, True), "AB": CellState("c0", ("e1",), (1.0,))})
    assert RouterState.from_json(state.to_json()).cells == state.cells
    old = state.to_json()
    for cell in old["cells"].values():  # type: ignore[attr-defined]
        del cell["provisional"]
    assert not any(c.provisional for c in RouterState.from_json(old).cells.values())
    bad = state.to_json()
    bad["cells"]["AA"]["provisional"] = "false"  # type: ignore[index]
    with pytest.raises(ValueError, match="cell AA: provisional must be true or false"):
        RouterState.from_json(bad)


def test_the_one_cell_rule_places_a_provisional_route_afresh_without_a_switch() -> None:
    """hysteresis.decide: a provisional current route is replaced by the fresh one whatever the costs say, and that is
    not a switch (the hold-down runs from the last real one)."""
    topo = make_topology([(0.0, 0.0)], [(10.0, 0.0, 1.0, 0), (10.0, 5.0, 1.0, 0)], [(10.0, 1.0, 10)], [(Mode.OPEN, ())])
    elig = topo.residency.eligibility("AA", frozenset(topo.center_ids), topo.center_ids)
    health = Health.all_up(topo)
    prev = CellState("c0", ("e1",), (1.0,), 2, 40.0, True)
    fresh = CellState("c0", ("e0",), (1.0,))
    assert classify(prev, fresh, elig, health) is Case.PROVISIONAL
    decided, _ = decide(prev, fresh, 100.0, lambda s: 1.0, elig, health, now=50.0, hyst=topo.routing.hysteresis)
    assert (decided.edges, decided.pending, decided.last_switch_at, decided.provisional) == (("e0",), 0, 40.0, False)
    held = prev._replace(provisional=False)
    assert classify(held, fresh, elig, health) is Case.JUDGE


def test_a_restart_in_the_provisional_phase_keeps_its_routes_provisional() -> None:
    """A restart a cycle into a cold start: the restored state's routes are provisional, the restored averages fresh, the
    windows empty. Still not settled: the routes stay provisional, and the plan places them afresh again until the
    windows have filled (helper-36: settled() read the empty windows as physics, and the first noisy placements were
    locked in, 7.8 % of demand beyond budgets on the real loop against 2.3 % without the restart)."""
    rng = random.Random(11)
    latency = LatencyModel(PROD)
    measure_every_path(PROD, latency, rng, 1000.0)
    _, state = Router(PROD).compute(latency, now=1000.0)
    restored_latency = LatencyModel(PROD)
    restored_latency.load_json(latency.to_json())
    _, after = Router(PROD).compute(restored_latency, now=1004.0, state=RouterState.from_json(state.to_json()))
    routed = [s for s in after.cells.values() if s.center is not None]
    assert routed and all(s.provisional for s in routed)


def test_a_restart_in_the_provisional_phase_starts_no_hold_down(tmp_path: Path) -> None:
    """The real ControlLoop, dev, its state saved one noisy cycle into a cold start, then restored by a new loop whose first
    cycle is the restoring one (every held route stamped inside its hold-down for that cycle). Provisional routes are
    placed afresh in it, which is no switch: each keeps the hold-down it had (none), so relief and hysteresis may act as
    soon as the figures settle (helper-37: 1,059 cells beyond budgets were held 300 s after such a restart)."""
    from globalaccel.app.up import emulated_paths
    from globalaccel.control.loop import ControlLoop
    from globalaccel.control.state import FileLease
    from globalaccel.dns.backend import OwnedZone
    from globalaccel.dns.embedded import DnsResponder
    from globalaccel.dns.embedded_backend import EmbeddedBackend, empty_snapshot

    dev = load_stack("dev", STACKS)
    state_dir = tmp_path / "state"
    rng = random.Random(3)

    def loop() -> ControlLoop:
        zone = OwnedZone(EmbeddedBackend(dev, DnsResponder(empty_snapshot(dev, "127.0.0.1"))))
        return ControlLoop(dev, zone, state_dir, FileLease(state_dir))

    first = loop()
    for t in (0.1, 0.2, 0.3):  # three results a path: everything comes up, nothing settled
        for path in emulated_paths(dev, 1):
            first.record(path, 10.0 + rng.uniform(0.0, 20.0), t)
    first.cycle(now=1.0)
    before = dict(first.router_state.cells)
    assert any(s.provisional for s in before.values())
    first.lease.release()
    second = loop()
    assert second.restored
    second.cycle(now=2.0, restoring=True)
    for cid, prior in before.items():
        if prior.provisional:
            assert second.router_state.cells[cid].last_switch_at == prior.last_switch_at, cid
