"""One Route 53 health check per center: what the failover records of every country's chain read.

Never one per edge (200 per account by default, created at 0.5/s; our probes are the edges' checks).
The Pulumi program creates these from `center_check_config`; a development zone created with
`--create-zone` gets them here, found again by caller reference so that a second run creates nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from globalaccel.topology import Center

REQUEST_INTERVAL_S = 30  # Route 53 allows 10 or 30 s; 30 s is the standard price
FAILURE_THRESHOLD = 3  # consecutive failures (per checker) before a center is unhealthy: ~90 s


def center_check_config(center: Center, port: int) -> dict[str, Any]:
    """The HealthCheckConfig of a center's check (API field names): HTTPS GET /healthz on its address."""
    return {"Type": "HTTPS", "IPAddress": center.address, "Port": port, "ResourcePath": "/healthz",
            "RequestInterval": REQUEST_INTERVAL_S, "FailureThreshold": FAILURE_THRESHOLD}


def caller_reference(stack: str, center: str) -> str:
    return f"globalaccel-{stack}-{center}-v1"


def _all_checks(client: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {}
    while True:
        page = client.list_health_checks(**kwargs)
        found += page.get("HealthChecks", [])
        if not page.get("IsTruncated"):
            return found
        kwargs = {"Marker": page["NextMarker"]}


def discover_center_checks(client: Any, centers: Iterable[Center], port: int) -> dict[str, str]:
    """Center id -> the account's health check that probes exactly that center (its address, port and
    path): how the loop and the audit find checks the Pulumi program created without being told their
    ids. Two checks for one center is ambiguous and refused; a center with none is left out."""
    by_target: dict[tuple[str, int, str], list[str]] = {}
    for check in _all_checks(client):
        config = check.get("HealthCheckConfig", {})
        target = (str(config.get("IPAddress", "")), int(config.get("Port", 0) or 0), str(config.get("ResourcePath", "")))
        by_target.setdefault(target, []).append(str(check["Id"]))
    out: dict[str, str] = {}
    for center in centers:
        ids = by_target.get((center.address, port, "/healthz"), [])
        if len(ids) > 1:
            raise ValueError(f"{len(ids)} Route 53 health checks probe center {center.id} ({center.address}:{port}): "
                             f"{', '.join(sorted(ids))}; name the one to use with --health-check {center.id}=ID")
        if ids:
            out[center.id] = ids[0]
    return out


def ensure_center_checks(client: Any, stack: str, centers: Iterable[Center], port: int) -> dict[str, str]:
    """Center id -> check id, creating the checks that do not exist yet."""
    existing = {str(c["CallerReference"]): str(c["Id"]) for c in _all_checks(client)}
    out: dict[str, str] = {}
    for center in centers:
        ref = caller_reference(stack, center.id)
        if ref not in existing:
            created = client.create_health_check(CallerReference=ref, HealthCheckConfig=center_check_config(center, port))
            existing[ref] = str(created["HealthCheck"]["Id"])
        out[center.id] = existing[ref]
    return out
