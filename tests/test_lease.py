"""Kubernetes Lease leadership.

MOCK, by necessity: no Kubernetes API server can run on this machine. The fake below implements the
three Lease calls with the API server's optimistic concurrency (resourceVersion, 404, 409) using the
real `kubernetes` client model classes; the leadership logic under test is the real code.
"""

from __future__ import annotations

import copy
from typing import Any

from kubernetes.client import V1Lease
from kubernetes.client.exceptions import ApiException

from globalaccel.control.lease import KubernetesLease


class FakeCoordinationApi:
    def __init__(self) -> None:
        self.lease: V1Lease | None = None
        self.version = 0

    def read_namespaced_lease(self, name: str, namespace: str) -> V1Lease:
        if self.lease is None:
            raise ApiException(status=404, reason="Not Found")
        return copy.deepcopy(self.lease)

    def create_namespaced_lease(self, namespace: str, body: V1Lease) -> V1Lease:
        if self.lease is not None:
            raise ApiException(status=409, reason="AlreadyExists")
        self.version += 1
        body.metadata.resource_version = str(self.version)
        self.lease = copy.deepcopy(body)
        return body

    def replace_namespaced_lease(self, name: str, namespace: str, body: V1Lease) -> V1Lease:
        assert self.lease is not None
        if body.metadata.resource_version != self.lease.metadata.resource_version:
            raise ApiException(status=409, reason="Conflict")
        self.version += 1
        body.metadata.resource_version = str(self.version)
        self.lease = copy.deepcopy(body)
        return body


class Clock:
    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def __call__(self) -> float:
        return self.t


def test_one_leader_renewal_expiry_and_release() -> None:
    api, clock = FakeCoordinationApi(), Clock()
    a = KubernetesLease(api, "globalaccel", "loop", "pod-a", duration_s=15, clock=clock)
    b = KubernetesLease(api, "globalaccel", "loop", "pod-b", duration_s=15, clock=clock)
    assert a.acquire() and not b.acquire()
    clock.t += 10
    assert a.acquire() and not b.acquire()  # renewed within the duration
    clock.t += 16  # a stops renewing (crashed): the lease expires
    assert b.acquire() and not a.acquire()
    assert api.lease is not None and api.lease.spec.lease_transitions == 1
    b.release()
    assert a.acquire()


def test_racing_for_an_expired_lease_only_one_wins() -> None:
    api, clock = FakeCoordinationApi(), Clock()
    KubernetesLease(api, "ns", "loop", "old", clock=clock).acquire()
    clock.t += 100
    a = KubernetesLease(api, "ns", "loop", "pod-a", clock=clock)
    b = KubernetesLease(api, "ns", "loop", "pod-b", clock=clock)
    real_read = api.read_namespaced_lease
    snapshot: dict[str, Any] = {}

    def stale_read(name: str, namespace: str) -> V1Lease:
        if "lease" not in snapshot:
            snapshot["lease"] = real_read(name, namespace)
        return copy.deepcopy(snapshot["lease"])  # both read the same version before either writes

    api.read_namespaced_lease = stale_read  # type: ignore[method-assign]
    results = [a.acquire(), b.acquire()]
    assert results.count(True) == 1
