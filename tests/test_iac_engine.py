"""The Pulumi program's parts run the way the engine runs them, beyond the SDK's mocks.

- The edge fleet's dynamic provider is served by the SDK's own host (`python -m pulumi.dynamic`, what
  the engine starts) and driven over gRPC with the SDK's `provider_pb2` messages, the provider passed
  in `__provider` exactly as the engine stores it (`serialize_provider`), against a real moto server.
- The policy pack is served by pulumi-policy itself (`policy/__main__.py` started as the engine starts
  it) and asked over gRPC (`analyzer_pb2`), with the resources the program registers.
- Every rendered Kubernetes manifest is validated against the Kubernetes schemas (kubernetes-validate,
  offline); the IAM documents are linted with parliament.
The program's resources come from the SDK's mocks (no Pulumi CLI can run here): that part is a mock.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from google.protobuf import struct_pb2
from pulumi.dynamic.dynamic import serialize_provider
from pulumi.runtime import rpc
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc, provider_pb2, provider_pb2_grpc

from globalaccel.iac.preview import run_program, write_manifests
from modules.control_plane import loop_policy, trust_policy
from modules.edge_fleet import EdgeRecordsProvider, encode_records
from tests.conftest import ROOT
from tests.services import FaultProxy, moto_server, route53_client

AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def _struct(props: dict[str, Any]) -> struct_pb2.Struct:
    return asyncio.run(rpc.serialize_properties(props, {}))


def _plain(struct: struct_pb2.Struct) -> dict[str, Any]:
    out: dict[str, Any] = rpc.deserialize_properties(struct)
    return out


def _serve(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], grpc.Channel]:
    """Start a plugin as the engine does: it prints its port on the first line, then serves gRPC."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    line = proc.stdout.readline().decode().strip()
    if not line.isdigit():
        proc.kill()
        raise AssertionError(f"{cmd} did not print a port: {line!r} {proc.stderr.read().decode()[-3000:] if proc.stderr else ''}")
    channel = grpc.insecure_channel(f"127.0.0.1:{line}")
    grpc.channel_ready_future(channel).result(timeout=30)
    return proc, channel


@pytest.fixture(scope="module")
def dev_resources() -> list[Any]:
    return run_program("dev", ROOT)


# ---- the dynamic provider through the engine's host ------------------------------------------------


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[provider_pb2_grpc.ResourceProviderStub, str]]:
    with moto_server() as url:
        env = {**os.environ, **AWS_ENV, "AWS_ENDPOINT_URL_ROUTE_53": url, "PYTHONPATH": str(ROOT)}
        for key, value in {**AWS_ENV, "AWS_ENDPOINT_URL_ROUTE_53": url}.items():
            monkeypatch.setenv(key, value)
        proc, channel = _serve([sys.executable, "-m", "pulumi.dynamic", "127.0.0.1:1"], ROOT, env)
        try:
            yield provider_pb2_grpc.ResourceProviderStub(channel), url
        finally:
            channel.close()
            proc.kill()
            proc.wait(10)


def _fleet_props(resources: list[Any], zone_id: str, client: Any) -> dict[str, Any]:
    """The fleet's inputs as the engine passes them, the centers' health checks created in moto (the
    program's HealthCheck resources would be; their ids are unknown under mocks)."""
    from globalaccel.dns.health_checks import ensure_center_checks
    from globalaccel.topology import load_stack
    from tests.conftest import STACKS

    fleet = next(r for r in resources if r.type == "pulumi-python:dynamic:Resource")
    props = {k: v for k, v in fleet.inputs.items() if k != "__provider"}
    dev = load_stack("dev", STACKS)
    checks = ensure_center_checks(client, dev.stack, dev.centers, 443)
    # moto has no API quota: the test gives the fleet a budget that does not wait on one
    return {**props, "zone_id": zone_id, "health_checks": checks, "requests_per_s": 100, "tokens_per_s": 100_000,
            "__provider": serialize_provider(EdgeRecordsProvider())}


def _owned(client: Any, zone_id: str) -> dict[tuple[str, str, str], Any]:
    records: dict[tuple[str, str, str], Any] = {}
    kwargs: dict[str, Any] = {"HostedZoneId": zone_id}
    while True:
        page = client.list_resource_record_sets(**kwargs)
        for r in page["ResourceRecordSets"]:
            if r["Type"] in ("A", "TXT"):
                records[(r["Name"], r["Type"], r.get("SetIdentifier", ""))] = r
        if not page.get("IsTruncated"):
            return records
        kwargs = {"HostedZoneId": zone_id, "StartRecordName": page["NextRecordName"], "StartRecordType": page["NextRecordType"]}
        if page.get("NextRecordIdentifier"):
            kwargs["StartRecordIdentifier"] = page["NextRecordIdentifier"]


def test_fleet_lifecycle_through_the_engines_host(host: tuple[provider_pb2_grpc.ResourceProviderStub, str],
                                                   dev_resources: list[Any]) -> None:
    """Create seeds; diff of the same inputs is none; update never overwrites the live table; read shows
    a record deleted by hand; a renamed resource adopts the zone and deleting the old one leaves every
    record; only an explicit delete_records removes them."""
    stub, url = host
    client = route53_client(url)
    zone_id = client.create_hosted_zone(Name="dev.accel.example.net", CallerReference=str(uuid.uuid4()))["HostedZone"]["Id"]
    zone_id = zone_id.split("/")[-1]
    props = _fleet_props(dev_resources, zone_id, client)
    urn = "urn:pulumi:dev::global-accel::pulumi-python:dynamic:Resource::edges-records"
    created = stub.Create(provider_pb2.CreateRequest(urn=urn, properties=_struct(props)))
    outs = _plain(created.properties)
    assert outs["seeded"] is True and outs["change_requests"] >= 1
    live = _owned(client, zone_id)
    assert len(live) == props["record_count"] + 1  # every record, and the ownership claim
    assert not [k for k in live if k[1] == "A" and not k[0].endswith("dev.accel.example.net.")]

    same = stub.Diff(provider_pb2.DiffRequest(id=created.id, urn=urn, olds=_struct(outs), news=_struct(props)))
    assert same.changes == provider_pb2.DiffResponse.DIFF_NONE

    # A new table from the files (one record's weight changed): the diff says so, the update writes nothing.
    changed = json.loads(json.dumps(props["records"]))
    key = next(k for k, v in changed.items() if "weight" in v)
    changed[key]["weight"] = 1 if changed[key]["weight"] != 1 else 2
    news = {**props, "records": changed, "records_hash": "x" + props["records_hash"][1:]}
    diff = stub.Diff(provider_pb2.DiffRequest(id=created.id, urn=urn, olds=_struct(outs), news=_struct(news)))
    assert diff.changes == provider_pb2.DiffResponse.DIFF_SOME and not diff.replaces
    updated = _plain(stub.Update(provider_pb2.UpdateRequest(id=created.id, urn=urn, olds=_struct(outs), news=_struct(news))).properties)
    assert updated["change_requests"] == 0 and _owned(client, zone_id) == live  # the loop's live table is untouched

    # Someone deletes a record by hand: refresh (Read) shows it.
    name, rtype, set_id = next(k for k in live if k[1] == "A" and ".cc." in k[0])
    victim = live[(name, rtype, set_id)]
    client.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": [{"Action": "DELETE", "ResourceRecordSet": victim}]})
    read = _plain(stub.Read(provider_pb2.ReadRequest(id=created.id, urn=urn, properties=_struct(updated))).properties)
    assert read["live_records"] == updated["live_records"] - 1 and read["live_hash"] != updated["live_hash"]
    client.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": [{"Action": "CREATE", "ResourceRecordSet": victim}]})

    # Renamed without an alias: the engine creates the new resource, then deletes the old one.
    renamed = "urn:pulumi:dev::global-accel::pulumi-python:dynamic:Resource::fleet-records"
    adopted = _plain(stub.Create(provider_pb2.CreateRequest(urn=renamed, properties=_struct(props))).properties)
    assert adopted["seeded"] is False and adopted["change_requests"] == 0
    stub.Delete(provider_pb2.DeleteRequest(id=created.id, urn=urn, properties=_struct(outs)))
    assert _owned(client, zone_id) == live  # every live record in place

    # Only an explicit request removes the records (and the claim).
    stub.Delete(provider_pb2.DeleteRequest(id=created.id, urn=renamed, properties=_struct({**adopted, "delete_records": True})))
    assert _owned(client, zone_id) == {}


def test_a_create_that_fails_half_way_is_finished_by_the_next(host: tuple[provider_pb2_grpc.ResourceProviderStub, str],
                                                              dev_resources: list[Any]) -> None:
    """AWS rejects the second change batch (InvalidChangeBatch, behind a fault proxy): the create fails
    with the zone unclaimed, and the engine's next attempt seeds what is missing, then claims it."""
    stub, url = host
    client = route53_client(url)
    zone_id = client.create_hosted_zone(Name="dev.accel.example.net", CallerReference=str(uuid.uuid4()))["HostedZone"]["Id"]
    zone_id = zone_id.split("/")[-1]
    props = _fleet_props(dev_resources, zone_id, client)
    records = json.loads(json.dumps(props["records"]))
    # Enough records for several batches (TTL-only copies of the leaves, still inside the zone).
    for i in range(400):
        records[f"x{i}.cc.dev.accel.example.net. A -"] = {"values": ["198.18.0.1"], "ttl": 60}
    props = {**props, "records": records, "record_count": len(records)}
    urn = "urn:pulumi:dev::global-accel::pulumi-python:dynamic:Resource::edges-records"
    with FaultProxy(url, [None, "reject"]) as proxy:
        with pytest.raises(grpc.RpcError) as caught:
            stub.Create(provider_pb2.CreateRequest(urn=urn, properties=_struct({**props, "endpoint_url": proxy.url})))
        assert "InvalidChangeBatch" in str(caught.value.details())
        assert proxy.seen[:2] == [None, "reject"]
    partial = _owned(client, zone_id)
    assert 0 < len(partial) < len(records) and not [k for k in partial if k[1] == "TXT"]  # half there, unclaimed
    outs = _plain(stub.Create(provider_pb2.CreateRequest(urn=urn, properties=_struct(props))).properties)  # the engine retries
    assert outs["seeded"] is True
    assert len(_owned(client, zone_id)) == len(records) + 1


# ---- the policy pack through pulumi-policy's analyzer ----------------------------------------------


def _analyzer_resources(resources: list[Any], stack: str) -> list[analyzer_pb2.AnalyzerResource]:
    providers = {r.name: r for r in resources if r.type.startswith("pulumi:providers:")}
    out = []
    for r in resources:
        urn = f"urn:pulumi:{stack}::global-accel::{r.type}::{r.name}"
        provider = None
        if r.provider:
            name = r.provider.split("::")[-2]
            p = providers[name]
            provider = analyzer_pb2.AnalyzerProviderResource(type=p.type, properties=_struct(p.inputs), name=name,
                                                             urn=f"urn:pulumi:{stack}::global-accel::{p.type}::{name}")
        inputs = {k: v for k, v in r.inputs.items() if k != "__provider"}
        out.append(analyzer_pb2.AnalyzerResource(type=r.type, properties=_struct(inputs), urn=urn, name=r.name, provider=provider))
    return out


@pytest.fixture(scope="module")
def analyzer() -> Iterator[analyzer_pb2_grpc.AnalyzerStub]:
    proc, channel = _serve([sys.executable, "__main__.py", "127.0.0.1:1"], ROOT / "policy", dict(os.environ))
    try:
        yield analyzer_pb2_grpc.AnalyzerStub(channel)
    finally:
        channel.close()
        proc.kill()
        proc.wait(10)


def test_policy_pack_served_by_pulumi_policy(analyzer: analyzer_pb2_grpc.AnalyzerStub, dev_resources: list[Any]) -> None:
    from google.protobuf import empty_pb2

    info = analyzer.GetAnalyzerInfo(empty_pb2.Empty())
    assert info.name == "globalaccel-residency" and [p.name for p in info.policies] == ["globalaccel-residency"]

    def messages(resources: list[Any]) -> list[str]:
        response = analyzer.AnalyzeStack(analyzer_pb2.AnalyzeStackRequest(resources=_analyzer_resources(resources, "dev")))
        return [d.message for d in response.diagnostics]

    assert messages(dev_resources) == []
    import dataclasses

    bucket = next(r for r in dev_resources if r.type == "aws:s3/bucket:Bucket" and r.inputs["tags"]["globalaccel:center"] == "eu-central-1")
    other = next(r.provider for r in dev_resources if r.type == "aws:s3/bucket:Bucket" and r.provider != bucket.provider)
    moved = [dataclasses.replace(r, provider=other) if r is bucket else r for r in dev_resources]
    assert any("[data-store-region]" in m and bucket.name in m for m in messages(moved))
    fleet = next(r for r in dev_resources if r.type == "pulumi-python:dynamic:Resource")
    stray_records = {**fleet.inputs["records"], "www.example.org. A -": {"values": ["192.0.2.1"], "ttl": 60}}
    strayed = [dataclasses.replace(r, inputs={**r.inputs, "records": stray_records}) if r is fleet else r for r in dev_resources]
    assert any("[records-in-controller-zones]" in m and "www.example.org" in m for m in messages(strayed))
    replication = dataclasses.replace(bucket, type="aws:s3/bucketReplicationConfig:BucketReplicationConfig", name="eu-to-sg",
                                      inputs={"bucket": bucket.inputs["bucket"], "rules": [{"destination": {
                                          "bucket": "arn:aws:s3:::globalaccel-dev-ap-southeast-1-devices"}}]})
    assert any("[no-cross-region-replication]" in m for m in messages([*dev_resources, replication]))


# ---- manifests and IAM against the real schemas and linters -------------------------------------------


def test_every_manifest_validates_and_is_locked_down(dev_resources: list[Any], tmp_path: Path) -> None:
    import kubernetes_validate

    paths = write_manifests(dev_resources, tmp_path)
    assert len(paths) >= 15
    kinds = set()
    for path in paths:
        for doc in yaml.safe_load_all(path.read_text()):
            kubernetes_validate.validate(doc, "1.31", strict=True)  # raises on any schema error
            kinds.add(doc["kind"])
            spec = (doc.get("spec") or {}).get("template", {}).get("spec")
            if not spec:
                continue
            assert spec["securityContext"]["runAsNonRoot"] is True, path.name
            for container in spec["containers"]:
                sc = container["securityContext"]
                assert sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"] and sc["capabilities"]["drop"] == ["ALL"]
                assert container["livenessProbe"]["httpGet"]["path"] == "/healthz" and container["readinessProbe"]
                assert container["resources"]["limits"]["memory"]
    assert {"StatefulSet", "Deployment", "PodDisruptionBudget", "ConfigMap"} <= kinds
    for path in paths:
        doc = yaml.safe_load(path.read_text())
        if doc["kind"] == "PodDisruptionBudget":
            assert doc["spec"].get("minAvailable") == 1  # with two replicas: a drain never takes the last one


def test_iam_documents_pass_parliament() -> None:
    from parliament import analyze_policy_string

    def findings(document: str) -> list[str]:
        # parliament reads every document as an identity policy: a trust policy has no Resource by
        # definition (MALFORMED "neither Resource nor NotResource"), and it does not list EKS OIDC issuers
        # as federation sources. Those two are its limits, not findings; everything else counts.
        return [f.issue for f in analyze_policy_string(document).findings
                if not (f.issue == "MALFORMED" and "neither Resource" in str(f.detail))
                and not (f.issue == "UNKNOWN_FEDERATION_SOURCE" and ":oidc-provider/oidc.eks." in str(f.detail))]

    assert findings(loop_policy("Z0123456789ABC", ("0b1e3c49-9a29-4b5c-9a3e-2f4a6b7c8d9e",), "c8c02a84-7d6f-4c5e-9a3b-1f2e3d4c5b6a")) == []
    oidc = "arn:aws:iam::123456789012:oidc-provider/oidc.eks.eu-central-1.amazonaws.com/id/ABCDEF0123456789"
    trust = json.loads(trust_policy("123456789012", oidc, "globalaccel", "globalaccel-loop"))
    condition = trust["Statement"][0]["Condition"]["StringEquals"]
    issuer = "oidc.eks.eu-central-1.amazonaws.com/id/ABCDEF0123456789"
    assert condition == {f"{issuer}:sub": "system:serviceaccount:globalaccel:globalaccel-loop", f"{issuer}:aud": "sts.amazonaws.com"}
    assert findings(trust_policy("123456789012", None, "globalaccel", "globalaccel-loop")) == []
    assert findings(json.dumps(trust)) == []
    # The principal the program used to write is malformed to AWS, and parliament says so.
    bare = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::root"},
                                                               "Action": "sts:AssumeRole"}]})
    assert findings(bare) == ["UNKNOWN_PRINCIPAL"]


def test_encoded_fleet_state_is_keyed_so_one_edge_changes_few_keys(dev_resources: list[Any]) -> None:
    fleet = next(r for r in dev_resources if r.type == "pulumi-python:dynamic:Resource")
    records = fleet.inputs["records"]
    assert isinstance(records, dict) and all(len(k.split(" ")) == 3 for k in records)
    assert encode_records([]) == {}
