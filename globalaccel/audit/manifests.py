"""Kubernetes manifests that can place data, against the residency rules.

Read: every `*.yaml`, `*.yml` and `*.json` below a folder, every document in a file, and the items of a
`kind: List`. Examined, with what constrains where their data lands:
- PersistentVolume: its required node affinity;
- PersistentVolumeClaim: its StorageClass's `allowedTopologies` (a claim whose class is not among the
  manifests, or unconstrained, has no provable region);
- StorageClass: listed with the regions it allows;
- StatefulSet (always: it exists to hold state), and Deployment, DaemonSet, ReplicaSet, Job, CronJob
  when they mount a persistent volume (a claim, a host path, or claim templates): the pod template's
  required placement.
Each data-placing object must carry the label `globalaccel/center` naming a center of the stack and be
confined to that center's region. Everything read and what was skipped is reported.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from globalaccel.audit.stores import REGION_KEY, allowed_regions
from globalaccel.errors import GlobalaccelError
from globalaccel.findings import Finding
from globalaccel.topology import Topology

SUFFIXES = (".yaml", ".yml", ".json")
WORKLOADS = ("Deployment", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod")


class ManifestError(GlobalaccelError):
    """A manifest that cannot be read: the audit cannot say what it places, so it does not run (exit 2)."""

    prefix = "globalaccel audit: could not run"


def _flatten(doc: Any) -> Iterator[dict[str, Any]]:
    """Objects, the items of a List (nested Lists too), and the elements of a top-level array."""
    if isinstance(doc, list):
        for item in doc:
            yield from _flatten(item)
    elif isinstance(doc, dict) and doc.get("kind") == "List":
        yield from _flatten(doc.get("items") or [])
    elif isinstance(doc, dict):
        yield doc


def documents(folder: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    import yaml

    for path in sorted(p for p in folder.rglob("*") if p.suffix in SUFFIXES and p.is_file()):
        try:
            text = path.read_text(encoding="utf-8")
            docs = [json.loads(text)] if path.suffix == ".json" else list(yaml.safe_load_all(text))
        except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
            raise ManifestError(f"{path}: not a readable manifest ({str(exc).splitlines()[0]}); render templates first") from exc
        for doc in docs:
            yield from ((path, obj) for obj in _flatten(doc))


def _pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    spec = doc.get("spec") or {}
    if doc.get("kind") == "Pod":
        return dict(spec)
    if doc.get("kind") == "CronJob":
        spec = ((spec.get("jobTemplate") or {}).get("spec")) or {}
    return ((spec.get("template") or {}).get("spec")) or {}


def _holds_data(doc: dict[str, Any]) -> bool:
    if doc.get("kind") == "StatefulSet":
        return True
    volumes = _pod_spec(doc).get("volumes") or []
    return any("persistentVolumeClaim" in v or "hostPath" in v for v in volumes if isinstance(v, dict))


def _workload_regions(doc: dict[str, Any]) -> set[str] | None:
    """allowed_regions reads spec.template.spec; a CronJob's pod template sits one level deeper."""
    if doc.get("kind") in ("CronJob", "Pod"):
        return allowed_regions({"template": {"spec": _pod_spec(doc)}}, "StatefulSet")
    return allowed_regions(doc.get("spec") or {}, "StatefulSet")


def _class_regions(storage_class: dict[str, Any]) -> set[str] | None:
    regions: set[str] | None = None
    for term in storage_class.get("allowedTopologies") or []:
        for expr in term.get("matchLabelExpressions") or []:
            if expr.get("key") == REGION_KEY:
                values = set(expr.get("values") or [])
                regions = values if regions is None else regions | values
    return regions


def check_manifests(folder: Path, topology: Topology) -> tuple[list[dict[str, Any]], list[Finding], dict[str, Any]]:
    """Stores found, findings, and the scope: what was read and what was not examined."""
    docs = list(documents(folder))
    classes = {str((d.get("metadata") or {}).get("name")): d for _, d in docs if d.get("kind") == "StorageClass"}
    stores: list[dict[str, Any]] = []
    findings: list[Finding] = []
    skipped: dict[str, int] = {}
    for path, doc in docs:
        kind = str(doc.get("kind"))
        meta = doc.get("metadata") or {}
        name = f"{kind}/{meta.get('name')}"
        if kind == "StorageClass":
            allows = _class_regions(doc)
            stores.append({"resource": name, "file": str(path), "center": None, "region": ", ".join(sorted(allows or [])) or "any"})
            continue
        if kind == "PersistentVolume":
            allowed = allowed_regions(doc.get("spec") or {}, kind)
        elif kind == "PersistentVolumeClaim":
            class_name = str((doc.get("spec") or {}).get("storageClassName"))
            cls = classes.get(class_name)
            allowed = _class_regions(cls) if cls is not None else None
        elif kind == "StatefulSet" or (kind in WORKLOADS and _holds_data(doc)):
            allowed = _workload_regions(doc)
        else:
            skipped[kind] = skipped.get(kind, 0) + 1
            continue
        center = (meta.get("labels") or {}).get("globalaccel/center")
        home = topology.center_by_id.get(center or "")
        regions = sorted(allowed) if allowed is not None else []
        stores.append({"resource": name, "file": str(path), "center": center, "region": ", ".join(regions) or "-"})
        if home is None:
            findings.append(Finding("k8s_unplaced", name, f"{path.name}: no globalaccel/center label naming a center of the stack"))
        elif allowed is None:
            if kind != "PersistentVolumeClaim":
                why = f"not required to stay in a region ({REGION_KEY})"
            elif class_name == "None":
                why = "no storageClassName: the cluster's default StorageClass decides, and it is not among the manifests"
            elif class_name not in classes:
                why = f"its StorageClass {class_name!r} is not among the manifests: where its volumes land cannot be shown"
            else:
                why = f"its StorageClass {class_name!r} does not restrict allowedTopologies to a region"
            findings.append(Finding("k8s_unplaced", name, f"{path.name}: {why}"))
        elif regions != [home.region]:
            findings.append(Finding("k8s_wrong_region", name, f"{path.name}: pinned to {regions}, its center {center} is in {home.region}"))
    scope = {"folder": str(folder), "documents": len(docs), "examined": len(stores), "not_data_stores": dict(sorted(skipped.items()))}
    return stores, findings, scope
