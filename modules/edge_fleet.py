"""EdgeFleet: every edge's DNS records as ONE Pulumi resource, with a lifecycle that cannot hurt users.

Why a dynamic resource driving globalaccel's batched reconciler, and not `aws.route53.Record` per
record nor `aws.route53.RecordsExclusive`: one `Record` per record means 1,640 resources, each its own
serialised Route 53 call and INSYNC wait (Pulumi's own measurement: 3,222 resources took 58 minutes on
a checkpointing backend). `RecordsExclusive` would need the tree split across shard zones and cannot
express our ownership rule (never touch records we do not own) or our API budget. The dynamic resource
opens the loop's own Route 53 backend (`globalaccel.dns.factory`) and runs its one `sync`: the full prod
fleet in 4 change requests (BENCHMARKS.md).

Ownership, explicitly: Pulumi creates the zone and **seeds** it; the control loop owns the answers.
- create: seeds the zone only when it carries no ownership claim yet (the claim is written last, so a
  half-done seed is finished by the next attempt); a zone the loop already serves (a renamed or
  re-parented resource, an imported zone) is adopted as it is, never overwritten;
- update: never writes (the live table is the loop's; `pulumi up` in the middle of an incident must
  not push the table computed from files over the one the loop published);
- read (`pulumi refresh`): reports the live owned records as a hash and a readable summary, so drift
  (a record deleted by hand) shows;
- delete: leaves every live record in place unless the stack sets `iac.deleteRecordsOnDestroy`.
State keys records by name, type and set identifier, so a one-edge change previews as a few keys.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, ResourceProvider, UpdateResult


def record_key(name: str, rtype: str, set_id: str | None) -> str:
    return f"{name} {rtype} {set_id or '-'}"


def encode_records(records: list[Any]) -> dict[str, dict[str, Any]]:
    """globalaccel.dns.records.Record list -> the keyed map kept in state (one small entry per record)."""
    out: dict[str, dict[str, Any]] = {}
    for r in records:
        entry: dict[str, Any] = {"values": list(r.values), "ttl": r.ttl}
        if r.weight is not None:
            entry["weight"] = r.weight
        if r.geo is not None:
            entry["geo"] = {"continent": r.geo.continent, "country": r.geo.country}
        if r.alias is not None:
            entry["alias"] = r.alias
        if r.failover is not None:  # a center's failover leg: its check is named by center, mapped to an id at sync
            entry["failover"] = r.failover
            entry["health_check"] = r.health_check
            entry["evaluate_target_health"] = r.evaluate_target_health
        out[record_key(r.name, r.type, r.set_id)] = entry
    return out


def _records_from(props: dict[str, Any]) -> list[Any]:
    from globalaccel.dns.records import Geo, Record

    out = []
    for key, r in sorted(props["records"].items()):
        name, rtype, set_id = key.split(" ")
        geo = Geo(**r["geo"]) if r.get("geo") else None
        # Numbers cross the engine as protobuf doubles (60 arrives as 60.0); Route 53 takes integers only.
        ttl = None if r.get("ttl") is None else int(r["ttl"])
        weight = None if r.get("weight") is None else int(r["weight"])
        out.append(Record(name, rtype, tuple(r["values"]), ttl, None if set_id == "-" else set_id, weight, geo, r.get("alias"),
                          health_check=r.get("health_check"), evaluate_target_health=bool(r.get("evaluate_target_health", False)),
                          failover=r.get("failover")))
    return out


def _zone(props: dict[str, Any]) -> Any:
    from globalaccel.dns.backend import OwnedZone
    from globalaccel.dns.factory import open_route53
    from globalaccel.dns.route53_compile import Route53Layout
    from globalaccel.settings import BackendSettings

    layout = Route53Layout(props["zone"], props["service"], props["stack"])
    checks = tuple(f"{center}={check}" for center, check in sorted((props.get("health_checks") or {}).items()))
    # Route 53's own quota unless the inputs say otherwise (a moto server in tests has none).
    defaults = BackendSettings()
    settings = BackendSettings(kind="route53", zone_id=props["zone_id"], endpoint_url=props.get("endpoint_url") or None,
                               health_checks=checks, requests_per_s=float(props.get("requests_per_s") or defaults.requests_per_s),
                               tokens_per_s=float(props.get("tokens_per_s") or defaults.tokens_per_s))
    return OwnedZone(open_route53(layout, settings))  # the loop's own factory


def live_summary(zone: Any) -> dict[str, Any]:
    """The live records this stack owns, as a hash and counts a person can read in a preview."""
    live = zone.records()
    body = json.dumps(sorted(encode_records(live).items()), sort_keys=True, separators=(",", ":"))
    answers = [r for r in live if r.name.endswith(".cc." + zone.ownership.zone)]
    return {"live_hash": hashlib.sha256(body.encode()).hexdigest(), "live_records": len(live),
            "live_countries": len({r.name for r in answers}), "live_answers": len(answers)}


def _live_or_gone(props: dict[str, Any]) -> dict[str, Any] | None:
    """The live summary, or None when the hosted zone no longer exists."""
    from botocore.exceptions import ClientError

    try:
        return live_summary(_zone(props))
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "NoSuchHostedZone":
            return None
        raise


class EdgeRecordsProvider(ResourceProvider):
    def create(self, props: dict[str, Any]) -> CreateResult:
        from globalaccel.dns.backend import SyncDidNotConverge, sync

        zone = _zone(props)
        records = _records_from(props)
        unchecked = sorted({r.health_check for r in records if r.health_check} - set(props.get("health_checks") or {}))
        if unchecked:
            raise ValueError(f"failover records name center(s) {', '.join(unchecked)} with no health check among the inputs")
        # The ownership claim is written last: its presence means a seed completed (or the loop owns the
        # zone). A create that failed half-way left no claim, so the next attempt seeds what is missing.
        seeded = not any(r.key == zone.claim.key for r in zone.records())
        stats: dict[str, Any] = {"change_requests": 0, "change_tokens": 0}
        if seeded:
            # One sync: the reconciler orders the claim after every other record, so it travels in the last
            # change batch, and Route 53 applies a batch whole or not at all.
            report = sync(zone, records)
            if not report.converged:
                raise SyncDidNotConverge(f"Route 53 did not converge after {report.rounds} rounds")
            stats = {"change_requests": report.stats.requests, "change_tokens": report.stats.change_tokens}
        return CreateResult(id_=f"{props['zone_id']}/edges", outs={**props, **stats, "seeded": seeded, **live_summary(zone)})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        watched = ("records_hash", "health_checks", "zone_id", "delete_records", "zone", "service", "stack")
        changed = any(olds.get(k) != news.get(k) for k in watched)
        return DiffResult(changes=changed, replaces=["zone_id"] if olds.get("zone_id") != news.get("zone_id") else [],
                          delete_before_replace=False)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        # The loop owns the answers: state follows the new inputs, the zone is not written.
        live = _live_or_gone(news)
        return UpdateResult(outs={**news, "change_requests": 0, "change_tokens": 0, "seeded": olds.get("seeded", False), **(live or {})})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        live = _live_or_gone(props)
        if live is None:
            return ReadResult(id_=None, outs={})  # the zone is gone: so is this resource (refresh drops it)
        return ReadResult(id_=id_, outs={**props, **live})

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        if not props.get("delete_records"):
            return  # the records keep answering users; the operator removes them deliberately, if ever
        if _live_or_gone(props) is None:
            return  # the zone, and every record in it, is already gone
        from globalaccel.dns.backend import SyncDidNotConverge, sync

        report = sync(_zone(props), [], release=True)  # only records this stack owns, and its claim
        if not report.converged:
            raise SyncDidNotConverge(f"Route 53 did not converge after {report.rounds} rounds")


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
    health_checks: dict[str, pulumi.Input[str]]  # center -> its Route 53 health check id (the failover legs')
    protect: bool = True
    delete_records: bool = False


class EdgeFleet(pulumi.ComponentResource):
    def __init__(self, name: str, args: EdgeFleetArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("globalaccel:index:EdgeFleet", name, None, opts)
        encoded = encode_records(args.records)
        digest = hashlib.sha256(json.dumps(sorted(encoded.items()), sort_keys=True, separators=(",", ":")).encode()).hexdigest()
        self.records = EdgeRecords(f"{name}-records", {
            "zone": args.zone, "service": args.service, "stack": args.stack, "zone_id": args.zone_id, "records": encoded,
            "health_checks": args.health_checks,
            "records_hash": digest, "record_count": len(args.records), "edge_count": args.edges, "delete_records": args.delete_records,
        }, opts=pulumi.ResourceOptions(parent=self, protect=args.protect))
        self.register_outputs({"records": len(args.records), "edges": args.edges})
