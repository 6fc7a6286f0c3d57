"""EdgeFleet: every edge's DNS records as ONE Pulumi resource.

Why a dynamic resource driving globalaccel's batched reconciler, and not `aws.route53.Record` per
record nor `aws.route53.RecordsExclusive`: one `Record` per record means 1,640 resources, each its own
serialised Route 53 call and INSYNC wait (Pulumi's own measurement: 3,222 resources took 58 minutes on
a checkpointing backend). `RecordsExclusive` batches per zone but would need the tree split across
shard zones of at most ~500 values to stay within one change batch, and it cannot express our
ownership rule (never touch records we do not own) or our API budget. The dynamic resource reuses the
reconciler the control loop uses: validated records, batches of 1,000 values with UPSERT counted twice,
token buckets, retries, re-plan on ambiguity: the full prod fleet in 4 change requests (BENCHMARKS.md).
Only the initial table is applied here; from then on the control loop owns the records, so the
resource ignores later drift by design (the loop is the source of truth for answers).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ResourceProvider, UpdateResult


def _records_from(props: dict[str, Any]) -> list[Any]:
    from globalaccel.dns.records import Geo, Record

    out = []
    for r in json.loads(props["records"]):
        geo = Geo(**r["geo"]) if r.get("geo") else None
        out.append(Record(r["name"], r["type"], tuple(r["values"]), r["ttl"], r["set_id"], r["weight"], geo, r["alias"]))
    return out


def _sync(props: dict[str, Any], records: list[Any], release: bool = False) -> dict[str, Any]:
    from globalaccel.dns.backend import SyncDidNotConverge, sync
    from globalaccel.dns.factory import open_route53
    from globalaccel.dns.route53_compile import Route53Layout
    from globalaccel.settings import BackendSettings

    layout = Route53Layout(props["zone"], props["service"], props["stack"])
    backend = open_route53(layout, BackendSettings(kind="route53", zone_id=props["zone_id"]))  # the loop's factory and sync
    report = sync(backend, records, release=release)
    if not report.converged:
        raise SyncDidNotConverge(f"Route 53 did not converge after {report.rounds} rounds")
    return {"change_requests": report.stats.requests, "change_tokens": report.stats.change_tokens}


class EdgeRecordsProvider(ResourceProvider):
    def create(self, props: dict[str, Any]) -> CreateResult:
        stats = _sync(props, _records_from(props))
        return CreateResult(id_=f"{props['zone_id']}/edges", outs={**props, **stats})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = olds.get("records_hash") != news.get("records_hash") or olds.get("zone_id") != news.get("zone_id")
        return DiffResult(changes=changed, replaces=["zone_id"] if olds.get("zone_id") != news.get("zone_id") else [])

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs={**news, **_sync(news, _records_from(news))})

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        _sync(props, [], release=True)  # removes only records the controller owns, and its claim on the zone


class EdgeRecords(pulumi.dynamic.Resource):
    def __init__(self, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(EdgeRecordsProvider(), name, props, opts)


@dataclass
class EdgeFleetArgs:
    zone: str
    service: str
    stack: str
    zone_id: pulumi.Input[str]
    records: list[Any]  # globalaccel.dns.records.Record, compiled from the routing table
    edges: int


class EdgeFleet(pulumi.ComponentResource):
    def __init__(self, name: str, args: EdgeFleetArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("globalaccel:index:EdgeFleet", name, None, opts)
        def geo(r: Any) -> dict[str, Any] | None:
            return None if r.geo is None else {"continent": r.geo.continent, "country": r.geo.country}

        encoded = json.dumps([{"name": r.name, "type": r.type, "values": list(r.values), "ttl": r.ttl, "set_id": r.set_id,
                               "weight": r.weight, "geo": geo(r), "alias": r.alias} for r in args.records], separators=(",", ":"))
        self.records = EdgeRecords(f"{name}-records", {
            "zone": args.zone, "service": args.service, "stack": args.stack, "zone_id": args.zone_id, "records": encoded,
            "records_hash": hashlib.sha256(encoded.encode()).hexdigest(), "record_count": len(args.records), "edge_count": args.edges,
        }, opts=pulumi.ResourceOptions(parent=self))
        self.register_outputs({"records": len(args.records), "edges": args.edges})
