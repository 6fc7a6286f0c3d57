"""The control loop: probe results -> health -> router -> plan -> apply, every interval.

Only the leader writes DNS; every instance computes, logs and exports metrics, so a standby is warm.
Each cycle persists its state, and each table change is appended to the hash-chained decision log
before it is published, so the log never lacks a table that was served.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from globalaccel.answers import Answers
from globalaccel.control.decisionlog import LOG_NAME, DecisionEntry, DecisionLog
from globalaccel.control.exporter import CycleExporter
from globalaccel.control.metrics import LoopMetrics
from globalaccel.control.state import StateError, StateStore
from globalaccel.dns.backend import OwnedZone, publish
from globalaccel.latency import LatencyModel
from globalaccel.measure.health import DOWN, tracker_for
from globalaccel.measure.prober import ProbePath
from globalaccel.routing import CellState, Health, Router, RouterState, RoutingTable
from globalaccel.settings import HealthSettings
from globalaccel.topology import Topology
from globalaccel.verify import RESIDENCY_KINDS, verify_table


class Lease(Protocol):
    def acquire(self) -> bool: ...

    def release(self) -> None: ...


@dataclass
class CycleReport:
    generation: int
    table_hash: str
    changed_cells: list[str]
    healthy_edges: int
    healthy_centers: int
    fail_closed: list[str]
    violations: int
    published: bool
    leader: bool
    health_changes: dict[str, tuple[str, str]] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0


class ControlLoop:
    def __init__(
        self,
        topology: Topology,
        backend: OwnedZone,
        state_dir: Path,
        lease: Lease,
        metrics: LoopMetrics | None = None,
        health_settings: HealthSettings | None = None,
        dry_run: bool = False,
        min_fresh_share: float = 0.5,
        max_withdraw_share: float = 0.25,
        clock: Callable[[], float] = time.time,
        today: Callable[[], dt.date] = lambda: dt.datetime.now(dt.UTC).date(),  # the day rules are resolved for
    ) -> None:
        self.topology = topology
        self.backend = backend
        self.lease = lease
        self.metrics = metrics or LoopMetrics()
        self.dry_run = dry_run
        self.min_fresh_share = min_fresh_share
        self.max_withdraw_share = max_withdraw_share
        # What the backend serves: cell -> (center, edges) of the last table this instance published (saved).
        self._served: dict[str, tuple[str | None, tuple[str, ...]]] = {}
        self.clock = clock
        self.today = today
        self._rules_switched = False
        self.router = Router(topology)
        self.latency = LatencyModel(topology)
        settings = health_settings or HealthSettings(stale_after_s=topology.latency.stale_after_s)
        self.health = tracker_for(topology.center_ids, (e.id for e in topology.edges), settings)
        self.router_state = RouterState()
        self.table: RoutingTable | None = None
        self.store = StateStore(state_dir)
        self.log = DecisionLog(state_dir / LOG_NAME)
        self.exporter = CycleExporter(topology, self.metrics, backend.name)
        self.region = self.exporter.region
        self._published = False  # whether the current table reached the backend (never, in a new process)
        self._last_hash = ""  # the last table logged; restored from state so a restart logs nothing new
        self.restored = self._restore()
        self.last_report: CycleReport | None = None
        self.last_cycle_at: float | None = None  # wall clock of the last completed cycle (liveness)
        self.cycles = 0
        self.metrics.up_time.set(self.clock())

    # ---- inputs -----------------------------------------------------------------------------------
    def record(self, path: ProbePath, rtt_ms: float | None, now: float) -> None:
        """Prober sink: one probe result."""
        self.latency.record(path.vantage, path.target, rtt_ms, now)
        self.health.record(path.vantage, path.target, rtt_ms is not None, now)
        self.metrics.probes.labels(path.vantage, "ok" if rtt_ms is not None else "lost").inc()
        if rtt_ms is not None:
            self.metrics.probe_rtt.labels(path.vantage, self.region.get(path.target, "center")).observe(rtt_ms / 1000.0)

    # ---- one cycle --------------------------------------------------------------------------------
    def cycle(self, now: float | None = None, restoring: bool = False) -> CycleReport:
        """One evaluation. `restoring`: the first cycle after a restart serves the persisted routes: no valid
        route may switch in it (a restart is not an evaluation), only routes whose edge or center died move, and
        provisional ones (placed before the measurements settled: never held, routing.hysteresis)."""
        start = time.perf_counter()
        now = self.clock() if now is None else now
        self._apply_rules_in_force()
        verdict = self.health.evaluate(now)
        health = Health(verdict.edges, verdict.centers)
        before = self.router_state.cells  # per-cell routes as last computed (restored after a restart)
        held = self.router_state
        if restoring:  # every valid route inside its hold-down, nothing pending: hysteresis keeps them all
            held = dataclasses.replace(held, cells={k: v._replace(pending=0, last_switch_at=now) for k, v in held.cells.items()})
        table, state = self.router.compute(self.latency, health, now, held)
        if restoring:  # hysteresis resumes where it was before the restart
            cells = dict(state.cells)
            for cid, cell in cells.items():
                prior = before.get(cid)
                if prior is not None and (prior.center, prior.edges) == (cell.center, cell.edges):
                    cells[cid] = cell._replace(pending=prior.pending, last_switch_at=prior.last_switch_at)
                elif prior is not None and prior.provisional:  # placed afresh, which is no switch: no hold-down from now
                    cells[cid] = cell._replace(last_switch_at=prior.last_switch_at)
            state = dataclasses.replace(state, cells=cells)
        violations = verify_table(table, self.topology, health)
        residency = [v for v in violations if v.kind in RESIDENCY_KINDS]
        changed = [cid for cid, r in table.routes.items()
                   if cid not in before or (before[cid].center, before[cid].edges) != (r.center, r.edge_ids)]
        table_changed = table.content_hash != self._last_hash
        if table_changed or self._rules_switched:
            self._rules_switched = False
            self.log.append(DecisionEntry.for_table(table, changed, now, self.topology.stack, verdict.changed, len(residency),
                                                   self.topology.residency.rules_hash, str(self.topology.residency.as_of)))
        leader = self.lease.acquire()
        published, error = False, None
        fresh = self.health.fresh_share(now)
        if residency:
            error = f"refusing to publish: {len(residency)} residency violations"  # never serve a table that breaks residency
        elif leader and not self.dry_run and (table_changed or not self._published) and fresh < self.min_fresh_share:
            # Unknown is not down: a cold start, a stall or a partition leaves the loop without fresh measurements,
            # and a table computed from nothing would withdraw the world. The last published answers stay.
            error = (f"holding: {fresh:.0%} of probe paths have fresh results (publishing needs {self.min_fresh_share:.0%}); "
                     "the last published answers stay")
        elif leader and not self.dry_run and (table_changed or not self._published) and (
                blast := self._uncorroborated_withdrawal(table, verdict.states, before)) > self.max_withdraw_share:
            # Unknown is not down: a table that takes service away from more than this share of demand goes out
            # only where a quorum of vantages saw the lost center (or every lost edge) down; otherwise it is held.
            error = (f"holding: the new table withdraws {blast:.0%} of served demand without a quorum of vantages seeing "
                     f"its centers or edges down (more than {self.max_withdraw_share:.0%} needs one); the last answers stay")
        elif leader and not self.dry_run and (table_changed or not self._published):
            apply_start = time.perf_counter()
            inner = self.backend.backend
            if hasattr(inner, "guard"):  # a multi-batch backend re-checks the lease before each batch
                inner.guard = getattr(self.lease, "valid", None)
            try:
                head = (self.log.length, self.log.last_hash) if self.log.length else None
                result = publish(self.backend, Answers.from_table(table, self.topology), head)
                published = True
                self._served = {cid: (r.center, r.edge_ids) for cid, r in table.routes.items()}
                self.metrics.dns_requests.labels(self.backend.name).inc(result.stats.requests)
            except Exception as exc:  # the loop survives a failing backend and retries next cycle
                error = f"{self.backend.name}: {exc}"
                self.metrics.dns_errors.labels(self.backend.name).inc()
            self.metrics.dns_apply.labels(self.backend.name).observe(time.perf_counter() - apply_start)
        # Whether the backend now serves this table: only if this instance published it and has been the
        # leader throughout; after a spell as standby another leader may have published something else.
        self._published = published or (self._published and leader and not table_changed)
        self._last_hash = table.content_hash
        self.table, self.router_state = table, state
        self._save(now)
        report = CycleReport(table.generation, table.content_hash, changed, len(health.edges), len(health.centers), table.fail_closed(),
                             len(residency), published, leader, verdict.changed, error, time.perf_counter() - start)
        self.exporter.export(self.health, self.latency, table, verdict.states, verdict.changed, changed, now, state.cells)
        self._export(report, verdict.suppressed, now, leader, changed)
        self.last_report, self.cycles, self.last_cycle_at = report, self.cycles + 1, time.time()
        return report

    def _uncorroborated_withdrawal(self, table: RoutingTable, states: Mapping[str, str], before: Mapping[str, CellState]) -> float:
        """Share of all demand that the served table serves, the new one does not, and nothing explains: no
        quorum of vantages saw the cell's served center DOWN, nor every edge it was given, and the rules in
        force do not require it (its center is still allowed). What is served is what this instance last
        published (kept across restarts in its state); a standby that has published nothing yet takes the
        routes it last computed, which were the leader's too."""
        served = self._served or {cid: (c.center, c.edges) for cid, c in before.items()}
        demand = {c.id: c.demand for c in self.topology.cells}
        total = sum(demand.values()) or 1.0
        lost = 0.0
        for cid, route in table.routes.items():
            center, edges = served.get(cid, (None, ()))
            if route.center is not None or center is None:
                continue
            explained = (states.get(center) == DOWN or (bool(edges) and all(states.get(e) == DOWN for e in edges))
                         or not self.topology.residency.allows(route.country, center))
            if not explained:
                lost += demand.get(cid, 0.0)
        return lost / total

    # ---- persistence ------------------------------------------------------------------------------
    def _save(self, now: float) -> None:
        self.store.save({
            "stack": self.topology.stack, "saved_at": now, "router": self.router_state.to_json(), "health": self.health.to_json(),
            "latency": self.latency.to_json(), "table_hash": self.table.content_hash if self.table else None,
            "served": {cid: [center, list(edges)] for cid, (center, edges) in sorted(self._served.items())},
        })

    def _restore(self) -> bool:
        data = self.store.load()
        if not data or data.get("stack") != self.topology.stack:
            return False
        self.router_state = self.store.router_state(data)
        self._last_hash = data.get("table_hash") or ""
        self.health.load_json(data["health"])
        try:
            self.latency.load_json(data.get("latency", []))
        except ValueError as exc:
            raise StateError(f"{self.store.path}: latency state is invalid ({exc}); move the file aside to start fresh") from exc
        self._served = {str(cid): (v[0], tuple(v[1])) for cid, v in (data.get("served") or {}).items()}
        return True

    # ---- metrics ----------------------------------------------------------------------------------
    def _export(self, report: CycleReport, suppressed: frozenset[str], now: float, leader: bool, changed: list[str]) -> None:
        m = self.metrics
        m.suppressed.set(len(suppressed))
        m.generation.set(report.generation)
        if changed:
            m.table_changed.set(now)
        m.cycle_ts.set(now)
        m.cycle_seconds.observe(report.seconds)
        m.leader.set(1.0 if leader else 0.0)
        m.violations.set(report.violations)
        m.fail_closed.set(len(report.fail_closed))
        m.healthy_edges.set(report.healthy_edges)
        m.healthy_centers.set(report.healthy_centers)
        for bucket, value in self.backend.budget().items():
            m.api_budget.labels(self.backend.name, bucket).set(value)

    def _apply_rules_in_force(self) -> None:
        """A rule with an effective date applies itself on that day (UTC): the router is rebuilt on the
        rule set in force, and the next table (and its log entry) carries the change."""
        day = self.today()
        policy = self.topology.residency
        if policy.as_of == day:
            return
        updated = policy.on(day)
        changed = any(updated.rule_for(c) != policy.rule_for(c) for c in self.topology.countries)
        self.topology = dataclasses.replace(self.topology, residency=updated)
        if changed:
            self.router = Router(self.topology)
            self._rules_switched = True  # logged with the next table, even if no route moves

    def status(self) -> dict[str, Any]:
        """What /status serves: the last cycle's outcome, typed fields only (tests and operators read this,
        not the human status line)."""
        report = self.last_report
        out: dict[str, Any] = {"stack": self.topology.stack, "backend": self.backend.name, "restored": self.restored,
                               "generation": self.table.generation if self.table else 0,
                               "table_hash": self.table.content_hash if self.table else None, "cycles": self.cycles,
                               "rules_hash": self.topology.residency.rules_hash,
                               "rules_as_of": str(self.topology.residency.as_of)}
        if report is not None:
            out.update(healthy_edges=report.healthy_edges, healthy_centers=report.healthy_centers, fail_closed=report.fail_closed,
                       changed_cells=len(report.changed_cells), residency_violations=report.violations, published=report.published,
                       leader=report.leader, error=report.error, cycle_seconds=round(report.seconds, 4))
        return out
