"""One DNS publish path for every backend, in the style of ExternalDNS's provider.

    RoutingTable -> Answers -> Backend.render -> desired records
                                 OwnedZone.records (live, only what this stack owns)
                                 plan(current, desired) -> Changes -> Backend.apply (within its API budget)

A `Backend` renders answers to records, lists what is live in its zone, and applies changes within
its API budget. `OwnedZone` is the ownership registry that wraps any backend: it claims the zone for
one stack with a TXT record, refuses a zone another stack claimed, and lets the plan see and touch
only records the controller owns. `sync` is the one reconcile loop: list, plan, apply, and re-list and
re-plan when an apply may or may not have landed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from globalaccel.answers import Answers
from globalaccel.dns.ownership import ZoneOwnership
from globalaccel.dns.plan import Changes, plan
from globalaccel.dns.records import Record
from globalaccel.errors import GlobalaccelError


class NeedsReplan(Exception):
    """A request may or may not have been applied; the caller must re-list and re-plan."""


class BackendError(GlobalaccelError):
    """A backend could not be opened or refused a change (exit 2 on the command line)."""


class SyncDidNotConverge(BackendError):
    pass


@dataclass
class ApplyStats:
    requests: int = 0  # write requests that succeeded
    attempts: int = 0  # including retried ones
    change_tokens: int = 0
    values: int = 0
    retries: int = 0
    batches: list[int] = field(default_factory=list)  # changes per applied batch


class Backend(Protocol):
    name: str

    @property
    def ownership(self) -> ZoneOwnership:
        """The zone, the service name and the stack that claims the zone."""
        ...

    def manages(self, record: Record) -> bool:
        """Whether a record is of the kind this backend writes for the controller (the plan's scope)."""
        ...

    def render(self, answers: Answers) -> list[Record]:
        """The records that make this backend answer per `answers` (without the ownership claim)."""
        ...

    def records(self) -> list[Record]:
        """Every record live in the zone, ours or not, deduplicated."""
        ...

    def apply(self, changes: Changes, stats: ApplyStats) -> None:
        """Apply within the API budget. Raises NeedsReplan when the outcome is unknown."""
        ...

    def budget(self) -> dict[str, float]:
        """What is left of the API budget, per bucket (for metrics)."""
        ...

    def estimate(self, changes: Changes) -> dict[str, int]:
        """Write requests and change tokens applying `changes` would take."""
        ...


def claim_record(ownership: ZoneOwnership) -> Record:
    """The TXT record that claims a zone for one stack."""
    return Record(ownership.owner_name, "TXT", (ownership.owner_value,), 300)


def anchor_record(ownership: ZoneOwnership, length: int, head: str) -> Record:
    """The decision log's head (entries and last hash), published with the table it produced. A log cut
    short or re-chained after this no longer extends it; the audit reads it from the live zone."""
    return Record(ownership.anchor_name, "TXT", (f'"length={length} head={head}"',), 60)


def read_anchor(records: Iterable[Record], ownership: ZoneOwnership) -> dict[str, Any] | None:
    """The anchored head in a zone's live records; None when there is none. A record that is not exactly one
    well-formed head is returned as length 0, which the audit reports as an invalid anchor."""
    for r in records:
        if r.name == ownership.anchor_name and r.type == "TXT":
            if len(r.values) != 1:
                return {"length": 0, "hash": None, "values": list(r.values)}
            fields = dict(part.split("=", 1) for part in r.values[0].strip('"').split() if "=" in part)
            if fields.get("length", "").isdigit() and fields.get("head"):
                return {"length": int(fields["length"]), "hash": fields["head"]}
            return {"length": 0, "hash": None, "values": list(r.values)}
    return None


class OwnedZone:
    """The ownership registry around a backend: the only thing `sync` talks to."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.ownership = backend.ownership
        self.name = backend.name

    @property
    def claim(self) -> Record:
        return claim_record(self.ownership)

    def owns(self, record: Record) -> bool:
        if record.name in (self.ownership.owner_name, self.ownership.anchor_name):
            return record.type == "TXT"
        return self.backend.manages(record)

    def render(self, answers: Answers) -> list[Record]:
        return [self.claim, *self.backend.render(answers)]

    def with_claim(self, desired: Iterable[Record]) -> list[Record]:
        records = list(desired)
        return records if any(r.key == self.claim.key for r in records) else [self.claim, *records]

    def records(self) -> list[Record]:
        """The live records this stack owns; raises ZoneOwnedByAnother when another stack claimed the zone."""
        live = self.backend.records()
        self.ownership.check_owner(live)
        return [r for r in live if self.owns(r)]

    def apply(self, changes: Changes, stats: ApplyStats) -> None:
        foreign = [c.record for c in changes.all if not self.owns(c.record)]
        if foreign:
            raise BackendError(f"refusing to change records the controller does not own: {[r.key for r in foreign[:5]]}")
        self.backend.apply(changes, stats)

    def budget(self) -> dict[str, float]:
        return self.backend.budget()

    def estimate(self, changes: Changes) -> dict[str, int]:
        return self.backend.estimate(changes)


def owned(backend: Backend | OwnedZone) -> OwnedZone:
    return backend if isinstance(backend, OwnedZone) else OwnedZone(backend)


@dataclass
class SyncReport:
    planned: dict[str, int]  # the first plan's counts per change type
    rounds: int
    stats: ApplyStats
    converged: bool
    changes: Changes | None = None  # the first plan


def sync(backend: Backend | OwnedZone, desired: Iterable[Record], dry_run: bool = False, max_rounds: int = 10,
         release: bool = False) -> SyncReport:
    """List, plan, apply; re-list and re-plan only when an apply may or may not have landed. The
    ownership claim is part of what is desired (a zone this stack writes is a zone this stack claims)
    unless `release` gives the zone up, claim and all."""
    zone = owned(backend)
    wanted = list(desired) if release else zone.with_claim(desired)
    stats = ApplyStats()
    first: Changes | None = None
    for round_no in range(1, max_rounds + 1):
        current = zone.records()
        if not any(r.name == zone.ownership.anchor_name for r in wanted):
            # A sync that brings no log head (`dns sync` from the files) leaves the loop's anchor as it is.
            wanted = [*wanted, *(r for r in current if r.name == zone.ownership.anchor_name)]
        changes = plan(current, wanted, zone.owns)
        if first is None:
            first = changes
        if not changes or dry_run:
            return SyncReport(dict(first.summary), round_no, stats, converged=not changes, changes=first)
        try:
            zone.apply(changes, stats)
        except NeedsReplan:
            continue  # it may or may not have landed: only the zone itself can say, so list and plan again
        # Every request was acknowledged: the zone is the plan. Listing it again would spend API budget
        # (a page per 300 records on Route 53) to learn nothing.
        return SyncReport(dict(first.summary), round_no, stats, converged=True, changes=first)
    return SyncReport(dict(first.summary) if first else {}, max_rounds, stats, converged=False, changes=first)


def publish(backend: Backend | OwnedZone, answers: Answers, log_head: tuple[int, str] | None = None) -> SyncReport:
    """Make the backend answer per `answers` (and anchor the decision log's head, when given); raises
    SyncDidNotConverge when it could not."""
    zone = owned(backend)
    desired = zone.render(answers)
    if log_head is not None:
        desired = [*desired, anchor_record(zone.ownership, *log_head)]
    report = sync(zone, desired)
    if not report.converged:
        raise SyncDidNotConverge(f"{zone.name}: zone {zone.ownership.zone} did not converge after {report.rounds} rounds")
    return report
