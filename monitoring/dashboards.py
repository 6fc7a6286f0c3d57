"""Grafana dashboards for globalaccel, generated with grafana-foundation-sdk. The JSON is committed in
monitoring/dashboards/; a test regenerates it and requires the same bytes.

    .venv/bin/python monitoring/dashboards.py          # rewrite monitoring/dashboards/*.json

Every panel's query is run against a real Prometheus scraping a real `globalaccel up` in the tests.
Variables: `datasource`, `stack` (the scrape label Prometheus adds) and `center` (vantage center).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import geomap, heatmap, stat, table, timeseries
from grafana_foundation_sdk.builders import prometheus as prom
from grafana_foundation_sdk.builders.common import FrameGeometrySource, MapLayerOptions
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import FrameGeometrySourceMode
from grafana_foundation_sdk.models.dashboard import DataSourceRef, VariableRefresh
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

OUT = Path(__file__).resolve().parent / "dashboards"
DS = DataSourceRef(type_val="prometheus", uid="${datasource}")
S = 'stack=~"$stack"'
SC = 'stack=~"$stack", vantage=~"$center"'


def q(expr: str, legend: str = "", instant: bool = False, fmt: PromQueryFormat | None = None) -> prom.Dataquery:
    query = prom.Dataquery().expr(expr).datasource(DS)
    if legend:
        query = query.legend_format(legend)
    if instant:
        query = query.instant()
    if fmt is not None:
        query = query.format(fmt)
    return query


def base(uid: str, title: str, description: str) -> db.Dashboard:
    return (
        db.Dashboard(title).uid(uid).description(description).tags(["globalaccel", "generated"]).refresh("30s").time("now-1h", "now")
        .timezone("utc")
        .with_variable(db.DatasourceVariable("datasource").label("Data source").type("prometheus"))
        .with_variable(db.QueryVariable("stack").label("Stack").datasource(DS)
                       .query("label_values(globalaccel_table_generation, stack)").refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
                       .include_all(True).multi(True).all_value(".*"))
        .with_variable(db.QueryVariable("center").label("Center").datasource(DS)
                       .query("label_values(globalaccel_probes_total, vantage)").refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
                       .include_all(True).multi(True).all_value(".*"))
    )


def overview() -> db.Dashboard:
    return (
        base("globalaccel-overview", "globalaccel / Overview", "Healthy edges and centers, table age, route changes, residency.")
        .with_row(db.Row("Now"))
        .with_panel(stat.Panel().title("Healthy edges").span(4).height(4)
                    .with_target(q(f"sum(globalaccel_healthy_edges{{{S}}})", instant=True)))
        .with_panel(stat.Panel().title("Healthy centers").span(4).height(4)
                    .with_target(q(f"sum(globalaccel_healthy_centers{{{S}}})", instant=True)))
        .with_panel(stat.Panel().title("Residency violations (must be 0)").span(4).height(4)
                    .with_target(q(f"sum(globalaccel_residency_violations{{{S}}})", instant=True)))
        .with_panel(stat.Panel().title("Table age").unit("s").span(4).height(4)
                    .with_target(q(f"time() - max(globalaccel_table_last_change_timestamp_seconds{{{S}}})", instant=True)))
        .with_panel(stat.Panel().title("Countries losing service (outage)").span(4).height(4)
                    .with_target(q(f"max(globalaccel_countries_unserved{{{S}, cause=\"outage\"}})", instant=True)))
        .with_panel(stat.Panel().title("Leaders").span(4).height(4).with_target(q(f"sum(globalaccel_leader{{{S}}})", instant=True)))
        .with_row(db.Row("Over time"))
        .with_panel(timeseries.Panel().title("Route changes by reason").unit("cps").span(12)
                    .with_target(q(f"sum by (reason) (rate(globalaccel_route_changes_total{{{S}}}[$__rate_interval]))", "{{reason}}")))
        .with_panel(timeseries.Panel().title("Table generation").span(12)
                    .with_target(q(f"max by (stack) (globalaccel_table_generation{{{S}}})", "{{stack}}")))
        .with_panel(timeseries.Panel().title("Demand beyond edge budgets").unit("percentunit").span(12)
                    .with_target(q(f"max by (stack) (globalaccel_capacity_overflow_ratio{{{S}}})", "{{stack}}")))
        .with_panel(timeseries.Panel().title("Probe coverage").unit("percentunit").span(12)
                    .with_target(q(f"min by (stack) (globalaccel_probe_coverage_ratio{{{S}}})", "{{stack}}")))
        .with_panel(timeseries.Panel().title("Loop cycle time p95").unit("s").span(12)
                    .with_target(q("histogram_quantile(0.95, sum by (le) "
                                   f"(rate(globalaccel_loop_cycle_seconds_bucket{{{S}}}[$__rate_interval])))", "p95")))
    )


def center_latency() -> db.Dashboard:
    return (
        base("globalaccel-center-latency", "globalaccel / Center latency", "RTT from each center to edges by region (recording rules).")
        .with_panel(timeseries.Panel().title("p50 RTT by vantage and region").unit("s").span(12)
                    .with_target(q(f"globalaccel:probe_rtt_seconds:p50{{{SC}}}", "{{vantage}} -> {{region}}")))
        .with_panel(timeseries.Panel().title("p95 RTT by vantage and region").unit("s").span(12)
                    .with_target(q(f"globalaccel:probe_rtt_seconds:p95{{{SC}}}", "{{vantage}} -> {{region}}")))
        .with_panel(heatmap.Panel().title("RTT distribution").span(24).calculate(False)
                    .with_target(q(f"sum by (le) (rate(globalaccel_probe_rtt_seconds_bucket{{{SC}}}[$__rate_interval]))", "{{le}}",
                                   fmt=PromQueryFormat.HEATMAP)))
        .with_panel(timeseries.Panel().title("Probe loss rate by vantage").unit("percentunit").span(24)
                    .with_target(q(f"globalaccel:probe_loss:ratio_rate1m{{{SC}}}", "{{vantage}}")))
        .with_row(db.Row("Probers and regressions"))
        .with_panel(timeseries.Panel().title("Targets each prober sees up (blind prober: one line drops alone)").unit("percentunit")
                    .span(12).with_target(q(f"globalaccel_vantage_reachable_ratio{{{SC}}}", "{{vantage}}")))
        .with_panel(timeseries.Panel().title("Fresh results per prober (silent prober: its line drops)").unit("percentunit")
                    .span(12).with_target(q(f"globalaccel_vantage_fresh_ratio{{{SC}}}", "{{vantage}}")))
        .with_panel(timeseries.Panel().title("Region median RTT against its baseline").unit("s").span(12)
                    .with_target(q(f"globalaccel:region_rtt_seconds:p50_5m{{{S}}}", "{{region}} now"))
                    .with_target(q(f"globalaccel:region_rtt_seconds:baseline{{{S}}}", "{{region}} baseline")))
        .with_panel(table.Panel().title("Countries furthest above their RTT baseline").unit("percentunit").span(12)
                    .with_target(q(f"topk(15, globalaccel:country_rtt_seconds{{{S}}} "
                                   f"/ globalaccel:country_rtt_seconds:baseline{{{S}}} - 1)", instant=True, fmt=PromQueryFormat.TABLE)))
    )


def edge_health() -> db.Dashboard:
    return (
        base("globalaccel-edge-health", "globalaccel / Edge health", "Edges down, health changes, flap damping, slowest edges.")
        .with_panel(stat.Panel().title("Edges down").span(6).height(5)
                    .with_target(q(f"count(globalaccel_edge_up{{{S}}} == 0) or vector(0)", instant=True)))
        .with_panel(stat.Panel().title("Flapping targets").span(6).height(5)
                    .with_target(q(f"sum(globalaccel_flapping_targets{{{S}}})", instant=True)))
        .with_panel(timeseries.Panel().title("Health changes").unit("cps").span(12).height(5)
                    .with_target(q(f"sum by (kind, to) (rate(globalaccel_health_changes_total{{{S}}}[$__rate_interval]))",
                                   "{{kind}} -> {{to}}")))
        .with_panel(table.Panel().title("Slowest edges (RTT from the best vantage)").unit("s").span(12)
                    .with_target(q(f"topk(20, globalaccel_edge_rtt_seconds{{{S}}})", instant=True, fmt=PromQueryFormat.TABLE)))
        .with_panel(table.Panel().title("Edges down").span(12)
                    .with_target(q(f"globalaccel_edge_up{{{S}}} == 0 or on() vector(0)", instant=True, fmt=PromQueryFormat.TABLE)))
        .with_panel(timeseries.Panel().title("Centers up").span(24)
                    .with_target(q(f"globalaccel_center_up{{{S}}}", "{{center}}")))
    )


def edge_map() -> db.Dashboard:
    layer = (MapLayerOptions().type("markers").name("Edges by RTT")
             .location(FrameGeometrySource().mode(FrameGeometrySourceMode.COORDS).latitude("lat").longitude("lon"))
             .config({"size": {"fixed": 4}, "color": {"field": "Value", "fixed": "green"}}).tooltip(True))
    return (
        base("globalaccel-edge-map", "globalaccel / Edge map", "Every edge where it is, coloured by its current RTT.")
        .with_panel(geomap.Panel().title("Edges coloured by RTT").span(24).height(16).unit("s")
                    .basemap(MapLayerOptions().type("default").name("Basemap")).layers([layer])
                    .with_target(q(f"globalaccel_edge_rtt_seconds{{{S}}} * on(edge) group_left(lat, lon, country) "
                                   f"globalaccel_edge_info{{{S}}}", instant=True, fmt=PromQueryFormat.TABLE)))
    )


def dns_sync() -> db.Dashboard:
    return (
        base("globalaccel-dns-sync", "globalaccel / DNS sync", "Publishing tables to the DNS backend: duration, errors, API budget.")
        .with_panel(timeseries.Panel().title("Apply duration p95").unit("s").span(12)
                    .with_target(q(f"globalaccel:dns_apply_seconds:p95{{{S}}}", "{{backend}}")))
        .with_panel(timeseries.Panel().title("Apply errors").unit("cps").span(12)
                    .with_target(q(f"sum by (backend) (rate(globalaccel_dns_apply_errors_total{{{S}}}[$__rate_interval]))", "{{backend}}")))
        .with_panel(timeseries.Panel().title("API change requests").unit("cps").span(12)
                    .with_target(q(f"sum by (backend) (rate(globalaccel_dns_api_requests_total{{{S}}}[$__rate_interval]))", "{{backend}}")))
        .with_panel(timeseries.Panel().title("API budget left").span(12)
                    .with_target(q(f"min by (backend, bucket) (globalaccel_dns_api_budget_remaining{{{S}}})", "{{backend}} {{bucket}}")))
    )


DASHBOARDS: dict[str, Callable[[], db.Dashboard]] = {
    "overview": overview, "center-latency": center_latency, "edge-health": edge_health, "edge-map": edge_map, "dns-sync": dns_sync,
}


def render(name: str) -> str:
    built = DASHBOARDS[name]().build()
    return json.dumps(json.loads(JSONEncoder(sort_keys=True).encode(built)), indent=2, sort_keys=True) + "\n"


def main() -> int:
    OUT.mkdir(exist_ok=True)
    for name in DASHBOARDS:
        (OUT / f"{name}.json").write_text(render(name))
    print(f"wrote {len(DASHBOARDS)} dashboards to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
