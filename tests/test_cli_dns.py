"""`globalaccel dns sync` end to end against a real moto server, through the console script."""

from __future__ import annotations

import json
import os
import subprocess

from tests.conftest import ROOT
from tests.services import moto_server

CLI = str(ROOT / ".venv" / "bin" / "globalaccel")
ENV = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def sync(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, "dns", "sync", "--format", "json", *args], cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=300, check=False)


def test_dns_sync_dry_run_then_apply_then_nothing() -> None:
    with moto_server() as url:  # its own server: the zone name is the stack's, so no sharing
        dry = sync("--stack", "dev", "--endpoint-url", url, "--dry-run")
        assert dry.returncode == 0, dry.stderr
        planned = json.loads(dry.stdout)
        assert planned["dry_run"] and planned["plan"]["create"] == planned["desired_records"] > 0
        missing = sync("--stack", "dev", "--endpoint-url", url)
        assert missing.returncode == 2 and "pass --create-zone" in missing.stderr
        applied = json.loads(sync("--stack", "dev", "--endpoint-url", url, "--create-zone").stdout)
        assert applied["converged"] and applied["applied_change_requests"] == applied["planned_change_requests"] >= 1
        again = json.loads(sync("--stack", "dev", "--endpoint-url", url).stdout)
        assert again["plan"] == {"create": 0, "update": 0, "delete": 0} and again["applied_change_requests"] == 0


def test_dns_sync_powerdns_through_the_cli(tmp_path: object) -> None:
    from pathlib import Path

    from tests.services import powerdns_server

    assert isinstance(tmp_path, Path)
    with powerdns_server(tmp_path) as (_port, api, key):
        env = {**ENV, "PDNS_API_KEY": key}

        def run(*extra: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([CLI, "dns", "sync", "--format", "json", "--stack", "dev", "--backend", "powerdns",
                                   "--endpoint-url", api, *extra], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
                                  check=False)

        first = run()
        assert first.returncode == 0, first.stderr
        assert json.loads(first.stdout)["applied_change_requests"] == 1
        second = json.loads(run().stdout)
        assert second["plan"] == {"create": 0, "update": 0, "delete": 0}
