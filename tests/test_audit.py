"""Compliance audit: clean stacks audit clean from every source; every kind of violation is found."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest

from globalaccel.answers import Answers, Served
from globalaccel.dns.backend import sync
from globalaccel.dns.route53_compile import compile_route53
from globalaccel.residency import Role
from globalaccel.routing.summary import route_table
from globalaccel.topology import load_stack
from tests.conftest import ROOT, STACKS
from tests.services import moto_server, route53_client
from tests.test_dns_route53 import PROD, PROD_RECORDS, cidr_provider, prod_cell_records
from tests.test_up import UpProcess, settled

CLI = str(ROOT / ".venv" / "bin" / "globalaccel")
ENV = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def audit(*args: str) -> tuple[int, dict[str, Any], str]:
    result = subprocess.run([CLI, "audit", "--format", "json", *args], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300,
                            check=False)
    data = json.loads(result.stdout) if result.stdout.strip().startswith("{") else {}
    return result.returncode, data, result.stderr


def kinds(report: dict[str, Any]) -> set[str]:
    return {v["kind"] for v in report["violations"]}


def test_prod_plan_audits_clean_with_what_if(tmp_path: Path) -> None:
    code, report, err = audit("--stack", "prod", "--source", "plan", "--what-if", "--out", str(tmp_path))
    assert code == 0, err
    assert report["countries"] == 250 and report["violations"] == [] and report["compliant"]
    assert len(report["scenarios"]) >= 10
    lost = {s["name"]: s["countries_losing_service"] for s in report["scenarios"]}
    # Saudi Arabia and the UAE are preferred to me-central-1 with a lawful failover (PDPL transfer safeguards)
    # to the EU center their rules let terminate: nobody loses service when me-central-1 is down.
    assert lost["centers down: me-central-1"] == []
    assert {"DE", "FR", "GB"} <= set(lost["centers down: us-east-1, eu-central-1"])
    # Where traffic goes after each failure, read from the answers (each address names its edge's center):
    # the EU under the Data Privacy Framework to us-east-1; Belarus (EU center only) nowhere.
    moves = next(s["moves"] for s in report["scenarios"] if s["name"] == "centers down: eu-central-1")
    assert moves["DE"] == "eu-central-1 -> us-east-1" and moves["BY"] == "eu-central-1 -> fail closed"
    # Before any controller reacts, the zone alone (Route 53 failover on the centers' checks) already moves
    # Germany to its next allowed center; Belarus, with no other allowed center, stays on its dead one.
    unattended = next(s["unattended"] for s in report["scenarios"] if s["name"] == "centers down: eu-central-1")
    assert unattended["DE"] == "eu-central-1 -> us-east-1" and "BY" not in unattended
    # Evidence per country: what was asked and the path each answer leads to.
    de = next(r for r in report["results"] if r["country"] == "DE")
    assert "for a client in DE on its continent and every continent whose branch names it" in de["asked"]
    # Every path Route 53 may answer: the chosen center's and the failover chain's (DE: eu-central-1, then us-east-1).
    # Each path is judged again here from its own text: the edge's jurisdiction and role, and the center.
    assert de["paths"]
    for path in de["paths"]:
        found = re.match(r"^198\.18\.\S+ -> \S+ \(([A-Z]{2}), (terminating|transit)\) -> (eu-central-1|us-east-1)$", path)
        assert found, path
        assert PROD.residency.path_violation("DE", found[1], Role(found[2]), found[3]) is None, path
    assert any(p.endswith("-> eu-central-1") for p in de["paths"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit.html", "audit.json", "audit.md", "countries.csv", "map.svg"]


def synced_zone(url: str) -> tuple[Any, str]:
    """Prod's zone as the loop publishes it: cells routed by network (its CIDR collection), the country tree."""
    client = route53_client(url)
    zone = client.create_hosted_zone(Name=PROD.zone, CallerReference=str(uuid.uuid4()))["HostedZone"]["Id"]
    report = sync(cidr_provider(client, zone), prod_cell_records())
    assert report.converged
    return client, zone


def make_bucket(s3: Any, name: str, region: str, center: str | None, *, replicate_to: str | None = None, clean: bool = True) -> None:
    config = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    s3.create_bucket(Bucket=name, **config)
    if center is not None:
        s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": [{"Key": "globalaccel:center", "Value": center},
                                                                 {"Key": "globalaccel:residency-zone", "Value": region}]})
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    if clean:
        s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": [
            {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}}]})
        s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration={
            "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True})
    if replicate_to is not None:
        s3.put_bucket_replication(Bucket=name, ReplicationConfiguration={"Role": "arn:aws:iam::123456789012:role/replication", "Rules": [
            {"ID": "all", "Status": "Enabled", "Prefix": "", "Destination": {"Bucket": f"arn:aws:s3:::{replicate_to}"}}]})


def test_data_stores_clean_and_each_violation_named() -> None:
    with moto_server() as url:
        s3 = boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
        make_bucket(s3, "ga-us-east-1-devices", "us-east-1", "us-east-1")
        make_bucket(s3, "ga-eu-central-1-devices", "eu-central-1", "eu-central-1")
        code, report, err = audit("--stack", "prod", "--source", "plan", "--s3-endpoint-url", url)
        assert code == 0 and report["violations"] == [], (err, report.get("violations"))
        assert {d["bucket"] for d in report["data_stores"]} == {"ga-us-east-1-devices", "ga-eu-central-1-devices"}
        make_bucket(s3, "ga-eu-in-ireland", "eu-west-1", "eu-central-1")  # wrong region
        make_bucket(s3, "ga-ap-southeast-1-devices", "ap-southeast-1", "ap-southeast-1")
        make_bucket(s3, "ga-eu-to-singapore", "eu-central-1", "eu-central-1", replicate_to="ga-ap-southeast-1-devices")
        make_bucket(s3, "ga-me-open", "me-central-1", "me-central-1", clean=False)
        # The EU center also holds Belarus's and Monaco's data, whose rules allow eu-central-1 only: EU -> US
        # replication is a transfer they forbid, even though the EEA's own rule would allow it.
        make_bucket(s3, "ga-eu-to-us", "eu-central-1", "eu-central-1", replicate_to="ga-us-east-1-devices")
        make_bucket(s3, "eu-exports", "ap-southeast-1", None)  # untagged: EU data in Singapore would go unnoticed
        code, report, _ = audit("--stack", "prod", "--source", "plan", "--s3-endpoint-url", url)
    assert code == 1
    found = {(v["kind"], v["subject"]) for v in report["violations"]}
    assert ("bucket_wrong_region", "ga-eu-in-ireland") in found
    assert ("bucket_replication_out_of_region", "ga-eu-to-singapore") in found
    assert ("bucket_public", "ga-me-open") in found and ("bucket_unencrypted", "ga-me-open") in found
    assert ("bucket_unclassified", "eu-exports") in found  # found, not volunteered: every bucket of the account is listed
    assert {"bucket": "eu-exports", "region": "ap-southeast-1", "center": None}.items() <= next(
        d for d in report["data_stores"] if d.get("bucket") == "eu-exports").items()
    assert not any(subject == "ga-eu-central-1-devices" for _, subject in found)
    to_us = next(v for v in report["violations"] if v["subject"] == "ga-eu-to-us")
    assert to_us["kind"] == "bucket_replication_out_of_region" and "'BY'" in to_us["evidence"] and "'DE'" not in to_us["evidence"]


def test_local_audit_while_up_runs_then_a_tampered_log_line_is_named(tmp_path: Path) -> None:
    up = UpProcess(tmp_path / "state")
    try:
        up.wait_for(settled(up), timeout=90, what="a settled table")
        code, report, err = audit("--stack", "dev", "--source", "local", "--dns", f"127.0.0.1:{up.dns_port}",
                                  "--state-dir", str(tmp_path / "state"), "--what-if")
        assert code == 0 and report["violations"] == [], (err, report.get("violations"))
        assert report["decision_log"]["chain_intact"] and report["summary"]["served"] >= 200
    finally:
        up.stop()
    log = tmp_path / "state" / "decisions.jsonl"
    lines = log.read_text().splitlines()
    entry = json.loads(lines[0])
    entry["routes"]["DE"]["center"] = "ap-southeast-1"  # rewrite history: Germany served from Singapore
    lines[0] = json.dumps(entry, sort_keys=True, separators=(",", ":"))
    log.write_text("\n".join(lines) + "\n")
    code, report, _ = audit("--stack", "dev", "--source", "plan", "--state-dir", str(tmp_path / "state"))
    assert code == 1
    found = {(v["kind"], v["subject"]) for v in report["violations"]}
    assert ("log_tampered", "decisions.jsonl:1") in found
    assert ("log_residency", "decisions.jsonl entry 1") in found


def test_audit_that_cannot_run_exits_2(tmp_path: Path) -> None:
    with moto_server() as url:
        code, _, err = audit("--stack", "prod", "--source", "route53", "--endpoint-url", url)
        assert code == 2 and "no hosted zone" in err
        # Two hosted zones with the zone's name: which one the world sees is up to delegation; refuse, name both.
        client = route53_client(url)
        ids = [client.create_hosted_zone(Name=PROD.zone, CallerReference=str(uuid.uuid4()))["HostedZone"]["Id"].split("/")[-1]
               for _ in range(2)]
        code, _, err = audit("--stack", "prod", "--source", "route53", "--endpoint-url", url)
        assert code == 2 and "2 hosted zones are named" in err and all(i in err for i in ids), err
    code, _, err = audit("--stack", "prod", "--source", "local", "--dns", "127.0.0.1:9")
    assert code == 2 and "--state-dir" in err
    code, _, err = audit("--stack", "nosuch")
    assert code == 2 and "no such stack" in err


def test_html_report_renders_in_chromium_with_the_map(tmp_path: Path) -> None:
    from PIL import Image

    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium is not installed: run scripts/system-deps (CI does)")
    code, _, err = audit("--stack", "prod", "--source", "plan", "--out", str(tmp_path))
    assert code == 0, err
    shot = tmp_path / "shot.png"
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,900", f"--screenshot={shot}",
                    (tmp_path / "audit.html").as_uri()], capture_output=True, timeout=120, check=True)
    image = Image.open(shot).convert("RGB")
    pixels = list(image.get_flattened_data())
    centre_blue = sum(1 for p in pixels if p == (0x1F, 0x77, 0xB4))  # us-east-1's colour: its dots and catchment
    ocean = sum(1 for p in pixels if p == (0xEE, 0xF3, 0xF8))
    assert ocean > 100_000, "the map's background is not on screen"
    assert centre_blue > 2_000, "the countries served from us-east-1 are not filled with its colour"
    page = (tmp_path / "audit.html").read_text()
    for part in ('id="verdict">COMPLIANT', "<h2>Scope and coverage</h2>", "<h2>Provenance</h2>", "<h2 id=countries>",
                 "<h2>Residency rules judged against</h2>", 'data-country="RU"'):
        assert part in page, part
    assert re.search(r"<td>DE</td>.*?-&gt; de-[a-z0-9-]+ \(DE, (terminating|transit)\) -&gt; eu-central-1", page)  # evidence


def test_plan_source_uses_the_compiled_route53_tree() -> None:
    """The plan source is the Route 53 tree the controller would publish, evaluated by the simulator."""
    table = route_table(PROD)
    assert compile_route53(PROD, Answers.from_table(table, PROD)) == PROD_RECORDS[1:]  # all but the ownership claim
    assert load_stack("prod", STACKS).stack == "prod"


def test_kubernetes_manifests_are_placed_in_their_centers_region(tmp_path: Path) -> None:
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    labels = {"globalaccel/center": "eu-central-1"}
    good = {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "devices-eu", "labels": labels},
            "spec": {"nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "topology.kubernetes.io/region", "operator": "In", "values": ["eu-central-1"]}]}]}}}}
    (manifests / "good.yaml").write_text(json.dumps(good))
    code, report, err = audit("--stack", "prod", "--source", "plan", "--manifests", str(manifests))
    assert code == 0, (err, report.get("violations"))
    wrong = json.loads(json.dumps(good))
    wrong["metadata"]["name"] = "devices-eu-moved"
    wrong["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] = ["ap-southeast-1"]
    stray = {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "orphan"}, "spec": {}}
    (manifests / "bad.yaml").write_text(json.dumps(wrong) + "\n---\n" + json.dumps(stray))
    code, report, _ = audit("--stack", "prod", "--source", "plan", "--manifests", str(manifests))
    assert code == 1
    found = {(v["kind"], v["subject"]) for v in report["violations"]}
    assert ("k8s_wrong_region", "PersistentVolume/devices-eu-moved") in found
    assert ("k8s_unplaced", "StatefulSet/orphan") in found


def test_every_manifest_format_and_data_placing_kind_is_read(tmp_path: Path) -> None:
    """`.yml`, `.json`, a `kind: List`, a claim through its StorageClass's allowed topologies, and a
    Deployment mounting a claim: each is examined, and what is not a data store is counted in the scope."""
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    eu = {"globalaccel/center": "eu-central-1"}
    region = {"key": "topology.kubernetes.io/region", "values": ["eu-central-1"]}
    storage = {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "eu-only"},
               "allowedTopologies": [{"matchLabelExpressions": [region]}]}
    anywhere = {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "anywhere"}}
    claim = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "eu-data", "labels": eu},
             "spec": {"storageClassName": "eu-only"}}
    loose = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "loose", "labels": eu},
             "spec": {"storageClassName": "anywhere"}}
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "writer", "labels": eu},
                  "spec": {"template": {"spec": {"volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "loose"}}]}}}}
    stateless = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"template": {"spec": {}}}}
    (manifests / "classes.yml").write_text(json.dumps(storage) + "\n---\n" + json.dumps(anywhere))
    (manifests / "claims.json").write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": [claim, loose]}))
    (manifests / "apps.yml").write_text(json.dumps(deployment) + "\n---\n" + json.dumps(stateless))
    code, report, err = audit("--stack", "prod", "--source", "plan", "--manifests", str(manifests))
    assert code == 1, err
    found = {(v["kind"], v["subject"]) for v in report["violations"]}
    assert found == {("k8s_unplaced", "PersistentVolumeClaim/loose"), ("k8s_unplaced", "Deployment/writer")}
    examined = {d["resource"] for d in report["data_stores"]}
    assert {"PersistentVolumeClaim/eu-data", "StorageClass/eu-only", "Deployment/writer"} <= examined
    assert report["scope"]["manifests"]["not_data_stores"] == {"Deployment": 1}


def test_the_programs_own_manifests_are_read() -> None:
    code, report, err = audit("--stack", "prod", "--source", "plan", "--manifests", "program")
    assert code == 0, err
    assert report["scope"]["manifests"]["folder"] == "rendered by the Pulumi program"
    assert {"resource": "StatefulSet/globalaccel-loop", "center": "us-east-1", "region": "us-east-1"}.items() <= next(
        d for d in report["data_stores"] if d["resource"] == "StatefulSet/globalaccel-loop").items()


def test_fail_open_findings_are_complete_when_returned() -> None:
    """A default record in the tree answers any client Route 53 cannot match: the finding is there as soon
    as the answers are (the audit copies it right away). The failover chains' own fail-open (to the
    primary, an allowed center) is no finding, but every center of a chain is among the possible answers."""
    from dataclasses import replace

    from globalaccel.audit.sources import route53_answers
    from globalaccel.dns.records import Geo

    dev = load_stack("dev", STACKS)
    table = route_table(dev)
    compiled = compile_route53(dev, Answers.from_table(table, dev))
    answer, findings = route53_answers(compiled, dev)
    assert not findings
    chain = Answers.from_table(table, dev).country("DE")
    assert isinstance(chain, Served) and len(chain.paths) > 1
    assert {a for p in chain.paths for a in p.addresses} <= (answer("DE") or set())
    some_leaf = next(r for r in compiled if r.weight is not None)
    default = replace(some_leaf, name=dev.service_name.rstrip(".") + ".", set_id="anyone", weight=None, geo=Geo())
    _, findings = route53_answers([*compiled, default], dev)
    assert ("fail_open_fallback", default.name) in {(f.kind, f.subject) for f in findings}


def test_preferred_region_affinity_or_an_open_alternative_is_not_placement() -> None:
    from globalaccel.audit.stores import allowed_regions

    term = {"matchExpressions": [{"key": "topology.kubernetes.io/region", "operator": "In", "values": ["eu-central-1"]}]}
    preferred = {"template": {"spec": {"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 100, "preference": term}]}}}}}
    assert allowed_regions(preferred, "StatefulSet") is None
    required = {"template": {"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [term]}}}}}}
    assert allowed_regions(required, "StatefulSet") == {"eu-central-1"}
    with_open_alternative = {"nodeAffinity": {"required": {"nodeSelectorTerms": [term, {"matchExpressions": [
        {"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"]}]}]}}}
    assert allowed_regions(with_open_alternative, "PersistentVolume") is None
    selector = {"template": {"spec": {"nodeSelector": {"topology.kubernetes.io/region": "ap-southeast-1"}}}}
    assert allowed_regions(selector, "StatefulSet") == {"ap-southeast-1"}


def test_a_log_cut_short_or_rechained_is_found_against_an_earlier_audits_anchor(tmp_path: Path) -> None:
    """Cutting the last lines, or removing an entry and re-chaining the rest, leaves a chain that verifies
    end to end. The head an earlier audit recorded (outside the log: in its report) catches both."""
    from globalaccel.control.decisionlog import DecisionEntry, DecisionLog, line_hash
    from globalaccel.routing.summary import route_table
    from globalaccel.topology import load_stack
    from tests.conftest import STACKS

    dev = load_stack("dev", STACKS)
    table = route_table(dev)
    state = tmp_path / "state"
    log = DecisionLog(state / "decisions.jsonl")
    for n in range(6):
        log.append(DecisionEntry.for_table(table, list(table.routes), 1000.0 + n, dev.stack, {}, 0, dev.residency.rules_hash))
    first = tmp_path / "first"
    code, report, err = audit("--stack", "dev", "--source", "plan", "--state-dir", str(state), "--out", str(first))
    assert code == 0, err
    assert report["decision_log"]["head"]["length"] == 6
    anchor = str(first / "audit.json")
    lines = (state / "decisions.jsonl").read_text().splitlines()
    (state / "decisions.jsonl").write_text("\n".join(lines[:4]) + "\n")  # the last two entries cut
    code, report, _ = audit("--stack", "dev", "--source", "plan", "--state-dir", str(state), "--log-anchor", anchor)
    assert code == 1 and report["decision_log"]["chain_intact"]
    assert [v["kind"] for v in report["violations"]] == ["log_truncated"]
    kept = [json.loads(line) for i, line in enumerate(lines) if i != 2]  # entry 3 removed, the rest re-chained
    prev = "0" * 64
    for entry in kept:
        entry["prev"] = prev
        entry["hash"] = prev = line_hash(entry)
    kept.append({**kept[-1], "time": 2000.0, "prev": prev})  # and one forged entry to restore the length
    kept[-1]["hash"] = line_hash(kept[-1])
    (state / "decisions.jsonl").write_text("\n".join(json.dumps(e, sort_keys=True, separators=(",", ":")) for e in kept) + "\n")
    code, report, _ = audit("--stack", "dev", "--source", "plan", "--state-dir", str(state), "--log-anchor", anchor)
    assert code == 1 and report["decision_log"]["chain_intact"]
    assert [v["kind"] for v in report["violations"]] == ["log_rechained"]


def test_every_routing_policy_aaaa_and_every_continent_of_a_live_zone_are_resolved() -> None:
    """Seeded by hand into a live zone (moto), each a way out of the allowed set that only a complete
    resolution finds: a failover pair whose secondary goes to Singapore (Japan is fine there, France is
    not), a multivalue and a latency record, an AAAA record nobody owns, France listed a second time
    under Asia, and a weight-0 record. Each is found with the country named; the clean zone was clean."""
    singapore = next(e for e in PROD.edges if e.country == "SG").address_for("ap-southeast-1")
    french = next(e for e in PROD.edges if e.country == "FR").address_for("eu-central-1")
    z = PROD.zone

    def rr(name: str, set_id: str, value: str, rtype: str = "A", **policy: Any) -> dict[str, Any]:
        return {"Action": "CREATE", "ResourceRecordSet": {"Name": name, "Type": rtype, "SetIdentifier": set_id, "TTL": 60,
                                                          "ResourceRecords": [{"Value": value}], **policy}}

    def alias(name: str, set_id: str, target: str, **policy: Any) -> dict[str, Any]:
        return {"Action": "UPSERT", "ResourceRecordSet": {"Name": name, "Type": "A", "SetIdentifier": set_id, **policy,
                                                          "AliasTarget": {"HostedZoneId": zone.split("/")[-1], "DNSName": target,
                                                                          "EvaluateTargetHealth": False}}}

    with moto_server() as url:
        client, zone = synced_zone(url)
        code, report, err = audit("--stack", "prod", "--source", "route53", "--endpoint-url", url)
        assert code == 0 and report["violations"] == [], (err, report["violations"])
        changes = [
            # France: failover primary in France, secondary in Singapore, reached through its continent record
            rr(f"fr-fo.cc.{z}", "fr-primary", french, Failover="PRIMARY"),
            rr(f"fr-fo.cc.{z}", "fr-secondary", singapore, Failover="SECONDARY"),
            alias(f"eu.geo.{z}", "EU-FR", f"fr-fo.cc.{z}", GeoLocation={"CountryCode": "FR"}),
            # Germany: a multivalue record set and an AAAA record at its leaf's neighbours
            rr(f"de-mv.cc.{z}", "de-mv", singapore, MultiValueAnswer=True),
            alias(f"eu.geo.{z}", "EU-DE", f"de-mv.cc.{z}", GeoLocation={"CountryCode": "DE"}),
            # Italy: a latency record for another region
            rr(f"it-lat.cc.{z}", "it-ap", singapore, Region="ap-southeast-1"),
            alias(f"eu.geo.{z}", "EU-IT", f"it-lat.cc.{z}", GeoLocation={"CountryCode": "IT"}),
            # Spain: an AAAA record nobody owns
            rr(f"es.cc.{z}", "ES-v6", "2001:db8::53", rtype="AAAA", Weight=10),
            {"Action": "CREATE", "ResourceRecordSet": {"Name": f"eu.geo.{z}", "Type": "AAAA", "SetIdentifier": "EU-ES-v6",
                                                       "GeoLocation": {"CountryCode": "ES"}, "AliasTarget": {
                                                           "HostedZoneId": zone.split("/")[-1], "DNSName": f"es.cc.{z}",
                                                           "EvaluateTargetHealth": False}}},
            {"Action": "CREATE", "ResourceRecordSet": {"Name": PROD.service_name, "Type": "AAAA", "SetIdentifier": "EU-v6",
                                                       "GeoLocation": {"ContinentCode": "EU"}, "AliasTarget": {
                                                           "HostedZoneId": zone.split("/")[-1], "DNSName": f"eu.geo.{z}",
                                                           "EvaluateTargetHealth": False}}},
            # Portugal listed again under Asia, with a leaf in Singapore
            rr(f"pt-as.cc.{z}", "pt-as", singapore, Weight=1),
            alias(f"as.geo.{z}", "AS-PT", f"pt-as.cc.{z}", GeoLocation={"CountryCode": "PT"}),
            # Austria: a weight-0 record to Singapore beside its own
            rr(f"at.cc.{z}", "AT-zero", singapore, Weight=0),
        ]
        client.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": changes})
        code, report, _ = audit("--stack", "prod", "--source", "route53", "--endpoint-url", url)
    assert code == 1
    found = {(v["kind"], v["subject"]) for v in report["violations"]}
    for country in ("FR", "DE", "IT", "PT", "AT"):
        assert ("out_of_region_answer", country) in found, (country, sorted(found))
    assert ("unknown_answer", "ES") in found  # the AAAA address is no edge's


def test_a_zone_kept_by_the_loop_is_judged_against_the_loops_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The loop publishes to Route 53 (moto) from its own measurements, which differ from the files'
    physics estimate. Audited with its state folder, the zone shows no drift and no finding; without it,
    the same zone differs from the files' table (drift, not residency): the two questions stay apart."""
    from globalaccel.app.up import emulated_paths
    from globalaccel.control.loop import ControlLoop
    from globalaccel.control.state import FileLease
    from globalaccel.dns.factory import open_backend
    from globalaccel.settings import BackendSettings
    from globalaccel.topology import load_stack
    from tests.conftest import STACKS

    dev = load_stack("dev", STACKS)
    baseline = route_table(dev)
    slow = set(baseline.routes["DE"].edge_ids)  # Germany's edges by the estimate are congested in the measurements
    state = tmp_path / "state"
    with moto_server() as url:
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
            monkeypatch.setenv(key, ENV[key])
        # moto has no change-token quota: the loop's publishes are not what is timed here
        zone = open_backend(dev, BackendSettings(kind="route53", endpoint_url=url, create_zone=True, requests_per_s=100,
                                                 tokens_per_s=100_000))
        loop = ControlLoop(dev, zone, state, FileLease(state))
        for t in (0.1, 0.2, 0.3):
            for path in emulated_paths(dev, 1):
                loop.record(path, 300.0 if path.target in slow else 10.0, t)
        report = loop.cycle(now=1.0)
        assert report.published, report.error
        loop.lease.release()
        assert loop.table is not None and set(loop.table.routes["DE"].edge_ids) != slow  # the loop table is not the files one
        code, with_state, err = audit("--stack", "dev", "--source", "route53", "--endpoint-url", url, "--state-dir", str(state))
        _, without_state, _ = audit("--stack", "dev", "--source", "route53", "--endpoint-url", url)
        assert code == 0 and with_state["violations"] == [] and with_state["drift"] == [], (err, with_state["drift"][:3])
        assert without_state["violations"] == [] and without_state["verdict"] == "COMPLIANT"
        assert any(d["kind"] == "record_drift" and d["subject"].split(".")[0] in ("de", "de-eu-central-1") for d in without_state["drift"])
        # The loop anchored its log's head in the zone: the audit checks the log against it unasked, so a log
        # emptied after the fact (its chain still "intact") is found.
        anchored = list(with_state["decision_log"]["anchors"].values())
        assert anchored == [{"length": 1, "hash": with_state["decision_log"]["head"]["hash"]}]
        log_text = (state / "decisions.jsonl").read_text()
        (state / "decisions.jsonl").write_text("")
        code, cut, _ = audit("--stack", "dev", "--source", "route53", "--endpoint-url", url, "--state-dir", str(state))
        assert code == 1 and cut["decision_log"]["chain_intact"]
        assert [v["kind"] for v in cut["violations"]] == ["log_truncated"]
        # Removing the anchor too is found (the loop's state shows it published), and so is a forged, empty one.
        zone_id = next(z["Id"] for z in route53_client(url).list_hosted_zones()["HostedZones"])
        anchor_rr = next(r for r in route53_client(url).list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
                         if r["Name"].startswith("_globalaccel-log."))
        route53_client(url).change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": [
            {"Action": "DELETE", "ResourceRecordSet": anchor_rr}]})
        code, gone, _ = audit("--stack", "dev", "--source", "route53", "--endpoint-url", url, "--state-dir", str(state))
        assert code == 1 and [v["kind"] for v in gone["violations"]] == ["log_anchor_missing"]
        route53_client(url).change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": [
            {"Action": "CREATE", "ResourceRecordSet": {**anchor_rr, "ResourceRecords": [{"Value": '"length=0 head=x"'}]}}]})
        (state / "decisions.jsonl").write_text(log_text)
        code, forged, _ = audit("--stack", "dev", "--source", "route53", "--endpoint-url", url, "--state-dir", str(state))
    assert code == 1 and [v["kind"] for v in forged["violations"]] == ["log_anchor_invalid"]


def test_embedded_server_seeded_by_hand_is_audited_through_real_ecs_queries(tmp_path: Path) -> None:
    """Live state of the embedded server, changed through its own backend interface (as an operator or a
    bug would): Germany also answered with a Singapore edge's address for ap-southeast-1, and France's
    record removed. Audited with real ECS queries (--source local): the out-of-region answer fails the
    audit with Germany named; France is lost service, reported as drift."""
    from dataclasses import replace as dc_replace

    from globalaccel.control.decisionlog import DecisionEntry, DecisionLog
    from globalaccel.dns.backend import ApplyStats, OwnedZone
    from globalaccel.dns.embedded import DnsResponder
    from globalaccel.dns.embedded_backend import EmbeddedBackend, empty_snapshot
    from globalaccel.dns.plan import Change, Changes
    from globalaccel.topology import load_stack
    from tests.conftest import STACKS
    from tests.test_dns_embedded import RunningServer

    dev = load_stack("dev", STACKS)
    table = route_table(dev)
    state = tmp_path / "state"
    DecisionLog(state / "decisions.jsonl").append(DecisionEntry.for_table(table, list(table.routes), 1.0, dev.stack, {}, 0))
    responder = DnsResponder(empty_snapshot(dev, "127.0.0.1"))
    backend = EmbeddedBackend(dev, responder)
    sync(OwnedZone(backend), backend.render(Answers.from_table(table, dev)))
    with RunningServer(responder) as server:
        code, report, err = audit("--stack", "dev", "--source", "local", "--dns", f"127.0.0.1:{server.port}", "--state-dir", str(state))
        assert code == 0 and report["violations"] == [], (err, report.get("violations"))
        singapore = next(e for e in dev.edges if e.country in ("SG", "JP")).address_for("ap-southeast-1")
        germany = next(r for r in backend.records() if r.set_id == "DE")
        france = next(r for r in backend.records() if r.set_id == "FR")
        backend.apply(Changes(updates=(Change("UPSERT", dc_replace(germany, values=(*germany.values, singapore))),),
                              deletes=(Change("DELETE", france),)), ApplyStats())
        code, report, _ = audit("--stack", "dev", "--source", "local", "--dns", f"127.0.0.1:{server.port}", "--state-dir", str(state))
    assert code == 1
    assert ("out_of_region_answer", "DE") in {(v["kind"], v["subject"]) for v in report["violations"]}
    assert ("lost_service", "FR") in {(d["kind"], d["subject"]) for d in report["drift"]}


def test_second_review_seeds_are_each_found(tmp_path: Path) -> None:
    """Seeded by a reviewer who did not write the audit: a log without a decision for Germany must not
    switch off the check of Germany's live answers; a US subdivision record; an alias and a CNAME to
    names outside the zone; an alias chain deeper than Route 53 follows."""
    from globalaccel.control.decisionlog import DecisionEntry, DecisionLog

    singapore = next(e for e in PROD.edges if e.country == "SG").address_for("ap-southeast-1")
    z = PROD.zone
    state = tmp_path / "state"
    table = route_table(PROD)
    DecisionLog(state / "decisions.jsonl").append(DecisionEntry.for_table(table, [PROD.principal_cell["JP"]], 1.0, PROD.stack, {}, 0))
    with moto_server() as url:
        client, zone = synced_zone(url)
        hosted = zone.split("/")[-1]

        def change(*items: dict[str, Any]) -> None:
            client.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": list(items)})

        change({"Action": "CREATE", "ResourceRecordSet": {"Name": f"de.cc.{z}", "Type": "A", "SetIdentifier": "DE-x", "Weight": 255,
                                                          "TTL": 60, "ResourceRecords": [{"Value": singapore}]}})
        code, report, err = audit("--stack", "prod", "--source", "route53", "--endpoint-url", url, "--state-dir", str(state))
        assert code == 1 and ("out_of_region_answer", "DE") in {(v["kind"], v["subject"]) for v in report["violations"]}, err
        # A US subdivision record, an external alias for France, an external CNAME for Spain, a deep chain for Italy.
        hops = [f"hop{i}.cc.{z}" for i in range(10)]
        change(
            {"Action": "CREATE", "ResourceRecordSet": {"Name": f"na.geo.{z}", "Type": "A", "SetIdentifier": "NA-US-CA", "TTL": 60,
                                                       "GeoLocation": {"CountryCode": "US", "SubdivisionCode": "CA"},
                                                       "ResourceRecords": [{"Value": "203.0.113.9"}]}},
            {"Action": "UPSERT", "ResourceRecordSet": {"Name": f"eu.geo.{z}", "Type": "A", "SetIdentifier": "EU-FR",
                                                       "GeoLocation": {"CountryCode": "FR"}, "AliasTarget": {
                                                           "HostedZoneId": hosted, "DNSName": "d111.cloudfront.net",
                                                           "EvaluateTargetHealth": False}}},
            {"Action": "CREATE", "ResourceRecordSet": {"Name": f"es-c.cc.{z}", "Type": "CNAME", "TTL": 60,
                                                       "ResourceRecords": [{"Value": "evil.example.org"}]}},
            {"Action": "UPSERT", "ResourceRecordSet": {"Name": f"eu.geo.{z}", "Type": "A", "SetIdentifier": "EU-ES",
                                                       "GeoLocation": {"CountryCode": "ES"}, "AliasTarget": {
                                                           "HostedZoneId": hosted, "DNSName": f"es-c.cc.{z}",
                                                           "EvaluateTargetHealth": False}}},
            *({"Action": "CREATE", "ResourceRecordSet": {"Name": hops[i], "Type": "A", "AliasTarget": {
                "HostedZoneId": hosted, "DNSName": hops[i + 1] if i + 1 < len(hops) else f"it.cc.{z}", "EvaluateTargetHealth": False}}}
              for i in range(len(hops))),
            {"Action": "UPSERT", "ResourceRecordSet": {"Name": f"eu.geo.{z}", "Type": "A", "SetIdentifier": "EU-IT",
                                                       "GeoLocation": {"CountryCode": "IT"}, "AliasTarget": {
                                                           "HostedZoneId": hosted, "DNSName": hops[0], "EvaluateTargetHealth": False}}},
        )
        code, report, err = audit("--stack", "prod", "--source", "route53", "--endpoint-url", url)
    assert code == 1, err
    found = {(v["kind"], v["subject"]) for v in report["violations"]}
    for expected in (("unknown_answer", "US"), ("unknown_answer", "FR"), ("unknown_answer", "ES"), ("unresolvable_answer", "IT")):
        assert expected in found, (expected, sorted(found))
    assert any("external:d111.cloudfront.net" in v["evidence"] for v in report["violations"] if v["subject"] == "FR")


def test_unreadable_manifests_stop_the_audit_and_every_data_placing_shape_is_read(tmp_path: Path) -> None:
    manifests = tmp_path / "m"
    manifests.mkdir()
    (manifests / "chart.yaml").write_text("kind: Deployment\nmetadata: {name: {{ .Values.name }}}\n")
    code, _, err = audit("--stack", "prod", "--source", "plan", "--manifests", str(manifests))
    assert code == 2 and "chart.yaml: not a readable manifest" in err
    (manifests / "chart.yaml").unlink()
    eu = {"globalaccel/center": "eu-central-1"}
    us_only = {"nodeSelector": {"topology.kubernetes.io/region": "us-east-1"}}
    pod = {"kind": "Pod", "metadata": {"name": "p", "labels": eu},
           "spec": {**us_only, "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "c"}}]}}
    nested = {"kind": "List", "items": [{"kind": "List", "items": [{"kind": "StatefulSet", "metadata": {"name": "deep"}, "spec": {}}]}]}
    (manifests / "a.json").write_text(json.dumps([pod, nested]))
    code, report, _ = audit("--stack", "prod", "--source", "plan", "--manifests", str(manifests))
    assert code == 1
    found = {(v["kind"], v["subject"]) for v in report["violations"]}
    assert found == {("k8s_wrong_region", "Pod/p"), ("k8s_unplaced", "StatefulSet/deep")}
    code, _, err = audit("--stack", "prod", "--source", "plan", "--min-coverage", "-1")
    assert code == 2 and "--min-coverage must be a share between 0 and 1" in err
