"""What each cycle exports to Prometheus, and the series that exist from the first scrape.

Every labelled series a rule or dashboard uses is created at start with its zero value: `increase()`
cannot count a counter's first increment if the series did not exist before it, so the first edge
going down would be invisible to the flapping rule and the dashboards.

Signals the alerts are built on (monitoring/rules.yml):
- per vantage: the share of its paths with a fresh result (a silent or partitioned prober falls to 0)
  and, among those, the share it sees up (a prober that is cut off sees nothing up while the quorum
  does: a blind prober);
- flapping targets: targets whose damping penalty says they changed state repeatedly (one outage and
  its recovery never count);
- countries without an answer, by cause: their rule's own (strict, no allowed center exists) or an
  outage (an allowed center or edge should serve them but none is healthy);
- per country: the estimated client RTT of its answers, for the latency regression alert;
- capacity: the share of routed demand the table carries beyond edge budgets, and each limited center's load
  against its capacity (issue 11, point 8: what `plan` reports, on the live table).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping

from globalaccel.control.metrics import LoopMetrics
from globalaccel.latency import LatencyModel
from globalaccel.measure.health import DOWN, UNKNOWN, UP, HealthTracker
from globalaccel.routing import REASONS, CellState, RoutingTable
from globalaccel.routing.summary import center_demand
from globalaccel.topology import Topology


def region_of(topology: Topology) -> dict[str, str]:
    """Edge id -> continent (the RTT histograms' region label); centers are region 'center'."""
    return {e.id: topology.countries[e.country].continent if e.country in topology.countries else "??" for e in topology.edges}


class CycleExporter:
    def __init__(self, topology: Topology, metrics: LoopMetrics, backend: str) -> None:
        self.topology = topology
        self.metrics = metrics
        self.backend = backend
        self.region = region_of(topology)
        self._demand = {c.id: c.demand for c in topology.cells}
        # Countries a strict rule never serves, whatever is healthy: unserved by the rule's own choice.
        self.unserved_by_rule = frozenset(c for c in topology.countries if not topology.residency.permitted_centers(c, topology.center_ids))
        self._initialise()

    def _initialise(self) -> None:
        m, topo = self.metrics, self.topology
        for edge in topo.edges:
            m.edge_info.labels(edge.id, self.region[edge.id], edge.country, f"{edge.lat:.4f}", f"{edge.lon:.4f}").set(1)
        m.dns_errors.labels(self.backend)
        m.dns_requests.labels(self.backend)
        m.dns_apply.labels(self.backend)
        for kind in ("edge", "center"):
            m.flapping.labels(kind).set(0)
            for to in (UP, DOWN, UNKNOWN):
                m.health_changes.labels(kind, to)
        for reason in REASONS:
            m.route_changes.labels(reason)
        for vantage in topo.center_ids:
            for result in ("ok", "lost"):
                m.probes.labels(vantage, result)
        m.edges_configured.set(len(topo.edges))
        m.countries_unserved.labels("rule").set(len(self.unserved_by_rule))
        m.countries_unserved.labels("outage").set(0)
        m.capacity_overflow.set(0)
        m.provisional.set(0)
        for center in topo.centers:
            if center.capacity is not None:
                m.center_load.labels(center.id).set(0)

    def export(self, health: HealthTracker, latency: LatencyModel, table: RoutingTable, states: dict[str, str],
               health_changes: dict[str, tuple[str, str]], changed: Iterable[str], now: float,
               cells: Mapping[str, CellState] | None = None) -> None:
        """One cycle's figures. `cells`: the router state's routes, for the share still provisional (None: not known)."""
        m, topo = self.metrics, self.topology
        center_edge = latency.center_edge_ms(now)
        best = center_edge.min(axis=0)
        for i, edge in enumerate(topo.edges):
            region = self.region[edge.id]
            m.edge_up.labels(edge.id, region).set(1.0 if states.get(edge.id) == UP else 0.0)
            m.edge_rtt.labels(edge.id, region).set(float(best[i]) / 1000.0)
        for center in topo.center_ids:
            m.center_up.labels(center).set(1.0 if states.get(center) == UP else 0.0)
        for target, (_, after) in health_changes.items():
            m.health_changes.labels("center" if target in topo.center_by_id else "edge", after).inc()
        for cid in changed:
            m.route_changes.labels(table.routes[cid].reason).inc()
        self._probers(health, now)
        self._flapping(health, now)
        self._countries(table)
        self._capacity(table)
        if cells is not None:
            routed = [s.provisional for s in cells.values() if s.center is not None]
            m.provisional.set(sum(routed) / len(routed) if routed else 0.0)

    def _capacity(self, table: RoutingTable) -> None:
        routed = sum(table.edge_load.values())
        self.metrics.capacity_overflow.set(table.overflow / routed if routed > 0 else 0.0)
        load = center_demand(table, self._demand)
        for center in self.topology.centers:
            if center.capacity is not None:
                self.metrics.center_load.labels(center.id).set(load.get(center.id, 0.0) / center.capacity)

    def _probers(self, health: HealthTracker, now: float) -> None:
        settings = health.settings
        fresh_by: dict[str, int] = {}
        up_by: dict[str, int] = {}
        total_by: dict[str, int] = {}
        for vantages in health.vantages_for.values():
            for v in vantages:
                total_by[v] = total_by.get(v, 0) + 1
        for (vantage, _), path in health.paths.items():
            state = path.current(now, settings)
            if state != UNKNOWN:
                fresh_by[vantage] = fresh_by.get(vantage, 0) + 1
                up_by[vantage] = up_by.get(vantage, 0) + (state == UP)
        fresh_all = sum(fresh_by.values())
        total_all = sum(total_by.values())
        self.metrics.coverage.set(fresh_all / total_all if total_all else 0.0)
        for vantage, total in total_by.items():
            fresh = fresh_by.get(vantage, 0)
            self.metrics.vantage_fresh.labels(vantage).set(fresh / total if total else 0.0)
            # No fresh results: there is no reachability to report (NaN compares false), and a silent prober
            # is GlobalaccelProberSilent's to say, not a blind one.
            self.metrics.vantage_reachable.labels(vantage).set(up_by.get(vantage, 0) / fresh if fresh else float("nan"))

    def _flapping(self, health: HealthTracker, now: float) -> None:
        """A target flaps when its damping penalty (one flap_penalty per state change, halving every
        half_life) reaches the damping's own suppress threshold (three or more changes in a short time),
        and keeps flapping while damping holds it (until the penalty decays below `reuse`: minutes).
        Counting only the moments above the threshold would last seconds: damping stops the changes that
        feed it. One outage and its recovery are two changes and never count."""
        s = health.settings
        count = {"edge": 0, "center": 0}
        for target, ts in health.targets.items():
            penalty = ts.decayed(now, s.half_life_s)
            if penalty >= s.suppress or (ts.suppressed and penalty >= s.reuse):  # decays away: a dead edge stops counting
                count[health.kinds.get(target, "edge")] += 1
        for kind, n in count.items():
            self.metrics.flapping.labels(kind).set(n)

    def _countries(self, table: RoutingTable) -> None:
        demand = self._demand
        weighted: dict[str, tuple[float, float]] = {}  # country -> (sum demand * rtt, sum demand) over served cells
        unserved = set()
        for cid, route in table.routes.items():
            rtt = route.rtt_ms
            if rtt is None:
                unserved.add(route.country)
                continue
            total, weight = weighted.get(route.country, (0.0, 0.0))
            weighted[route.country] = (total + demand.get(cid, 1.0) * rtt, weight + demand.get(cid, 1.0))
        unserved -= set(weighted)  # a country is unserved when none of its cells is (metro cells share its rule)
        self.metrics.countries_unserved.labels("outage").set(len(unserved - self.unserved_by_rule))
        for country, (total, weight) in weighted.items():
            self.metrics.country_rtt.labels(country, self.topology.countries[country].continent).set(total / weight / 1000.0)
        for country in unserved:
            # No answer, no latency: remove the series rather than report a number nobody gets.
            if country in self.topology.countries:
                with contextlib.suppress(KeyError):  # never served since start: no series to remove
                    self.metrics.country_rtt.remove(country, self.topology.countries[country].continent)
