"""Leader election across centers: a key held under an etcd lease, one controller writing at a time.

A controller runs in every center; an etcd cluster with a member per center (any three survive the loss
of one region) holds one key, `<prefix>/<stack>/leader`. Consensus is etcd's (Raft), never ours:

- acquire: a transaction creates the key under this instance's lease only if it does not exist
  (`create_revision == 0`); the instance that already holds it (the key's value and lease are its own)
  renews its lease with a keepalive instead;
- expiry: etcd deletes the key when the lease is not renewed for `ttl_s`; only then can another
  instance's create succeed, so two holders never overlap on etcd's clock;
- a holder that cannot reach a quorum of members stops: `acquire` returns False as soon as a renewal
  fails (the loop asks every cycle), and `valid()` (a renewal younger than half the TTL) is asked again
  before every change batch of a publish (Route53Backend.guard), so a publish that outlives its lease
  stops while the lease it lost still has at least half its TTL to run before anyone else can take it.

It speaks etcd's v3 JSON gateway (HTTP, what `etcd` 3.4 serves on its client URLs), with the standard
library only; endpoints are tried in order, so losing the member of one's own center is not losing the lease.
"""

from __future__ import annotations

import base64
import contextlib
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class EtcdUnavailable(Exception):
    """No endpoint answered (or none had a quorum)."""


class EtcdLease:
    def __init__(self, endpoints: Sequence[str], key: str, identity: str, ttl_s: int = 15, timeout_s: float = 2.0,
                 clock: Callable[[], float] = lambda: time.clock_gettime(time.CLOCK_BOOTTIME)) -> None:
        # CLOCK_BOOTTIME, not monotonic: it keeps counting through a host suspend or VM freeze, so a renewal
        # from before one never looks fresh after it.
        if not endpoints:
            raise ValueError("an etcd lease needs at least one endpoint")
        self.endpoints = [e.rstrip("/") for e in endpoints]
        self.key = key
        self.identity = identity
        self.ttl_s = ttl_s
        self.timeout_s = timeout_s
        self.clock = clock
        self.lease_id: str | None = None
        self.renewed_at: float | None = None  # when the last successful renewal was *sent*
        self.held = False

    # ---- the Lease protocol (globalaccel.control.loop) ----------------------------------------------
    def acquire(self) -> bool:
        sent = self.clock()
        try:
            self.held = self._renew() or self._create()
        except EtcdUnavailable:
            self.held = False
        if self.held:
            self.renewed_at = sent
        return self.held

    def valid(self) -> bool:
        """Held, and renewed recently enough that etcd cannot have given the key to anyone else yet."""
        return self.held and self.renewed_at is not None and self.clock() - self.renewed_at < self.ttl_s / 2

    def release(self) -> None:
        if self.lease_id is not None:
            with contextlib.suppress(EtcdUnavailable):  # revoking deletes the key at once: a successor need not wait
                self._post("/v3/lease/revoke", {"ID": self.lease_id})
        self.lease_id, self.held, self.renewed_at = None, False, None

    def holder(self) -> str | None:
        """Who holds the key now (for status pages and tests)."""
        found = self._post("/v3/kv/range", {"key": _b64(self.key)}).get("kvs", [])
        return base64.b64decode(found[0]["value"]).decode() if found else None

    # ---- steps -------------------------------------------------------------------------------------
    def _renew(self) -> bool:
        """Keep our lease alive and confirm the key is still ours under it."""
        if self.lease_id is None:
            return False
        alive = self._post("/v3/lease/keepalive", {"ID": self.lease_id}).get("result", {})
        if int(alive.get("TTL", 0) or 0) <= 0:
            self.lease_id = None  # expired: etcd already deleted the key
            return False
        found = self._post("/v3/kv/range", {"key": _b64(self.key)}).get("kvs", [])
        return bool(found) and found[0].get("lease") == self.lease_id and base64.b64decode(found[0]["value"]).decode() == self.identity

    def _create(self) -> bool:
        granted = self._post("/v3/lease/grant", {"TTL": self.ttl_s})
        lease_id = str(granted["ID"])
        txn = {
            "compare": [{"key": _b64(self.key), "target": "CREATE", "result": "EQUAL", "create_revision": "0"}],
            "success": [{"requestPut": {"key": _b64(self.key), "value": _b64(self.identity), "lease": lease_id}}],
        }
        if self._post("/v3/kv/txn", txn).get("succeeded"):
            self.lease_id = lease_id
            return True
        with contextlib.suppress(EtcdUnavailable):  # not needed: somebody else holds the key
            self._post("/v3/lease/revoke", {"ID": lease_id})
        return False

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        errors = []
        for endpoint in self.endpoints:
            request = urllib.request.Request(endpoint + path, data=json.dumps(body).encode(),
                                             headers={"Content-Type": "application/json"}, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    answer: dict[str, Any] = json.loads(response.read())
            except (urllib.error.URLError, OSError, ValueError) as exc:
                errors.append(f"{endpoint}: {exc}")
                continue
            if "error" in answer:  # e.g. no leader / no quorum on that member: try the next
                errors.append(f"{endpoint}: {answer.get('error')}")
                continue
            return answer
        raise EtcdUnavailable("; ".join(errors))
