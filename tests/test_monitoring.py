"""Dashboards and rules, checked against the real tools: promtool, and a real Prometheus scraping a
real `globalaccel up --stack dev --local`. Prometheus and promtool come from scripts/system-deps."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from globalaccel.topology import load_stack
from monitoring import dashboards
from tests.conftest import ROOT, STACKS
from tests.services import free_port
from tests.test_up import UpProcess

MONITORING = ROOT / "monitoring"


def require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is not installed: run scripts/system-deps (CI does)")
    return path


def test_dashboards_regenerate_to_the_same_bytes() -> None:
    for name in dashboards.DASHBOARDS:
        committed = (MONITORING / "dashboards" / f"{name}.json").read_text()
        assert dashboards.render(name) == committed, f"{name}.json is stale: run .venv/bin/python monitoring/dashboards.py"


def test_dashboards_cover_what_on_call_needs() -> None:
    titles = {name: [p.get("title") for p in json.loads((MONITORING / "dashboards" / f"{name}.json").read_text())["panels"]]
              for name in dashboards.DASHBOARDS}
    assert "Residency violations (must be 0)" in titles["overview"] and "Table age" in titles["overview"]
    assert "RTT distribution" in titles["center-latency"]
    assert any("flap" in (t or "").lower() for t in titles["edge-health"])
    assert "API budget left" in titles["dns-sync"]
    geomap = json.loads((MONITORING / "dashboards" / "edge-map.json").read_text())["panels"][0]
    assert geomap["type"] == "geomap"
    for name in dashboards.DASHBOARDS:
        variables = {v["name"] for v in json.loads((MONITORING / "dashboards" / f"{name}.json").read_text())["templating"]["list"]}
        assert {"stack", "center", "datasource"} <= variables


def test_promtool_checks_and_unit_tests_the_rules() -> None:
    promtool = require("promtool")
    check = subprocess.run([promtool, "check", "rules", str(MONITORING / "rules.yml")], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    unit = subprocess.run([promtool, "test", "rules", str(MONITORING / "rules_test.yml")], capture_output=True, text=True,
                          check=False, cwd=MONITORING)
    assert unit.returncode == 0 and "SUCCESS" in unit.stdout, unit.stdout + unit.stderr
    config = subprocess.run([promtool, "check", "config", str(MONITORING / "prometheus.yml")], capture_output=True, text=True,
                            check=False)
    assert config.returncode == 0, config.stdout + config.stderr


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    rules = yaml.safe_load((MONITORING / "rules.yml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    tests = yaml.safe_load((MONITORING / "rules_test.yml").read_text())["tests"]
    fired: set[str] = set()
    quiet: set[str] = set()
    for case in tests:
        for t in case.get("alert_rule_test", []):
            (fired if t.get("exp_alerts") else quiet).add(t["alertname"])
    assert alerts <= fired and alerts <= quiet, f"missing firing {alerts - fired} / quiet {alerts - quiet}"
    for g in rules["groups"]:
        for r in g["rules"]:
            if "alert" in r:
                assert r["annotations"]["runbook_url"].startswith("monitoring/runbooks.md#")
                anchor = r["annotations"]["runbook_url"].split("#")[1]
                assert f"## {anchor}" in (MONITORING / "runbooks.md").read_text()


@pytest.fixture(scope="module")
def stack_with_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[UpProcess, str]]:
    prometheus = require("prometheus")
    folder = tmp_path_factory.mktemp("monitoring")
    up = UpProcess(folder / "state")
    prom_port = free_port()
    config = folder / "prometheus.yml"
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(MONITORING / "rules.yml")],
        "scrape_configs": [{"job_name": "globalaccel",
                            "static_configs": [{"targets": [f"127.0.0.1:{up.metrics_port}"], "labels": {"stack": "dev"}}]}],
    }))
    proc = subprocess.Popen([prometheus, f"--config.file={config}", f"--storage.tsdb.path={folder / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{prom_port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{prom_port}"
    try:
        up.wait_for(lambda: up.cycles() >= 2, timeout=60, what="two cycles")
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:  # recording rules need two scrapes in their window and a group evaluation
            try:
                if query(url, "globalaccel:probe_rtt_seconds:p50")["data"]["result"]:
                    break
            except OSError:
                pass
            time.sleep(1)
        yield up, url
    finally:
        proc.terminate()
        proc.wait(10)
        up.stop()


def query(url: str, expr: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}", timeout=10) as response:
        data: dict[str, Any] = json.loads(response.read())
        return data


def panel_queries() -> list[tuple[str, str, str]]:
    out = []
    for name in dashboards.DASHBOARDS:
        for panel in json.loads((MONITORING / "dashboards" / f"{name}.json").read_text())["panels"]:
            for target in panel.get("targets", []):
                out.append((name, panel["title"], target["expr"]))
    return out


def concrete(expr: str) -> str:
    return expr.replace("$__rate_interval", "30s").replace('"$stack"', '"dev"').replace('"$center"', '".*"')


def test_exporter_output_passes_promtool_lint(stack_with_prometheus: tuple[UpProcess, str]) -> None:
    up, _ = stack_with_prometheus
    with urllib.request.urlopen(f"http://127.0.0.1:{up.metrics_port}/metrics", timeout=10) as response:
        text = response.read()
    lint = subprocess.run([require("promtool"), "check", "metrics"], input=text, capture_output=True, check=False)
    assert lint.returncode == 0, lint.stdout.decode() + lint.stderr.decode()


def test_every_panel_query_returns_data(stack_with_prometheus: tuple[UpProcess, str]) -> None:
    _, url = stack_with_prometheus
    queries = panel_queries()
    assert len(queries) >= 20
    for name, title, expr in queries:
        result = query(url, concrete(expr))
        assert result["status"] == "success", (name, title, result)
        assert result["data"]["result"], f"{name} / {title}: no data for {concrete(expr)}"


def test_every_variable_query_and_rule_expression(stack_with_prometheus: tuple[UpProcess, str]) -> None:
    _, url = stack_with_prometheus
    for name in dashboards.DASHBOARDS:
        for var in json.loads((MONITORING / "dashboards" / f"{name}.json").read_text())["templating"]["list"]:
            if var.get("type") != "query":
                continue
            metric, label = re.fullmatch(r"label_values\((\w+), (\w+)\)", var["query"]).groups()  # type: ignore[union-attr]
            with urllib.request.urlopen(f"{url}/api/v1/label/{label}/values?{urllib.parse.urlencode({'match[]': metric})}",
                                        timeout=10) as response:
                assert json.loads(response.read())["data"], f"{name}: variable {var['name']} has no values"
    rules = yaml.safe_load((MONITORING / "rules.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            result = query(url, rule["expr"])
            assert result["status"] == "success", (rule, result)
    with urllib.request.urlopen(f"{url}/api/v1/rules", timeout=10) as response:
        states = [r.get("health") for g in json.loads(response.read())["data"]["groups"] for r in g["rules"]]
    assert states and all(s == "ok" for s in states), states


def firing(url: str) -> dict[str, list[dict[str, str]]]:
    with urllib.request.urlopen(f"{url}/api/v1/alerts", timeout=10) as response:
        alerts = json.loads(response.read())["data"]["alerts"]
    out: dict[str, list[dict[str, str]]] = {}
    for alert in alerts:
        if alert["state"] == "firing":
            out.setdefault(alert["labels"]["alertname"], []).append(alert["labels"])
    return out


def test_counters_exist_from_the_first_scrape(stack_with_prometheus: tuple[UpProcess, str]) -> None:
    """`increase()` cannot see a counter's first increment unless the series existed before it."""
    _, url = stack_with_prometheus
    downs = query(url, 'globalaccel_health_changes_total{to="down"}')["data"]["result"]
    assert {r["metric"]["kind"] for r in downs} == {"edge", "center"}
    reasons = {r["metric"]["reason"] for r in query(url, "globalaccel_route_changes_total")["data"]["result"]}
    assert reasons == {"best", "held", "preferred_fallback", "fail_closed", "no_healthy_path", "center_capacity", "edge_capacity"}
    lost = query(url, 'globalaccel_probes_total{result="lost"}')["data"]["result"]
    assert {r["metric"]["vantage"] for r in lost} == set(load_stack("dev", STACKS).center_ids)


def test_a_cut_off_prober_pages_as_blind_and_nothing_else(stack_with_prometheus: tuple[UpProcess, str]) -> None:
    """A real Prometheus with rules.yml unmodified: one center's prober cut off from everything is
    GlobalaccelProberBlind for that vantage (for: 1m), no other alert fires, and clearing resolves it.
    The longer matrix of every fault kind is benchmarks/bench_alerts.py (minutes per fault)."""
    up, url = stack_with_prometheus
    assert firing(url) == {}, "alerts before the fault"
    up.fault({"kind": "cut_vantage", "target": "us-east-1"})
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and "GlobalaccelProberBlind" not in firing(url):
            time.sleep(2)
        alerts = firing(url)
        assert set(alerts) == {"GlobalaccelProberBlind"}, alerts
        assert [a["vantage"] for a in alerts["GlobalaccelProberBlind"]] == ["us-east-1"]
    finally:
        up.fault({"kind": "clear"})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and firing(url):
        time.sleep(2)
    assert firing(url) == {}
