"""Health with hysteresis and quorum, from probe results.

Per path (vantage -> target): `down_after` consecutive losses make it down, `up_after` consecutive
successes make it up; in between it keeps its state. A path with no result for `stale_after_s` is
unknown: never counted as up, never as down.

Per target: a quorum is a majority of the vantages configured to probe it (all centers for an edge;
the other centers for a center), not of those that answered:
- down when a quorum of paths is down (at once: safety first);
- up when a quorum of paths is up, the target has been down for at least `min_down_s`, and its flap
  penalty is below `reuse` (route-flap damping: every state change adds `flap_penalty`, which halves
  every `half_life_s`; above `suppress` the target stays down until the penalty decays below `reuse`);
- otherwise it keeps its state, so one cut-off prober (all its paths down) drains nothing;
- when every path to it is unknown it is unknown, and unknown is not healthy.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from globalaccel.settings import HealthSettings

UP, DOWN, UNKNOWN = "up", "down", "unknown"


@dataclass
class PathState:
    ok_run: int = 0
    fail_run: int = 0
    state: str = UNKNOWN
    last_result_at: float | None = None

    def record(self, ok: bool, now: float, settings: HealthSettings) -> None:
        first = self.last_result_at is None
        self.last_result_at = now
        if ok:
            self.ok_run, self.fail_run = self.ok_run + 1, 0
            if first or self.ok_run >= settings.up_after:
                self.state = UP  # with no history, the first result is the best evidence there is
        else:
            self.fail_run, self.ok_run = self.fail_run + 1, 0
            if first or self.fail_run >= settings.down_after:
                self.state = DOWN

    def current(self, now: float, settings: HealthSettings) -> str:
        if self.last_result_at is None or now - self.last_result_at > settings.stale_after_s:
            return UNKNOWN
        return self.state


@dataclass
class TargetState:
    state: str = UNKNOWN
    since: float = 0.0
    penalty: float = 0.0
    penalty_at: float = 0.0
    changes: int = 0
    suppressed: bool = False  # penalty crossed `suppress`; stays down until it decays below `reuse`
    last_down_at: float | None = None  # when it last went down: the hold time runs from here, even across a gap

    def decayed(self, now: float, half_life: float) -> float:
        return self.penalty * math.pow(0.5, max(0.0, now - self.penalty_at) / half_life)


@dataclass
class Verdict:
    edges: frozenset[str]
    centers: frozenset[str]
    states: dict[str, str]  # target -> up | down | unknown
    changed: dict[str, tuple[str, str]]  # target -> (before, after) in this evaluation
    suppressed: frozenset[str]


@dataclass
class HealthTracker:
    vantages_for: Mapping[str, tuple[str, ...]]  # target -> the vantages configured to probe it
    kinds: Mapping[str, str]  # target -> "edge" | "center"
    settings: HealthSettings = field(default_factory=HealthSettings)
    paths: dict[tuple[str, str], PathState] = field(default_factory=dict)
    targets: dict[str, TargetState] = field(default_factory=dict)

    def record(self, vantage: str, target: str, ok: bool, now: float) -> None:
        self.paths.setdefault((vantage, target), PathState()).record(ok, now, self.settings)

    def fresh_share(self, now: float) -> float:
        """The share of all configured (vantage, target) paths with a result younger than stale_after_s."""
        total = sum(len(v) for v in self.vantages_for.values())
        fresh = sum(1 for p in self.paths.values() if p.current(now, self.settings) != UNKNOWN)
        return fresh / total if total else 0.0

    def evaluate(self, now: float) -> Verdict:
        s = self.settings
        changed: dict[str, tuple[str, str]] = {}
        suppressed = set()
        for target, vantages in self.vantages_for.items():
            votes = [self.paths[(v, target)].current(now, s) if (v, target) in self.paths else UNKNOWN for v in vantages]
            quorum = len(vantages) // 2 + 1
            ts = self.targets.setdefault(target, TargetState(since=now, penalty_at=now))
            before = ts.state
            after = before
            if votes.count(DOWN) >= quorum:
                after = DOWN
            elif votes.count(UP) >= quorum:
                if ts.suppressed and ts.decayed(now, s.half_life_s) < s.reuse:
                    ts.suppressed = False
                # Recovering means coming from down, or from unknown after having been down: a gap in
                # probe data must not skip the hold time or the damping.
                recovering = before != UP and ts.last_down_at is not None
                held = recovering and ts.last_down_at is not None and now - ts.last_down_at < s.min_down_s
                if ts.suppressed and recovering:
                    suppressed.add(target)
                elif not held:
                    after = UP
            elif all(v == UNKNOWN for v in votes):
                after = UNKNOWN
            if after != before:
                if before != UNKNOWN and after != UNKNOWN:
                    ts.penalty = ts.decayed(now, s.half_life_s) + s.flap_penalty
                    ts.penalty_at = now
                    ts.changes += 1
                    if ts.penalty >= s.suppress:
                        ts.suppressed = True
                ts.state, ts.since = after, now
                if after == DOWN:
                    ts.last_down_at = now
                changed[target] = (before, after)
        states = {t: ts.state for t, ts in self.targets.items()}
        up = {t for t, st in states.items() if st == UP}
        return Verdict(
            edges=frozenset(t for t in up if self.kinds.get(t) == "edge"),
            centers=frozenset(t for t in up if self.kinds.get(t) == "center"),
            states=states,
            changed=changed,
            suppressed=frozenset(suppressed),
        )

    # Persistence: a restarted loop resumes with the same view, so it neither flaps routes nor starts
    # with everything unknown.
    def to_json(self) -> dict[str, Any]:
        return {
            "paths": [[v, t, p.ok_run, p.fail_run, p.state, p.last_result_at] for (v, t), p in sorted(self.paths.items())],
            "targets": {t: [s.state, s.since, s.penalty, s.penalty_at, s.changes, s.suppressed, s.last_down_at]
                        for t, s in sorted(self.targets.items())},
        }

    def load_json(self, data: Mapping[str, Any]) -> None:
        self.paths = {(v, t): PathState(ok, fail, state, last) for v, t, ok, fail, state, last in data.get("paths", [])}
        self.targets = {t: TargetState(*values) for t, values in data.get("targets", {}).items()}


def tracker_for(centers: Iterable[str], edges: Iterable[str], settings: HealthSettings | None = None) -> HealthTracker:
    centers = tuple(centers)
    vantages: dict[str, tuple[str, ...]] = {e: centers for e in edges}
    kinds = dict.fromkeys(vantages, "edge")
    for c in centers:
        vantages[c] = tuple(x for x in centers if x != c)
        kinds[c] = "center"
    return HealthTracker(vantages, kinds, settings or HealthSettings())
