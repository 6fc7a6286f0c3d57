"""Prometheus metrics of the probe loop, in a private registry (one per loop, as client_python advises).

Series budget (see monitoring/README.md): per-edge gauges are the only per-edge series (3 per edge:
9,600 for prod); RTT histograms are aggregated by vantage center x edge region (continent), so prod
stays near 10,000 series against a budget of 50,000.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

RTT_BUCKETS = (0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.12, 0.16, 0.24, 0.32, 0.5, 1.0, 2.0)
SERIES_BUDGET = 50_000


class LoopMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.probe_rtt = Histogram("globalaccel_probe_rtt_seconds", "Probe round-trip time by vantage center and target region",
                                   ["vantage", "region"], buckets=RTT_BUCKETS, registry=r)
        self.probes = Counter("globalaccel_probes_total", "Probes sent, by vantage center and result", ["vantage", "result"], registry=r)
        self.edge_rtt = Gauge("globalaccel_edge_rtt_seconds", "Current RTT to an edge (EWMA, best vantage)",
                              ["edge", "region"], registry=r)
        self.edge_up = Gauge("globalaccel_edge_up", "1 when the edge is healthy (quorum of vantages), else 0",
                             ["edge", "region"], registry=r)
        self.center_up = Gauge("globalaccel_center_up", "1 when the center is healthy (quorum of the other centers)",
                               ["center"], registry=r)
        self.health_changes = Counter("globalaccel_health_changes_total", "Health state changes of edges and centers",
                                      ["kind", "to"], registry=r)
        self.suppressed = Gauge("globalaccel_flap_suppressed_targets", "Targets held down by flap damping", registry=r)
        self.coverage = Gauge("globalaccel_probe_coverage_ratio", "Share of (vantage, target) paths with fresh results", registry=r)
        self.route_changes = Counter("globalaccel_route_changes_total", "Cells whose route changed", ["reason"], registry=r)
        self.generation = Gauge("globalaccel_table_generation", "Routing table generation", registry=r)
        self.table_changed = Gauge("globalaccel_table_last_change_timestamp_seconds", "When the table content last changed", registry=r)
        self.cycle_ts = Gauge("globalaccel_loop_last_cycle_timestamp_seconds", "When the loop last completed a cycle", registry=r)
        self.cycle_seconds = Histogram("globalaccel_loop_cycle_seconds", "Time to evaluate, route and apply one cycle", registry=r,
                                       buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.leader = Gauge("globalaccel_leader", "1 when this loop holds the lease and writes DNS", registry=r)
        self.violations = Gauge("globalaccel_residency_violations", "Answers in the current table that break residency (must be 0)",
                                registry=r)
        self.fail_closed = Gauge("globalaccel_fail_closed_countries", "Countries answered with nothing (strict, no healthy allowed center)",
                                 registry=r)
        self.healthy_edges = Gauge("globalaccel_healthy_edges", "Edges healthy now", registry=r)
        self.healthy_centers = Gauge("globalaccel_healthy_centers", "Centers healthy now", registry=r)
        self.dns_apply = Histogram("globalaccel_dns_apply_seconds", "Time to push a table to the DNS backend", ["backend"], registry=r,
                                   buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60))
        self.dns_errors = Counter("globalaccel_dns_apply_errors_total", "Failed DNS pushes", ["backend"], registry=r)
        self.dns_requests = Counter("globalaccel_dns_api_requests_total", "DNS API change requests made", ["backend"], registry=r)
        self.api_budget = Gauge("globalaccel_dns_api_budget_remaining", "Tokens left in the DNS API budget buckets", ["backend", "bucket"],
                                registry=r)
        self.edge_info = Gauge("globalaccel_edge_info", "1 per edge, carrying where it is (for maps)",
                               ["edge", "region", "country", "lat", "lon"], registry=r)
        self.up_time = Gauge("globalaccel_loop_start_timestamp_seconds", "When this loop started", registry=r)
        self.vantage_fresh = Gauge("globalaccel_vantage_fresh_ratio", "Share of a vantage's probe paths with a fresh result",
                                   ["vantage"], registry=r)
        self.vantage_reachable = Gauge("globalaccel_vantage_reachable_ratio",
                                       "Among a vantage's fresh paths, the share it sees up (a cut-off prober sees none)",
                                       ["vantage"], registry=r)
        self.flapping = Gauge("globalaccel_flapping_targets",
                              "Targets that changed state repeatedly (damping penalty at its suppress threshold)", ["kind"], registry=r)
        self.countries_unserved = Gauge("globalaccel_countries_unserved",
                                        "Countries given no answer: by their rule's own choice (rule) or because nothing allowed is "
                                        "healthy (outage)", ["cause"], registry=r)
        self.country_rtt = Gauge("globalaccel_country_rtt_seconds", "Estimated client RTT of a country's answers (demand-weighted)",
                                 ["country", "region"], registry=r)
        self.edges_configured = Gauge("globalaccel_edges_configured", "Edges in the stack's catalog", registry=r)
        self.capacity_overflow = Gauge("globalaccel_capacity_overflow_ratio",
                                       "Share of the routed demand carried beyond edge budgets (capacity share x headroom)",
                                       registry=r)
        self.provisional = Gauge("globalaccel_routes_provisional_ratio",
                                 "Share of routed cells whose route is provisional: placed before the measurements settled "
                                 "(a cold start's first cycles), placed afresh each cycle, not held", registry=r)
        self.center_load = Gauge("globalaccel_center_load_ratio", "Demand routed to a center over its capacity (centers with one)",
                                 ["center"], registry=r)

    def series_count(self) -> int:
        return sum(len(m.samples) for m in self.registry.collect())
