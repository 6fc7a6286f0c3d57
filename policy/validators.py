"""CrossGuard validators over globalaccel.residency, importable and testable without the policy runtime
(constructing a PolicyPack blocks; policy/__main__.py does that and only that).

Each validator takes the stack's resources (type, name, inputs, provider) and returns violations.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from globalaccel.findings import Finding
from globalaccel.topology import Topology


class Resource(Protocol):
    type: str
    name: str
    inputs: dict[str, Any]
    provider: str | None


def _provider_regions(resources: Sequence[Resource]) -> dict[str, str]:
    return {r.name: str(r.inputs.get("region")) for r in resources if r.type == "pulumi:providers:aws"}


def _provider_name(reference: str | None) -> str | None:
    """A provider's name, from its name or from the reference the engine passes to programs
    (`<provider URN>::<provider id>`, whose second-to-last segment is the name)."""
    if not reference:
        return None
    return reference.split("::")[-2] if "::" in reference else reference


def data_stores_in_allowed_regions(resources: Sequence[Resource], topology: Topology) -> list[Finding]:
    """Every bucket is created through its center's regional provider and tagged with that center and
    its residency zone; a bucket on the default provider has no provable region."""
    regions = _provider_regions(resources)
    out = []
    for r in resources:
        if r.type != "aws:s3/bucket:Bucket":
            continue
        tags = r.inputs.get("tags") or {}
        center = topology.center_by_id.get(str(tags.get("globalaccel:center")))
        region = regions.get(_provider_name(r.provider) or "")
        if center is None:
            out.append(Finding("data-store-region", r.name, "bucket not tagged globalaccel:center with a center of the stack"))
        elif region != center.region:
            out.append(Finding("data-store-region", r.name, f"created in {region or 'the default provider region'}, "
                                       f"but its center {center.id} is in {center.region}"))
        elif tags.get("globalaccel:residency-zone") != center.region:
            out.append(Finding("data-store-region", r.name, "residency-zone tag does not name its center's region"))
    return out


def no_replication_out_of_region(resources: Sequence[Resource], topology: Topology) -> list[Finding]:
    """Replication only to a bucket of a center that every country the source may hold allows."""
    buckets = {str(r.inputs.get("bucket") or r.name): r for r in resources if r.type == "aws:s3/bucket:Bucket"}
    out = []
    for r in resources:
        if r.type != "aws:s3/bucketReplicationConfig:BucketReplicationConfig":
            continue
        source = buckets.get(str(r.inputs.get("bucket")))
        for rule in r.inputs.get("rules") or []:
            target_name = str((rule.get("destination") or {}).get("bucket", "")).split(":")[-1]
            target = buckets.get(target_name)
            src_center = str(((source.inputs.get("tags") if source else None) or {}).get("globalaccel:center"))
            dst_center = str(((target.inputs.get("tags") if target else None) or {}).get("globalaccel:center"))
            if dst_center not in topology.center_by_id:
                out.append(Finding("no-cross-region-replication", r.name,
                                           f"replicates to {target_name}, not a center's data store"))
                continue
            refused = [c for c in topology.countries
                       if topology.residency.allows(c, src_center) and not topology.residency.allows(c, dst_center)]
            if refused:
                out.append(Finding("no-cross-region-replication", r.name, f"replicates {src_center} data to {dst_center}, "
                                           f"which the rules of {len(refused)} countries forbid (e.g. {', '.join(refused[:5])})"))
    return out


def records_only_in_controller_zones(resources: Sequence[Resource], topology: Topology) -> list[Finding]:
    """Route 53 records only in the controller's zone, or its NS delegation in the parent."""
    zone = topology.zone.rstrip(".")
    out = []
    for r in resources:
        if r.type != "aws:route53/record:Record":
            continue
        name = str(r.inputs.get("name", "")).rstrip(".")
        if r.inputs.get("type") == "NS" and name == zone:
            continue  # the delegation from the parent zone
        if not (name == zone or name.endswith("." + zone)):
            out.append(Finding("records-in-controller-zones", r.name, f"record {name!r} is outside {zone}"))
    return out


def fleet_records_in_controller_zone(resources: Sequence[Resource], topology: Topology) -> list[Finding]:
    """The edge fleet's records (one dynamic resource, keyed `name type set-id`) stay inside the controller's zone."""
    zone = topology.zone.rstrip(".")
    out = []
    for r in resources:
        records = r.inputs.get("records")
        if r.type != "pulumi-python:dynamic:Resource" or not isinstance(records, dict):
            continue
        for key in sorted(records):
            name = str(key).split(" ")[0].rstrip(".")
            if not (name == zone or name.endswith("." + zone)):
                out.append(Finding("records-in-controller-zones", r.name, f"fleet record {name!r} is outside {zone}"))
    return out


def fleet_answers_obey_residency(resources: Sequence[Resource], topology: Topology) -> list[Finding]:
    """Every address the fleet's country records answer names an edge and the center it forwards to
    (globalaccel.topology.Edge): both must be allowed for that country by the one residency
    implementation (the edge by jurisdiction and role, the center by the rule)."""
    suffix = f".cc.{topology.zone.rstrip('.')}."
    residency, paths = topology.residency, topology.path_by_address
    out = []
    for r in resources:
        records = r.inputs.get("records")
        if r.type != "pulumi-python:dynamic:Resource" or not isinstance(records, dict):
            continue
        for key, entry in sorted(records.items()):
            name = str(key).split(" ")[0]
            if not name.endswith(suffix) or not isinstance(entry, dict):
                continue
            # <cc>.cc, <cc>-<center>.cc (a failover leg's path), <cc>-fallback-<n>.cc: ISO codes hold no '-'.
            country = name[: -len(suffix)].split("-")[0].upper()
            for address in entry.get("values") or []:
                path = paths.get(str(address))
                if path is None:
                    out.append(Finding("fleet-answer-residency", r.name, f"{country} answered {address}, no edge's address", country))
                    continue
                edge, center = path
                why = residency.edge_violation(country, edge.country, edge.role)
                if not residency.allows(country, center):
                    why = f"{edge.id} forwards to {center}, which rule {residency.rule_for(country).name!r} forbids"
                if why is not None:
                    out.append(Finding("fleet-answer-residency", r.name, f"{country} answered {address}: {why}", country))
    return out


VALIDATORS = (data_stores_in_allowed_regions, no_replication_out_of_region, records_only_in_controller_zones,
              fleet_records_in_controller_zone, fleet_answers_obey_residency)


def validate(resources: Sequence[Resource], topology: Topology) -> list[Finding]:
    return [v for check in VALIDATORS for v in check(resources, topology)]
