"""`globalaccel plan` end to end, through the installed console script."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.conftest import ROOT

CLI = str(ROOT / ".venv" / "bin" / "globalaccel")


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def test_prod_plan_json_meets_the_contract() -> None:
    result = run("plan", "--stack", "prod", "--format", "json")
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["stack"] == "prod"
    assert plan["service_name"] == "edge.accel.example.net"
    assert plan["centers"] == 4
    assert plan["edges"] >= 3000
    assert plan["countries"] >= 190 and plan["edge_countries"] >= 190
    assert plan["residency_violations"] == 0
    assert "RU" in plan["fail_closed"] and "CN" in plan["fail_closed"]
    assert plan["routes"]["RU"]["edges"] == [] and plan["routes"]["RU"]["center"] is None
    assert len(plan["table_hash"]) == 64
    assert 0 < plan["estimated_rtt_ms"]["p50"] <= plan["estimated_rtt_ms"]["p95"]
    assert set(plan["per_center"]) == {"us-east-1", "eu-central-1", "me-central-1", "ap-southeast-1"}
    de = plan["routes"]["DE"]
    assert de["center"] in ("eu-central-1", "us-east-1") and len(de["edges"]) >= 4
    assert len(de["addresses"]) == len(de["edges"])
    assert len(plan["routes"]) == plan["countries"]
    # Issue 11's figures for the shipped catalog (edges placed by lawful demand, scripts/generate_catalog.py):
    # metro cells, nearly every edge carrying demand, demand within edge capacity, no center beyond its own.
    assert plan["cells"] >= 2000
    assert plan["edges_carrying_demand"] >= 0.9 * plan["edges"]
    assert plan["capacity_overflow_share"] < 0.01
    assert all(c["load_over_capacity"] is not None and c["load_over_capacity"] <= 1.0 + 1e-9 for c in plan["per_center"].values())


def test_plan_is_deterministic() -> None:
    first = json.loads(run("plan", "--stack", "dev", "--format", "json").stdout)
    second = json.loads(run("plan", "--stack", "dev", "--format", "json").stdout)
    assert first["table_hash"] == second["table_hash"]


def test_text_plan_and_bad_stack(stacks_copy: Path) -> None:
    text = run("plan", "--stack", "dev")
    assert text.returncode == 0 and "residency violations (centers, edges, forwarding): 0" in text.stdout and "fail closed" in text.stdout
    catalog = stacks_copy / "catalog" / "edges-dev.csv"
    catalog.write_text(catalog.read_text().replace(",DE,", ",D3,", 1))
    bad = run("plan", "--stack", "dev", "--stacks-dir", str(stacks_copy))
    assert bad.returncode == 2
    assert "edges-dev.csv:" in bad.stderr and "country: unknown country code 'D3'" in bad.stderr
    assert bad.stdout == ""  # nothing half-computed is printed
