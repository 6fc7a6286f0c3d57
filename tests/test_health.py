"""Health: hysteresis per path, quorum per target, hold-down, flap damping, staleness."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from globalaccel.measure.health import DOWN, UNKNOWN, UP, HealthTracker, tracker_for
from globalaccel.settings import HealthSettings

CENTERS = ("a", "b", "c", "d")
S = HealthSettings(down_after=2, up_after=3, min_down_s=20, stale_after_s=60, flap_penalty=1000, suppress=2500, reuse=800,
                   half_life_s=120)


def tracker() -> HealthTracker:
    return tracker_for(CENTERS, ["e1", "e2"], S)


def round_of(t: HealthTracker, now: float, results: dict[str, bool], target: str = "e1") -> None:
    for vantage, ok in results.items():
        t.record(vantage, target, ok, now)


ALL_OK = dict.fromkeys(CENTERS, True)
ALL_FAIL = dict.fromkeys(CENTERS, False)


def flap(t: HealthTracker, now: float, times: int) -> float:
    """Down for 3 results, 21 s pause (past min_down_s), up for 3 results; `times` times. Returns the clock."""
    for _ in range(times):
        for _ in range(3):
            round_of(t, now, ALL_FAIL)
            now += 1
        t.evaluate(now)
        now += 21
        for _ in range(3):
            round_of(t, now, ALL_OK)
            now += 1
        t.evaluate(now)
    return now


def test_first_results_decide_and_edge_goes_down_after_down_after_quorum_failures() -> None:
    t = tracker()
    round_of(t, 0, ALL_OK)
    assert t.evaluate(0).states["e1"] == UP
    round_of(t, 10, ALL_FAIL)
    assert t.evaluate(10).states["e1"] == UP  # one failure is not enough (down_after=2)
    round_of(t, 20, ALL_FAIL)
    v = t.evaluate(20)
    assert v.states["e1"] == DOWN and "e1" not in v.edges and v.changed["e1"] == (UP, DOWN)


def test_one_cut_off_vantage_drains_nothing() -> None:
    t = tracker()
    for now in range(0, 100, 10):
        round_of(t, now, {"a": False, "b": True, "c": True, "d": True})
        assert "e1" in {x for x in t.evaluate(now).edges} or now == 0


def test_minority_down_and_minority_stale_do_not_drain() -> None:
    t = tracker()
    round_of(t, 0, ALL_OK)
    t.evaluate(0)
    for now in (10, 20, 30):
        round_of(t, now, {"a": False, "b": False, "c": True})  # d silent: stale later, never "down"
    assert t.evaluate(30).states["e1"] == UP  # 2 down of 4 is not a quorum (3)


def test_up_needs_quorum_hold_time_and_up_after() -> None:
    t = tracker()
    round_of(t, 0, ALL_FAIL)
    assert t.evaluate(0).states["e1"] == DOWN
    round_of(t, 5, ALL_OK)
    round_of(t, 6, ALL_OK)
    round_of(t, 7, ALL_OK)
    assert t.evaluate(7).states["e1"] == DOWN  # up_after reached, but min_down_s (20) not
    round_of(t, 25, ALL_OK)
    assert t.evaluate(25).states["e1"] == UP


def test_flapping_target_is_suppressed_until_penalty_decays() -> None:
    t = tracker()
    now = flap(t, 0.0, 4)  # down/up cycles, each respecting hold time
    assert t.targets["e1"].changes >= 3
    for _ in range(3):
        round_of(t, now, ALL_FAIL)
        now += 1
    t.evaluate(now)
    now += 30
    for _ in range(3):
        round_of(t, now, ALL_OK)
        now += 1
    v = t.evaluate(now)
    assert v.states["e1"] == DOWN and "e1" in v.suppressed  # damped
    now += 1000  # penalty halves every 120 s: long after, it may come back
    for _ in range(3):
        round_of(t, now, ALL_OK)
        now += 1
    assert t.evaluate(now).states["e1"] == UP


def test_stale_data_is_unknown_never_healthy() -> None:
    t = tracker()
    round_of(t, 0, ALL_OK)
    assert "e1" in t.evaluate(0).edges
    v = t.evaluate(61)
    assert v.states["e1"] == UNKNOWN and "e1" not in v.edges
    assert t.evaluate(61).states["e2"] == UNKNOWN  # never probed


def test_center_quorum_is_over_the_other_centers() -> None:
    t = tracker()
    for now in (0, 10):
        round_of(t, now, {"b": False, "c": False, "d": True}, target="a")
    assert t.evaluate(10).states["a"] == DOWN  # 2 of 3


def test_state_round_trips() -> None:
    t = tracker()
    round_of(t, 0, ALL_OK)
    t.evaluate(0)
    again = tracker()
    again.load_json(t.to_json())
    assert again.evaluate(5).states == t.evaluate(5).states


@given(st.lists(st.tuples(st.sampled_from(CENTERS), st.booleans()), max_size=80), st.sampled_from(CENTERS))
def test_a_single_vantage_can_never_take_an_up_edge_down(results: list[tuple[str, bool]], rogue: str) -> None:
    """Whatever one vantage reports, while the other three keep seeing the edge up it stays up."""
    t = tracker()
    round_of(t, 0, ALL_OK)
    t.evaluate(0)
    now = 1.0
    for vantage, ok in results:
        for v in CENTERS:
            t.record(v, "e1", ok if v == rogue else True, now)
        _ = vantage
        assert t.evaluate(now).states["e1"] == UP
        now += 1


def test_a_gap_in_probe_data_does_not_skip_damping_or_hold_time() -> None:
    """Flapping target, suppressed; its probes go stale (unknown); good results then must not bring it
    up while the penalty is high, nor before min_down_s since it last went down."""
    t = tracker()
    now = flap(t, 0.0, 4)
    for _ in range(3):
        round_of(t, now, ALL_FAIL)
        now += 1
    assert t.evaluate(now).states["e1"] == DOWN and t.targets["e1"].suppressed
    now += 61  # every path stale
    assert t.evaluate(now).states["e1"] == UNKNOWN
    for _ in range(3):
        round_of(t, now, ALL_OK)
        now += 1
    v = t.evaluate(now)
    assert v.states["e1"] != UP and "e1" in v.suppressed
