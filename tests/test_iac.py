"""The Pulumi program under the SDK's mocks (preview=False), as `globalaccel preview` runs it.

MOCK, by necessity: no Pulumi CLI or cloud account here. pulumi.runtime.set_mocks runs the real
__main__.py and records every resource with its inputs; the checks below are on those inputs.
Each stack runs in its own process (the SDK's runtime state is global)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client import ApiClient

from globalaccel.topology import load_stack
from policy.validators import validate
from tests.conftest import ROOT, STACKS

CLI = str(ROOT / ".venv" / "bin" / "globalaccel")


@dataclass
class Res:
    type: str
    name: str
    inputs: dict[str, Any]
    provider: str | None


def preview(stack: str, out: Path) -> tuple[dict[str, Any], list[Res]]:
    result = subprocess.run([CLI, "preview", "--stack", stack, "--format", "json", "--out", str(out)], cwd=ROOT, capture_output=True,
                            text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    resources = [Res(**r) for r in json.loads((out / "resources.json").read_text())]
    return json.loads(result.stdout), resources


@pytest.fixture(scope="module", params=["dev", "prod"])
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Any], list[Res], Path]:
    out = tmp_path_factory.mktemp(request.param)
    summary, resources = preview(request.param, out)
    return request.param, summary, resources, out


def topo_zone(stack: str) -> str:
    return load_stack(stack, STACKS).zone.rstrip(".")


def test_counts_and_names(stack: tuple[str, dict[str, Any], list[Res], Path]) -> None:
    name, summary, resources, _ = stack
    by_type = summary["by_type"]
    assert summary["total_resources"] == len(resources) <= 150
    assert by_type["pulumi-python:dynamic:Resource"] == 1  # the whole edge fleet: one resource
    # Edge records live in the fleet; the Record resources are the zone's SOA (negative TTL capped) and each
    # center's prober name (prober-<center>.<zone>, the address its peers' URLs name, on its load balancer).
    assert by_type["aws:route53/record:Record"] == 5
    soa = next(r for r in resources if r.type == "aws:route53/record:Record" and r.inputs["type"] == "SOA")
    assert soa.inputs["ttl"] == 60 and soa.inputs["allowOverwrite"] is True
    prober_names = {r.inputs["name"] for r in resources if r.type == "aws:route53/record:Record" and r.inputs["type"] == "CNAME"}
    assert prober_names == {f"prober-{c}.{topo_zone(name)}" for c in load_stack(name, STACKS).center_ids}
    lbs = [r for r in resources if r.type == "kubernetes:core/v1:Service" and r.inputs["spec"].get("type") == "LoadBalancer"]
    assert len(lbs) == 4 and all([p["port"] for p in lb.inputs["spec"]["ports"]] == [9465] for lb in lbs)  # results only
    # Every prober and the loop read the centers' shared key from the namespace's Secret, never a flag.
    containers = [c for r in resources if r.type in ("kubernetes:apps/v1:Deployment", "kubernetes:apps/v1:StatefulSet")
                  for c in r.inputs["spec"]["template"]["spec"]["containers"]]
    assert containers and all(any(e.get("valueFrom", {}).get("secretKeyRef", {}).get("name") == "globalaccel-peer-key"
                                  for e in c.get("env", [])) for c in containers)
    assert by_type["aws:s3/bucket:Bucket"] == 4 and by_type["aws:route53/healthCheck:HealthCheck"] == 4  # one per center
    assert by_type["kubernetes:apps/v1:Deployment"] == 4  # a prober per center
    assert by_type["kubernetes:apps/v1:StatefulSet"] == 1  # the loop, with a volume per replica for its state
    assert by_type["kubernetes:core/v1:ConfigMap"] == 4  # the stack's files in every center's cluster
    stack_config = next(r for r in resources if r.type == "kubernetes:core/v1:ConfigMap")
    assert f"Pulumi.{name}.yaml" in stack_config.inputs["data"] and "residency.yaml" in stack_config.inputs["data"]
    assert sum(len(v) for v in stack_config.inputs["data"].values()) < 1_000_000  # a ConfigMap holds at most 1 MiB
    keys = [(r.type, r.name) for r in resources]
    assert len(keys) == len(set(keys)), "duplicate names (the mocks do not catch them)"
    assert summary["policy_violations"] == []
    fleet = next(r for r in resources if r.type == "pulumi-python:dynamic:Resource")
    topo = load_stack(name, STACKS)
    assert fleet.inputs["edge_count"] == len(topo.edges) and fleet.inputs["record_count"] > 200


def test_regional_resources_use_their_centers_region(stack: tuple[str, dict[str, Any], list[Res], Path]) -> None:
    name, _, resources, _ = stack
    regions = {r.name: r.inputs["region"] for r in resources if r.type == "pulumi:providers:aws"}
    for center in load_stack(name, STACKS).centers:
        assert regions[f"{center.id}-aws"] == center.region
        mine = [r for r in resources if r.type.startswith("aws:") and r.name.startswith(center.id)]
        assert len(mine) == 6  # bucket, versioning, encryption, public-access block, health check, prober name
        for r in mine:
            assert r.provider is not None and r.provider.split("::")[-2] == f"{center.id}-aws", r.name


def test_buckets_are_tagged_versioned_encrypted_private(stack: tuple[str, dict[str, Any], list[Res], Path]) -> None:
    name, _, resources, _ = stack
    for center in load_stack(name, STACKS).centers:
        bucket = next(r for r in resources if r.name == f"{center.id}-devices")
        assert bucket.inputs["tags"]["globalaccel:center"] == center.id
        assert bucket.inputs["tags"]["globalaccel:residency-zone"] == center.region
        versioning = next(r for r in resources if r.name == f"{center.id}-devices-versioning")
        assert versioning.inputs["versioningConfiguration"]["status"] == "Enabled"
        sse = next(r for r in resources if r.name == f"{center.id}-devices-encryption")
        assert sse.inputs["rules"][0]["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "aws:kms"
        block = next(r for r in resources if r.name == f"{center.id}-devices-public-access")
        assert all(block.inputs[k] for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"))
    assert not [r for r in resources if "replication" in r.type.lower()]


def test_loop_policy_grants_nothing_beyond_its_zone(stack: tuple[str, dict[str, Any], list[Res], Path]) -> None:
    name, _, resources, _ = stack
    zone_id = next(r for r in resources if r.type == "aws:route53/zone:Zone")
    policy = json.loads(next(r for r in resources if r.type == "aws:iam/rolePolicy:RolePolicy").inputs["policy"])
    granted = {(a, res) for s in policy["Statement"] for a in s["Action"]
               for res in (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]])}
    assert all(s["Effect"] == "Allow" for s in policy["Statement"])
    resources_named = {res for _, res in granted}
    checks = {res for res in resources_named if res.startswith("arn:aws:route53:::healthcheck/")}
    assert len(checks) == 4 and not any("*" in c for c in checks)  # the centers' own checks, read to verify their ids
    # The zone's one CIDR collection (the loop fills it: cells routed by network), by the id Pulumi created it with.
    # (dev has no network database: no collection, no right to one.)
    collections = [r for r in resources if r.type == "aws:route53/cidrCollection:CidrCollection"]
    assert [c.inputs["name"] for c in collections] == (["globalaccel-prod"] if name == "prod" else [])
    cells = {res for res in resources_named if res.startswith("arn:aws:route53:::cidrcollection/")}
    assert len(cells) == len(collections) and not any("*" in c for c in cells)
    assert {a for a, res in granted if res in cells} == ({"route53:ChangeCidrCollection", "route53:ListCidrBlocks"} if cells else set())
    assert len(resources_named - checks - cells) == 2 and "arn:aws:route53:::change/*" in resources_named
    zone_arn = next(res for res in resources_named - checks - cells if res != "arn:aws:route53:::change/*")
    assert zone_arn.startswith("arn:aws:route53:::hostedzone/Z") and "*" not in zone_arn
    assert {a for a, _ in granted} == {"route53:ChangeResourceRecordSets", "route53:ListResourceRecordSets", "route53:GetChange",
                                       "route53:GetHealthCheck",
                                       *({"route53:ChangeCidrCollection", "route53:ListCidrBlocks"} if cells else ())}
    assert {a for a, res in granted if res in checks} == {"route53:GetHealthCheck"}
    assert zone_id is not None


def test_the_loop_is_started_with_its_cidr_collection(stack: tuple[str, dict[str, Any], list[Res], Path]) -> None:
    """The loop finds the collection by the id Pulumi created it with (its role may not list collections)."""
    name, _, resources, out = stack
    args = yaml.safe_load((out / "manifests" / "control-loop.yaml").read_text())["spec"]["template"]["spec"]["containers"][0]["args"]
    collections = [r for r in resources if r.type == "aws:route53/cidrCollection:CidrCollection"]
    if name == "prod":
        assert args[args.index("--cidr-collection") + 1] == f"{collections[0].name}-id"
    else:
        assert "--cidr-collection" not in args and not collections


def test_rendered_manifests_pass_schema_validation(stack: tuple[str, dict[str, Any], list[Res], Path]) -> None:
    """Round-trip each manifest through the kubernetes client's typed models: a misspelt or misplaced
    field is dropped by the model, so the round trip would differ."""
    _, _, _, out = stack
    api = ApiClient()
    files = sorted((out / "manifests").glob("*.yaml"))
    assert len(files) >= 20
    models = {"Deployment": "V1Deployment", "StatefulSet": "V1StatefulSet", "Service": "V1Service", "Namespace": "V1Namespace",
              "ServiceAccount": "V1ServiceAccount",
              "ConfigMap": "V1ConfigMap", "Secret": "V1Secret",
              "PodDisruptionBudget": "V1PodDisruptionBudget", "Role": "V1Role", "RoleBinding": "V1RoleBinding"}
    for path in files:
        manifest = yaml.safe_load(path.read_text())
        model = api._ApiClient__deserialize(manifest, models[manifest["kind"]])
        assert api.sanitize_for_serialization(model) == manifest, path.name
        if manifest["kind"] == "Deployment" and "prober" in path.name:
            selector = manifest["spec"]["template"]["spec"]["nodeSelector"]["topology.kubernetes.io/region"]
            assert path.name.startswith(next(c for c in ("us-east-1", "eu-central-1", "me-central-1", "ap-southeast-1") if c == selector))


Stack = tuple[str, dict[str, Any], list[Res], Path]


def test_policy_validators_reject_each_seeded_violation_and_accept_the_clean_stack(stack: Stack) -> None:
    name, _, resources, _ = stack
    topo = load_stack(name, STACKS)
    assert validate(resources, topo) == []
    bucket = next(r for r in resources if r.name == "eu-central-1-devices")
    moved = [replace(r, provider=r.provider.replace("eu-central-1-aws", "us-east-1-aws")) if r is bucket and r.provider else r
             for r in resources]
    assert {v.kind for v in validate(moved, topo)} == {"data-store-region"}
    singapore = next(r for r in resources if r.name == "ap-southeast-1-devices").inputs["bucket"]
    replication = Res("aws:s3/bucketReplicationConfig:BucketReplicationConfig", "eu-to-singapore",
                      {"bucket": bucket.inputs["bucket"], "rules": [{"destination": {"bucket": f"arn:aws:s3:::{singapore}"}}]}, None)
    assert [v.kind for v in validate([*resources, replication], topo)] == ["no-cross-region-replication"]
    stray = Res("aws:route53/record:Record", "stray", {"name": "www.example.org", "type": "A", "zoneId": "Z1"}, None)
    assert [v.kind for v in validate([*resources, stray], topo)] == ["records-in-controller-zones"]
    # The fleet answers Germany through an edge in a never-transit jurisdiction of the EEA rule, and through a
    # Singapore edge's address for ap-southeast-1 (a center the EEA rule forbids).
    fleet = next(r for r in resources if r.type == "pulumi-python:dynamic:Resource" and isinstance(r.inputs.get("records"), dict))
    records = dict(fleet.inputs["records"])
    # Germany's chosen path: its weighted records (under de.cc when its rule allows one center, else its chain's leaf).
    leaf = next(k for k in records if records[k].get("weight") is not None and k.split(".")[0] in ("de", "de-eu-central-1"))
    never = topo.residency.rule_for("DE").never_transit  # BY, RU, ...: the EEA rule's never-transit jurisdictions
    russian = next(e for e in topo.edges if e.country in never).address_for("eu-central-1")
    singapore = next(e for e in topo.edges if e.country in ("SG", "JP")).address_for("ap-southeast-1")
    records[leaf] = {**records[leaf], "values": [russian, singapore]}
    tampered = [replace(r, inputs={**r.inputs, "records": records}) if r is fleet else r for r in resources]
    found = [v for v in validate(tampered, topo) if v.kind == "fleet-answer-residency"]
    assert len(found) == 2 and all(v.country == "DE" for v in found), found
    assert "never_transit" in found[0].evidence and "ap-southeast-1" in found[1].evidence


def test_bad_stack_config_fails_naming_file_and_key_before_any_resource(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    for item in ("__main__.py", "Pulumi.yaml"):
        shutil.copy(ROOT / item, project / item)
    for folder in ("modules", "stacks"):
        shutil.copytree(ROOT / folder, project / folder)
    config = project / "stacks" / "Pulumi.dev.yaml"
    config.write_text(config.read_text().replace("lat: 50.1109", "lat: fifty"))
    script = "\n".join([
        "import sys", "from pathlib import Path", "from globalaccel.iac import preview as p", "from globalaccel.errors import ConfigError",
        "mocks = []", "_orig = p.RecordingMocks.new_resource",
        "def spy(self, args):", "    mocks.append(args.name)", "    return _orig(self, args)",
        "p.RecordingMocks.new_resource = spy",
        "try:", "    p.run_program('dev', Path(sys.argv[1]))",
        "except ConfigError as exc:", "    print('CONFIG', exc, 'REGISTERED', len(mocks))",
    ])
    result = subprocess.run([sys.executable, "-c", script, str(project)], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            check=False)
    assert "CONFIG" in result.stdout, result.stdout + result.stderr
    assert "Pulumi.dev.yaml:" in result.stdout and "config.global-accel:centers[1].lat: must be a number" in result.stdout
    assert result.stdout.strip().endswith("REGISTERED 0")


def test_edge_fleet_provider_creates_the_fleet_in_budgeted_batches(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """The dynamic provider's create/update/delete against a real moto server (boto3 reaches it through
    AWS_ENDPOINT_URL_ROUTE_53): prod's whole fleet in ceil(values/500) change requests, its failover legs
    carrying the ids of the centers' health checks (created in moto, as the program's HealthChecks would be)."""
    import math
    import uuid

    from globalaccel.dns.health_checks import ensure_center_checks
    from modules.edge_fleet import EdgeRecordsProvider, _records_from
    from tests.services import moto_server, route53_client

    name, _, resources, _ = stack
    fleet = next(r for r in resources if r.type == "pulumi-python:dynamic:Resource")
    with moto_server() as url:
        for key, value in {"AWS_ENDPOINT_URL_ROUTE_53": url, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                           "AWS_DEFAULT_REGION": "us-east-1"}.items():
            monkeypatch.setenv(key, value)
        client = route53_client(url)
        zone_id = client.create_hosted_zone(Name=fleet.inputs["zone"], CallerReference=str(uuid.uuid4()))["HostedZone"]["Id"]
        props = {k: v for k, v in fleet.inputs.items() if k != "__provider"} | {"zone_id": zone_id.split("/")[-1],
                                                                                "requests_per_s": 100, "tokens_per_s": 100_000}
        assert set(props["health_checks"]) == set(load_stack(name, STACKS).center_ids)  # the program passes every center's
        topology = load_stack(name, STACKS)
        checks = ensure_center_checks(client, name, topology.centers, 443)
        provider = EdgeRecordsProvider()
        with pytest.raises(ValueError, match="no health check"):
            provider.create({**props, "health_checks": {}})
        props["health_checks"] = checks
        created = provider.create(props)
        outs = created.outs
        assert outs is not None
        values = sum(max(1, len(r.values)) for r in _records_from(props)) + 1  # and the ownership claim, in the last batch
        assert outs["change_requests"] == math.ceil(values / 500)
        listed = client.list_resource_record_sets(HostedZoneId=zone_id, MaxItems="300")
        assert listed["ResourceRecordSets"]
        everything = [r for page in client.get_paginator("list_resource_record_sets").paginate(HostedZoneId=zone_id)
                      for r in page["ResourceRecordSets"]]
        legs = [r for r in everything if r.get("Failover")]
        if len(topology.centers) > 1:
            assert legs and {r.get("HealthCheckId") for r in legs} - {None} <= set(checks.values())
            assert all(r["AliasTarget"]["EvaluateTargetHealth"] for r in legs)
        assert not provider.diff(created.id, outs, props).changes
        provider.delete(created.id, outs)  # by default the records stay: they answer users
        assert len(client.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]) > 2
        provider.delete(created.id, {**outs, "delete_records": True})
        left = client.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
        assert {r["Type"] for r in left} == {"NS", "SOA"}, name  # only the zone's own records remain
