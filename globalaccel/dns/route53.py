"""Route 53 backend (boto3): render answers to the record tree, list the zone, apply changes in
budgeted, retried batches.

Works against any endpoint URL (AWS, or moto server on loopback in tests). botocore's own retries
are off so that every request is counted and budgeted here.

Failure handling:
- throttling and PriorRequestNotComplete mean "not applied": the same batch is retried after a
  jittered exponential backoff;
- a 5xx or a dropped connection may or may not have been applied, so blind retry could duplicate a
  CREATE (Route 53 rejects it) or lose track. Instead the sync re-lists the zone and re-plans: the
  diff against live state is the only source of truth, so a rerun converges with zero changes.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from botocore.exceptions import ClientError, ConnectionClosedError, ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError

from globalaccel.answers import Answers
from globalaccel.dns.backend import ApplyStats, BackendError, NeedsReplan
from globalaccel.dns.budget import ApiBudget
from globalaccel.dns.ownership import ZoneOwnedByAnother as ZoneOwnedByAnother
from globalaccel.dns.plan import Change, Changes
from globalaccel.dns.records import CIDR_TYPE, Cidr, Record
from globalaccel.dns.route53_cells import CidrSelection, location_label, location_pseudo_name
from globalaccel.dns.route53_collection import MAX_COLLECTION_BLOCKS as MAX_COLLECTION_BLOCKS
from globalaccel.dns.route53_collection import collection_requests, new_labels
from globalaccel.dns.route53_compile import RESERVED_RECORDS, Route53Layout, compile_route53
from globalaccel.dns.route53_rrsets import from_route53 as from_route53
from globalaccel.dns.route53_rrsets import to_route53 as to_route53
from globalaccel.dns.route53_validate import MAX_BATCH_CHARS, MAX_BATCH_VALUES, validate_batch, validate_records
from globalaccel.topology import Topology

RETRY_SAME = {"Throttling", "ThrottlingException", "PriorRequestNotComplete", "RequestLimitExceeded"}


@dataclass
class RetryPolicy:
    max_attempts: int = 8
    base_s: float = 0.2
    cap_s: float = 20.0

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2^attempt)]."""
        return rng.uniform(0.0, min(self.cap_s, self.base_s * 2**attempt))


def order_changes(changes: Changes, layout: Route53Layout) -> list[Change]:
    """Leaves first when creating (an alias target must exist first), roots first when deleting.

    Creates go out as UPSERT: idempotent, so a batch re-planned after an ambiguous failure cannot
    fail on a record that meanwhile exists (moto also rejects re-creating a record identical to one
    deleted earlier, which Route 53 allows). It costs 2 change tokens per record instead of 1.
    The CIDR collection's pseudo-records are not DNS changes: Route53Backend.apply writes them apart."""
    dns_changes = [c for c in changes.all if c.record.type != CIDR_TYPE]
    creates = [c for c in dns_changes if c.action == "CREATE"]
    as_upserts = [Change("UPSERT", c.record) for c in creates] + [c for c in dns_changes if c.action == "UPSERT"]
    upserts = sorted(as_upserts, key=lambda c: (layout.depth(c.record.name), c.record.key))
    written = {c.record.key for c in as_upserts}
    policy_at = {(c.record.name, c.record.type): c.record.policy for c in as_upserts}

    def in_the_way(c: Change) -> bool:
        # A record whose routing policy changes is planned as DELETE old + CREATE new under the same key, and a
        # name that changes policy (a country's weighted records giving way to its failover chain, when its rule
        # comes to allow a second center; the service name's geolocation records giving way to IP-based ones)
        # must lose its old records first: Route 53 rejects records of another policy beside them under one
        # name and type. Those deletes go just before the name's new records, in the same batch (`batches`),
        # so that the name is never empty between two requests.
        new = policy_at.get((c.record.name, c.record.type))
        return c.record.key in written or (new is not None and new != c.record.policy)

    deletes = [c for c in dns_changes if c.action == "DELETE"]
    making_room: dict[tuple[str, str], list[Change]] = {}
    for c in sorted((c for c in deletes if in_the_way(c)), key=lambda c: c.record.key):
        making_room.setdefault((c.record.name, c.record.type), []).append(c)
    ordered: list[Change] = []
    for c in upserts:
        ordered += making_room.pop((c.record.name, c.record.type), [])
        ordered.append(c)
    rest = sorted((c for c in deletes if not in_the_way(c)), key=lambda c: (-layout.depth(c.record.name), c.record.key))
    return ordered + rest


def batches(ordered: list[Change], max_values: int = MAX_BATCH_VALUES, max_chars: int = MAX_BATCH_CHARS) -> list[list[Change]]:
    """Changes packed into requests within Route 53's limits. Consecutive changes of one name and type stay in
    one request where they fit: a name changing policy loses its old records and gains its new ones at once."""
    units: list[list[Change]] = []
    for change in ordered:
        if units and (units[-1][0].record.name, units[-1][0].record.type) == (change.record.name, change.record.type):
            units[-1].append(change)
        else:
            units.append([change])
    out: list[list[Change]] = []
    current: list[Change] = []
    values = chars = 0
    for unit in units:
        unit_values, unit_chars = sum(c.values for c in unit), sum(c.chars for c in unit)
        if current and (values + unit_values > max_values or chars + unit_chars > max_chars):
            out.append(current)
            current, values, chars = [], 0, 0
        for change in unit:  # a unit larger than a whole request is split where it must be
            if current and (values + change.values > max_values or chars + change.chars > max_chars):
                out.append(current)
                current, values, chars = [], 0, 0
            current.append(change)
            values += change.values
            chars += change.chars
    if current:
        out.append(current)
    return out


SOA_FIELDS = re.compile(r"([\w-][\w.-]*\.) ([\w-][\w.-]*\.) (\d+) (\d+) (\d+) (\d+) (\d+)")


class Route53Backend:
    name = "route53"

    def __init__(
        self,
        client: Any,
        zone_id: str | None,  # None: the zone does not exist yet (a dry run reads it as empty)
        layout: Route53Layout,
        budget: ApiBudget | None = None,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        wait_insync: bool = False,
        after_batch: Callable[[int], None] | None = None,
        health_checks: Mapping[str, str] | None = None,
        cidr_collection: tuple[str, str] | None = None,
    ) -> None:
        self.client = client
        self.zone_id = zone_id.split("/")[-1] if zone_id else None
        self.layout = layout
        self.api_budget = budget or ApiBudget.route53()
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.wait_insync = wait_insync
        self.after_batch = after_batch  # test hook: called with the batch number after each success
        self.list_requests = 0
        self.topology: Topology | None = None  # set by the factory: what render compiles against
        # Center id -> its Route 53 health check id. Compiled records name centers; the zone holds ids.
        self.health_checks = dict(health_checks or {})
        self._center_of_check = {v: k for k, v in self.health_checks.items()}
        self._ids_in_zone: set[str] = set()
        # Asked before every change batch: False stops the apply (a controller that lost its lease mid-publish
        # must not go on writing while another holds it; Route 53 has no fencing token to refuse it for us).
        self.guard: Callable[[], bool] | None = None
        # The stack's CIDR collection (name, id) when the zone routes cells by network (route53_cells): compiled
        # records name it, the zone holds its id. Its blocks are read and written with the zone's records.
        self.cidr_collection = cidr_collection
        self.cidr_selection: CidrSelection | None = None  # set by the factory with the collection
        self._live_blocks: dict[str, set[str]] = {}  # location -> its blocks, as last listed
        self._location_of_label: dict[str, str] = {}  # pseudo-record label -> the live location name (its case)

    @property
    def ownership(self) -> Route53Layout:
        return self.layout

    def manages(self, record: Record) -> bool:
        return self.layout.owns(record)

    def render(self, answers: Answers) -> list[Record]:
        if self.topology is None:
            raise BackendError("this Route 53 backend was opened without a topology; open it with globalaccel.dns.factory")
        records = compile_route53(self.topology, answers, cells=self.cidr_selection)
        settings = self.topology.route53
        # The zone also holds its SOA and NS, the ownership claim and the decision log's anchor.
        validate_records(records, self.layout.zone, self.topology.countries, settings.max_records - RESERVED_RECORDS,
                         settings.cidr_blocks)
        return records

    def add_health_checks(self, checks: Mapping[str, str]) -> None:
        self.health_checks.update(checks)
        self._center_of_check = {v: k for k, v in self.health_checks.items()}

    def verify_health_checks(self) -> None:
        """Every configured check exists: a record naming a missing check is rejected by Route 53 with the
        whole batch, so a wrong id is refused here, named, before anything is written."""
        for center, check in sorted(self.health_checks.items()):
            try:
                self._call(self.client.get_health_check, HealthCheckId=check)
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code in ("NoSuchHealthCheck", "InvalidInput"):
                    raise BackendError(f"--health-check {center}={check}: Route 53 has no such health check ({code})") from None
                raise

    def _to_zone(self, record: Record) -> Record:
        if record.cidr is not None and self.cidr_collection is not None and record.cidr.collection == self.cidr_collection[0]:
            record = replace(record, cidr=Cidr(self.cidr_collection[1], record.cidr.location))
        check = record.health_check
        if check is None:
            return record
        if check in self.health_checks:
            return replace(record, health_check=self.health_checks[check])
        if check in self._ids_in_zone:
            return record  # a live record's own id (deleting or restoring what the zone holds)
        raise BackendError(f"{record.name} {record.set_id}: health check {check!r} is neither a center with a configured "
                           "check (--health-check CENTER=ID) nor a check the zone already uses; nothing was written")

    def _from_zone(self, record: Record) -> Record:
        if record.cidr is not None and self.cidr_collection is not None and record.cidr.collection == self.cidr_collection[1]:
            record = replace(record, cidr=Cidr(self.cidr_collection[0], record.cidr.location))
        check = record.health_check
        return replace(record, health_check=self._center_of_check[check]) if check in self._center_of_check else record

    def budget(self) -> dict[str, float]:
        return {"requests": self.api_budget.requests.remaining(), "change_tokens": self.api_budget.change_tokens.remaining()}

    def records(self) -> list[Record]:
        """Every record in the zone, ours or not, deduplicated by (name, type, set id): listing can
        repeat records at page boundaries."""
        found: dict[tuple[str, str, str], Record] = {}
        if self.zone_id is None:
            return []
        kwargs: dict[str, Any] = {"HostedZoneId": self.zone_id}
        while True:
            page = self._call(self.client.list_resource_record_sets, **kwargs)
            self.list_requests += 1
            for rrset in page["ResourceRecordSets"]:
                if rrset.get("HealthCheckId"):
                    self._ids_in_zone.add(str(rrset["HealthCheckId"]))
                record = self._from_zone(from_route53(rrset))
                found[record.key] = record
            if not page.get("IsTruncated"):
                break
            kwargs = {"HostedZoneId": self.zone_id, "StartRecordName": page["NextRecordName"], "StartRecordType": page["NextRecordType"]}
            if page.get("NextRecordIdentifier"):
                kwargs["StartRecordIdentifier"] = page["NextRecordIdentifier"]
        for record in self._locations():
            found[record.key] = record
        return sorted(found.values(), key=lambda r: r.key)

    def _locations(self) -> list[Record]:
        """The collection's locations as pseudo-records (records.CIDR_TYPE): listed with the zone, so that the plan
        diffs them and the audit reads them as they are live."""
        self._live_blocks = {}
        if self.cidr_collection is None:
            return []
        kwargs: dict[str, Any] = {"CollectionId": self.cidr_collection[1], "MaxResults": "1000"}
        while True:
            page = self._call(self.client.list_cidr_blocks, **kwargs)
            self.list_requests += 1
            for block in page.get("CidrBlocks", []):
                self._live_blocks.setdefault(block["LocationName"], set()).add(block["CidrBlock"])
            if not page.get("NextToken"):
                break
            kwargs["NextToken"] = page["NextToken"]
        self._location_of_label = {location_label(location): location for location in self._live_blocks}
        return [Record(location_pseudo_name(location, self.layout.zone), CIDR_TYPE, tuple(sorted(blocks)), None)
                for location, blocks in sorted(self._live_blocks.items())]

    def estimate(self, changes: Changes) -> dict[str, int]:
        """Requests and change tokens applying `changes` takes (UPSERT counts twice), collection requests included."""
        ordered = order_changes(changes, self.layout)
        early, arriving = self._collection_requests(changes)
        return {"requests": len(batches(ordered)) + len(early) + len(arriving), "tokens": sum(c.tokens for c in ordered)}

    def apply(self, changes: Changes, stats: ApplyStats) -> None:
        if self.zone_id is None:
            raise BackendError(f"hosted zone {self.layout.zone} does not exist; nothing can be applied to it")
        writes = [c.record for c in changes.all if c.action != "DELETE"]
        unchecked = sorted({r.health_check for r in writes if r.health_check and r.health_check not in self.health_checks
                            and r.health_check not in self._ids_in_zone})
        if unchecked:  # refused before the first batch: nothing is written
            raise BackendError(f"no Route 53 health check id for center(s) {', '.join(unchecked)}: the failover records "
                               "need one per center (pulumi up creates them; pass --health-check CENTER=ID, or "
                               "--create-zone to create them with the zone); nothing was written")
        early, arriving = self._collection_requests(changes)
        if (early or arriving) and self.cidr_collection is None:
            raise BackendError("the plan changes CIDR locations but this backend has no collection; nothing was written")
        # Blocks leave first (a location the plan drops loses its blocks before its record goes: its clients get
        # the default at once, never a location without a record) and move between locations that keep their
        # records. Blocks of locations that are new arrive just before the request that writes the records naming
        # them (a record may only name a location that exists; a location holds at least one block).
        ordered = batches(order_changes(changes, self.layout))
        new = {self._location_of_label.get(label, label) for label in self._new_labels(changes)}
        first_naming = next((i for i, batch in enumerate(ordered)
                             if any(c.record.cidr is not None and c.record.cidr.location in new for c in batch)), 0)
        self._guarded_collection(early, "before the first change batch", stats)
        if first_naming == 0:
            self._guarded_collection(arriving, "before the first change batch", stats)
        for number, batch in enumerate(ordered, start=1):
            if number - 1 == first_naming and first_naming > 0:
                self._guarded_collection(arriving, f"before change batch {number}", stats)
            if self.guard is not None and not self.guard():
                raise BackendError(f"stopped before change batch {number}: this controller no longer holds the lease")
            validate_batch(batch)
            tokens = sum(c.tokens for c in batch)
            body = {"Changes": [{"Action": c.action, "ResourceRecordSet": to_route53(self._to_zone(c.record), self.zone_id)}
                                for c in batch]}
            response = self._submit(body, tokens, stats)
            stats.requests += 1
            stats.change_tokens += tokens
            stats.values += sum(c.values for c in batch)
            stats.batches.append(len(batch))
            if self.wait_insync:
                self._wait(response["ChangeInfo"]["Id"])
            if self.after_batch is not None:
                self.after_batch(number)

    def _guarded_collection(self, requests: list[list[dict[str, Any]]], where: str, stats: ApplyStats) -> None:
        for request in requests:
            if self.guard is not None and not self.guard():
                raise BackendError(f"stopped {where} (a CIDR collection request): this controller no longer holds the lease")
            self._change_collection(request, stats)

    def _new_labels(self, changes: Changes) -> set[str]:
        return new_labels(changes, self._location_of_label)

    def _collection_requests(self, changes: Changes) -> tuple[list[list[dict[str, Any]]], list[list[dict[str, Any]]]]:
        return collection_requests(changes, self._live_blocks, self._location_of_label)

    def _change_collection(self, request: list[dict[str, Any]], stats: ApplyStats) -> None:
        assert self.cidr_collection is not None
        for attempt in range(self.retry.max_attempts):
            self.api_budget.requests.acquire(1)
            stats.attempts += 1
            try:
                self.client.change_cidr_collection(Id=self.cidr_collection[1], Changes=request)
                stats.requests += 1
                return
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code in RETRY_SAME:
                    stats.retries += 1
                    self.sleep(self.retry.backoff(attempt, self.rng))
                    continue
                raise BackendError(f"CIDR collection {self.cidr_collection[0]}: {code or exc}; the zone's records were "
                                   "not changed after this request") from exc
            except (ConnectTimeoutError, ConnectionClosedError, EndpointConnectionError, ReadTimeoutError) as exc:
                self.sleep(self.retry.backoff(attempt, self.rng))
                raise NeedsReplan(f"CIDR collection request failed mid-way: {exc}") from exc
        raise RuntimeError(f"Route 53 still throttling the CIDR collection after {self.retry.max_attempts} attempts")

    def _submit(self, body: dict[str, Any], tokens: int, stats: ApplyStats) -> dict[str, Any]:
        for attempt in range(self.retry.max_attempts):
            self.api_budget.requests.acquire(1)
            self.api_budget.change_tokens.acquire(tokens)
            stats.attempts += 1
            try:
                response: dict[str, Any] = self.client.change_resource_record_sets(HostedZoneId=self.zone_id, ChangeBatch=body)
                return response
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
                if code in RETRY_SAME:
                    stats.retries += 1
                    self.sleep(self.retry.backoff(attempt, self.rng))
                    continue
                if status >= 500:
                    self.sleep(self.retry.backoff(attempt, self.rng))
                    raise NeedsReplan(f"{code or status}: the batch may have been applied") from exc
                raise
            except ConnectTimeoutError:
                stats.retries += 1  # never connected, so never sent: the same batch can go again
                self.sleep(self.retry.backoff(attempt, self.rng))
                continue
            except (ConnectionClosedError, EndpointConnectionError, ReadTimeoutError) as exc:
                self.sleep(self.retry.backoff(attempt, self.rng))
                raise NeedsReplan(f"connection failed mid-request: {exc}") from exc
        raise RuntimeError(f"Route 53 still throttling after {self.retry.max_attempts} attempts")

    def cap_negative_ttl(self, ttl: int) -> bool:
        """Resolvers cache "no answer" for min(SOA TTL, SOA MINIMUM) (RFC 2308 s.5); Route 53 creates zones
        with an SOA TTL of 900 s and MINIMUM of 86400 s, so a withdrawn or returning answer would stay cached
        for 15 minutes against 60 s records. Lower both to `ttl` once; returns True when it changed the SOA."""
        if self.zone_id is None:
            return False
        page = self._call(self.client.list_resource_record_sets, HostedZoneId=self.zone_id, StartRecordName=self.layout.zone,
                          StartRecordType="SOA", MaxItems="1")
        soa = next((r for r in page["ResourceRecordSets"] if r["Type"] == "SOA"), None)
        if soa is None:
            raise BackendError(f"hosted zone {self.layout.zone} has no SOA record")
        # MNAME RNAME SERIAL REFRESH RETRY EXPIRE MINIMUM. Searched, not split: moto wraps its SOA value in a
        # dict's repr; AWS returns the seven fields alone. Anything else is refused, never rewritten.
        match = SOA_FIELDS.search(soa["ResourceRecords"][0]["Value"])
        if match is None:
            raise BackendError(f"hosted zone {self.layout.zone}: unreadable SOA {soa['ResourceRecords'][0]['Value']!r}")
        fields = list(match.groups())
        if int(soa["TTL"]) <= ttl and int(fields[6]) <= ttl and match.group(0) == soa["ResourceRecords"][0]["Value"]:
            return False
        fields[6] = str(min(int(fields[6]), ttl))
        body = {"Changes": [{"Action": "UPSERT", "ResourceRecordSet": {"Name": soa["Name"], "Type": "SOA", "TTL": min(int(soa["TTL"]), ttl),
                                                                      "ResourceRecords": [{"Value": " ".join(fields)}]}}]}
        self._submit(body, 2, ApplyStats())
        return True

    def _wait(self, change_id: str, timeout_s: float = 300.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._call(self.client.get_change, Id=change_id)["ChangeInfo"]["Status"] == "INSYNC":
                return
            self.sleep(2.0)
        raise TimeoutError(f"change {change_id} not INSYNC after {timeout_s:.0f} s")

    def _call(self, fn: Callable[..., dict[str, Any]], **kwargs: Any) -> dict[str, Any]:
        """Reads (list, get) are idempotent: retry any transient failure."""
        for attempt in range(self.retry.max_attempts):
            self.api_budget.requests.acquire(1)
            try:
                return fn(**kwargs)
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
                if code not in RETRY_SAME and status < 500:
                    raise
            except (ConnectionClosedError, ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError):
                pass
            self.sleep(self.retry.backoff(attempt, self.rng))
        raise RuntimeError(f"{getattr(fn, '__name__', fn)} failed {self.retry.max_attempts} times")
