"""The loop exports what `plan` reports about capacity, for the live table: the share of routed demand beyond
edge budgets and each limited center's load against its capacity. Real exporter, router and prod stack;
values read back from the private registry the way Prometheus would scrape them."""

from __future__ import annotations

from prometheus_client import generate_latest

from globalaccel.control.exporter import CycleExporter
from globalaccel.control.metrics import LoopMetrics
from globalaccel.latency import LatencyModel
from globalaccel.measure.health import tracker_for
from globalaccel.routing import CellState, Router
from globalaccel.topology import load_stack
from tests.conftest import STACKS


def scraped(metrics: LoopMetrics) -> dict[str, float]:
    out = {}
    for line in generate_latest(metrics.registry).decode().splitlines():
        if line.startswith(("globalaccel_capacity_overflow_ratio", "globalaccel_center_load_ratio",
                            "globalaccel_routes_provisional_ratio")):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_capacity_gauges_match_the_table() -> None:
    topo = load_stack("prod", STACKS)
    table, _ = Router(topo).compute(LatencyModel(topo))
    metrics = LoopMetrics()
    exporter = CycleExporter(topo, metrics, "embedded")
    assert scraped(metrics)["globalaccel_capacity_overflow_ratio"] == 0.0  # exists from the first scrape
    health = tracker_for(topo.center_ids, (e.id for e in topo.edges))
    exporter.export(health, LatencyModel(topo), table, {}, {}, (), 0.0)
    values = scraped(metrics)
    routed = sum(table.edge_load.values())
    assert table.overflow > 0 and abs(values["globalaccel_capacity_overflow_ratio"] - table.overflow / routed) < 1e-9
    demand = {c.id: c.demand for c in topo.cells}
    for center in topo.centers:
        assert center.capacity is not None  # prod gives every center one
        load = sum(demand[cid] for cid, r in table.routes.items() if r.center == center.id)
        got = values[f'globalaccel_center_load_ratio{{center="{center.id}"}}']
        assert abs(got - load / center.capacity) < 1e-9 and 0 < got <= 1 + 1e-9


def test_the_provisional_share_counts_routed_cells() -> None:
    """The share of routed cells whose route is still provisional (a cold start's first cycles): 0 from the first
    scrape; cells with no route are not counted."""
    topo = load_stack("dev", STACKS)
    table, _ = Router(topo).compute(LatencyModel(topo))
    metrics = LoopMetrics()
    exporter = CycleExporter(topo, metrics, "embedded")
    assert scraped(metrics)["globalaccel_routes_provisional_ratio"] == 0.0
    cells = {"AA": CellState("c", ("e",), (1.0,), 0, None, True), "AB": CellState("c", ("e",), (1.0,)),
             "AC": CellState("c", ("e",), (1.0,), 0, None, True), "AD": CellState("c", ("e",), (1.0,)), "AE": CellState(None, (), ())}
    health = tracker_for(topo.center_ids, (e.id for e in topo.edges))
    exporter.export(health, LatencyModel(topo), table, {}, {}, (), 0.0, cells)
    assert scraped(metrics)["globalaccel_routes_provisional_ratio"] == 0.5
