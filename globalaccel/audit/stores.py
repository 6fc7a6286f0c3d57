"""Data stores: S3 buckets and Kubernetes volumes and stateful workloads, against the residency rules."""

from __future__ import annotations

from typing import Any

from globalaccel.findings import Finding
from globalaccel.topology import Topology


def check_buckets(s3: Any, topology: Topology) -> tuple[list[dict[str, Any]], list[Finding]]:
    """Every bucket the account has, listed with its region and classification (the `globalaccel:center`
    tag). An unclassified bucket is a finding: nobody can say whose data it may hold. A classified one
    must be in its center's region, replicated only to regions of centers allowed for every country it
    may hold, not public, encrypted, versioned."""
    region_center = {c.region: c.id for c in topology.centers}
    stores: list[dict[str, Any]] = []
    findings: list[Finding] = []
    for bucket in s3.list_buckets().get("Buckets", []):
        name = bucket["Name"]
        try:
            tags = {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=name).get("TagSet", [])}
        except s3.exceptions.ClientError:
            tags = {}
        center = tags.get("globalaccel:center")
        region = s3.get_bucket_location(Bucket=name).get("LocationConstraint") or "us-east-1"
        if center is None:
            stores.append({"bucket": name, "center": None, "region": region, "tags": tags, "problems": ["bucket_unclassified"]})
            findings.append(Finding("bucket_unclassified", name, f"in {region} with no globalaccel:center classification: whose "
                                    "data it may hold cannot be judged; classify it or move it out of the account"))
            continue
        record: dict[str, Any] = {"bucket": name, "center": center, "region": region, "tags": tags, "problems": []}

        def bad(kind: str, evidence: str, record: dict[str, Any] = record, name: str = name) -> None:
            record["problems"].append(kind)
            findings.append(Finding(kind, name, evidence))

        home = topology.center_by_id.get(center)
        if home is None:
            bad("bucket_unknown_center", f"tagged for center {center!r}, not in the stack")
            stores.append(record)
            continue
        if region != home.region:
            bad("bucket_wrong_region", f"in {region}, but its center {center} is in {home.region}")
        if tags.get("globalaccel:residency-zone") != home.region:
            bad("bucket_untagged", f"residency-zone tag is {tags.get('globalaccel:residency-zone')!r}, expected {home.region!r}")
        holders = [c for c in topology.countries if topology.residency.allows(c, center)]
        try:
            rules = s3.get_bucket_replication(Bucket=name)["ReplicationConfiguration"]["Rules"]
        except s3.exceptions.ClientError:
            rules = []
        for rule in rules:
            target = rule.get("Destination", {}).get("Bucket", "").split(":")[-1]
            try:
                target_region = s3.get_bucket_location(Bucket=target).get("LocationConstraint") or "us-east-1"
            except s3.exceptions.ClientError:
                target_region = "unknown"
            target_center = region_center.get(target_region)
            refused = [c for c in holders if target_center is None or not topology.residency.allows(c, target_center)]
            if refused:
                bad("bucket_replication_out_of_region", f"replicates to {target} in {target_region}; countries whose data it may hold "
                    f"but whose rules forbid that region: {refused[:12]}{'...' if len(refused) > 12 else ''}")
        try:
            block = s3.get_public_access_block(Bucket=name)["PublicAccessBlockConfiguration"]
            if not all(block.get(k) for k in ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")):
                bad("bucket_public", f"public access block incomplete: {block}")
        except s3.exceptions.ClientError:
            bad("bucket_public", "no public access block")
        try:
            s3.get_bucket_encryption(Bucket=name)
        except s3.exceptions.ClientError:
            bad("bucket_unencrypted", "no default encryption")
        if s3.get_bucket_versioning(Bucket=name).get("Status") != "Enabled":
            bad("bucket_unversioned", "versioning is not enabled")
        stores.append(record)
    return stores, findings


REGION_KEY = "topology.kubernetes.io/region"


def allowed_regions(spec: Any, kind: str) -> set[str] | None:
    """The regions a PersistentVolume or a StatefulSet's pods can be placed in, from its *required*
    placement only (preferred affinity is a wish, not a constraint). None = unconstrained.
    nodeSelectorTerms are alternatives: a single term without a region constraint frees it."""
    if not isinstance(spec, dict):
        return None
    if kind == "PersistentVolume":
        terms = ((spec.get("nodeAffinity") or {}).get("required") or {}).get("nodeSelectorTerms")
        selector: dict[str, Any] = {}
    else:
        pod = ((spec.get("template") or {}).get("spec")) or {}
        selector = pod.get("nodeSelector") or {}
        terms = (((pod.get("affinity") or {}).get("nodeAffinity") or {})
                 .get("requiredDuringSchedulingIgnoredDuringExecution") or {}).get("nodeSelectorTerms")
    from_terms: set[str] | None = None
    if terms:
        from_terms = set()
        for term in terms:
            pinned = [set(e.get("values", [])) for e in term.get("matchExpressions", []) or []
                      if e.get("key") == REGION_KEY and e.get("operator") == "In"]
            if not pinned:
                from_terms = None  # this alternative allows any region
                break
            from_terms |= set.intersection(*pinned)
    from_selector = {str(selector[REGION_KEY])} if REGION_KEY in selector else None
    if from_terms is None:
        return from_selector
    return from_terms if from_selector is None else from_terms & from_selector
