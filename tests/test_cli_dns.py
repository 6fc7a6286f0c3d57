"""`globalaccel dns sync` end to end against a real moto server, through the console script."""

from __future__ import annotations

import json
import os
import subprocess

import dns.edns
import dns.message
import dns.query
import dns.rdatatype

from globalaccel.topology import load_stack
from tests.conftest import ROOT, STACKS
from tests.services import moto_server, route53_client
from tests.test_dns_embedded import NETWORKS

CLI = str(ROOT / ".venv" / "bin" / "globalaccel")
DEV = load_stack("dev", STACKS)
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
        # moto has no change-token quota: the flags an operator would use against it
        applied = json.loads(sync("--stack", "dev", "--endpoint-url", url, "--create-zone", "--tokens-per-s", "100000",
                                  "--requests-per-s", "100").stdout)
        assert applied["converged"] and applied["applied_change_requests"] == applied["planned_change_requests"] >= 1
        again = json.loads(sync("--stack", "dev", "--endpoint-url", url).stdout)
        assert again["plan"] == {"create": 0, "update": 0, "delete": 0} and again["applied_change_requests"] == 0
        # The zone's negative TTL (RFC 2308: min(SOA TTL, SOA MINIMUM)) no longer than the 60 s records.
        client = route53_client(url)
        zone_id = client.list_hosted_zones()["HostedZones"][0]["Id"]
        soa = next(r for r in client.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"] if r["Type"] == "SOA")
        assert soa["TTL"] <= 60 and int(soa["ResourceRecords"][0]["Value"].split()[6]) <= 60, soa


def test_dns_sync_powerdns_through_the_cli(tmp_path: object) -> None:
    from pathlib import Path

    from tests.services import free_port, powerdns_server

    assert isinstance(tmp_path, Path)
    with powerdns_server(tmp_path) as (_port, api, key):
        env = {**ENV, "PDNS_API_KEY": key}

        # PowerDNS's own health checks of the centers go to loopback addresses with nothing listening, never
        # to the stack's center addresses (not on this machine).
        port = free_port()
        health = [f"--center-health={c}=http://127.0.99.{j + 1}:{port}" for j, c in enumerate(DEV.center_ids)]

        def run(*extra: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([CLI, "dns", "sync", "--format", "json", "--stack", "dev", "--backend", "powerdns",
                                   "--endpoint-url", api, *extra], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
                                  check=False)

        first = run(*health)
        assert first.returncode == 0, first.stderr
        assert json.loads(first.stdout)["applied_change_requests"] == 1
        second = json.loads(run(*health).stdout)
        assert second["plan"] == {"create": 0, "update": 0, "delete": 0}
        for wrong in ("us-east-1=127.0.99.1:80", "us-east-1=http://dead:80", "us-east-1=ftp://127.0.99.1:80"):
            bad = run(f"--center-health={wrong}", "--dry-run")
            assert bad.returncode != 0 and "CENTER=SCHEME://ADDRESS:PORT" in bad.stderr, (wrong, bad.stderr)
        # A fail-closed country asked through the real server: NODATA whose SOA caps the negative TTL at 60 s.
        address, prefix = NETWORKS["RU"].split("/")
        query = dns.message.make_query(DEV.service_name, "A", use_edns=0, options=[dns.edns.ECSOption(address, int(prefix))])
        response = dns.query.udp(query, "127.0.0.1", port=_port, timeout=5)
        assert [r for r in response.answer if r.rdtype == dns.rdatatype.A] == [] and response.authority  # only the CNAME to none.cc
        soa = response.authority[0]
        assert soa.rdtype == dns.rdatatype.SOA and soa.ttl <= 60 and soa[0].minimum <= 60, soa
