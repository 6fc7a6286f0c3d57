"""Leader election in a cluster: a coordination.k8s.io/v1 Lease, through the `kubernetes` client.

The holder renews `renewTime` every cycle; another instance takes the lease only when it is free or
its renewal is older than `leaseDurationSeconds`. Every write is a replace carrying the
`resourceVersion` that was read, so two instances racing for an expired lease cannot both win: the
API server rejects the second write with 409 Conflict.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any


def _now(clock: Callable[[], float]) -> dt.datetime:
    return dt.datetime.fromtimestamp(clock(), tz=dt.UTC)


class KubernetesLease:
    def __init__(self, api: Any, namespace: str, name: str, identity: str, duration_s: int = 15,
                 clock: Callable[[], float] = time.time) -> None:
        self.api = api
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.duration_s = duration_s
        self.clock = clock
        self.held = False

    @classmethod
    def in_cluster(cls, namespace: str, name: str, identity: str) -> KubernetesLease:
        from kubernetes import client, config

        config.load_incluster_config()
        return cls(client.CoordinationV1Api(), namespace, name, identity)

    def acquire(self) -> bool:
        from kubernetes.client import V1Lease, V1LeaseSpec, V1ObjectMeta
        from kubernetes.client.exceptions import ApiException

        now = _now(self.clock)
        try:
            lease = self.api.read_namespaced_lease(self.name, self.namespace)
        except ApiException as exc:
            if exc.status != 404:
                self.held = False
                return False
            body = V1Lease(metadata=V1ObjectMeta(name=self.name, namespace=self.namespace),
                           spec=V1LeaseSpec(holder_identity=self.identity, lease_duration_seconds=self.duration_s,
                                            acquire_time=now, renew_time=now, lease_transitions=0))
            try:
                self.api.create_namespaced_lease(self.namespace, body)
                self.held = True
            except ApiException:
                self.held = False  # someone created it first
            return self.held
        spec = lease.spec
        renewed = spec.renew_time
        duration = spec.lease_duration_seconds or self.duration_s
        expired = renewed is None or (now - renewed).total_seconds() > duration
        if spec.holder_identity not in (None, self.identity) and not expired:
            self.held = False
            return False
        if spec.holder_identity != self.identity:
            spec.acquire_time = now
            spec.lease_transitions = (spec.lease_transitions or 0) + 1
        spec.holder_identity = self.identity
        spec.renew_time = now
        spec.lease_duration_seconds = duration
        try:
            self.api.replace_namespaced_lease(self.name, self.namespace, lease)  # carries the resourceVersion read
            self.held = True
        except ApiException:
            self.held = False  # 409: another instance wrote first
        return self.held

    def release(self) -> None:
        if not self.held:
            return
        from kubernetes.client.exceptions import ApiException

        try:
            lease = self.api.read_namespaced_lease(self.name, self.namespace)
            if lease.spec.holder_identity == self.identity:
                lease.spec.holder_identity = None
                lease.spec.renew_time = None
                self.api.replace_namespaced_lease(self.name, self.namespace, lease)
        except ApiException:
            pass
        self.held = False
