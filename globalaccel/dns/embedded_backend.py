"""The embedded server as a DNS backend: answers rendered to records, applied by swapping a snapshot.

It goes through the same publish path as Route 53 and PowerDNS (render -> plan -> apply), so what the
embedded server answers is exactly what the records say: one record set per served cell on the service
name (its set id is the cell's id, its geo the cell's country), best first, each followed by its failover
chain, plus a TXT record naming the table that produced them (serial and hash of the snapshot). The server
locates each client into a cell (globalaccel.locate). Fail-closed and no-path cells have no record, so
they get NODATA.
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import dns.name

from globalaccel.answers import Answers, Served
from globalaccel.dns import spread
from globalaccel.dns.backend import ApplyStats
from globalaccel.dns.embedded import DnsResponder, ZoneSnapshot
from globalaccel.dns.ownership import ZoneOwnership
from globalaccel.dns.plan import Changes
from globalaccel.dns.records import Geo, Record, fqdn
from globalaccel.locate import locator_for
from globalaccel.path_judge import PathJudge
from globalaccel.topology import Topology

TABLE_LABEL = "_globalaccel-table"


ZONE_FILE = "published-zone.json"  # in the loop's state folder


def ownership_for(topology: Topology) -> ZoneOwnership:
    return ZoneOwnership(fqdn(topology.zone), fqdn(topology.service_name), topology.stack)


class EmbeddedBackend:
    name = "embedded"

    def __init__(self, topology: Topology, responder: DnsResponder, ttl: int = 60) -> None:
        self.topology = topology
        self.responder = responder
        self.ttl = ttl
        self.ownership = ownership_for(topology)
        self._live: dict[tuple[str, str, str], Record] = {}
        self.zone_file: Path | None = None  # also publish the zone here, for the per-center servers (`dns serve --zone-file`)

    @property
    def table_name(self) -> str:
        return f"{TABLE_LABEL}.{self.ownership.zone}"

    def manages(self, record: Record) -> bool:
        if record.name == self.table_name:
            return record.type == "TXT"
        return record.name == self.ownership.service and record.type == "A" and record.geo is not None

    def render(self, answers: Answers) -> list[Record]:
        records = [Record(self.table_name, "TXT", (f'"generation={answers.generation} hash={answers.table_hash}"',), self.ttl)]
        cells = self.topology.cell_by_id
        for cell_id, decision in sorted(answers.cells.items()):
            if not isinstance(decision, Served):
                continue
            # The chosen path under the cell's own set id, then its failover chain (`<cell>/<n>`), each naming
            # its center: what a server in every center answers from when its own health view sees one down.
            code = cells[cell_id].country
            # The chosen path's shares: clients that connect to the first address only spread by the weights.
            ordered = decision.served_order
            shares = spread.shares_of([a.weight for a in ordered]) if len(ordered) > 1 else ()
            for n, path in enumerate(decision.paths):
                records.append(Record(self.ownership.service, "A", path.addresses, self.ttl,
                                      set_id=cell_id if n == 0 else f"{cell_id}/{n}", geo=Geo(country=code), region=path.center,
                                      shares=shares if n == 0 else ()))
        return records

    def records(self) -> list[Record]:
        return sorted(self._live.values(), key=lambda r: r.key)

    def apply(self, changes: Changes, stats: ApplyStats) -> None:
        live = dict(self._live)
        for change in changes.all:
            if change.action == "DELETE":
                live.pop(change.record.key, None)
        for change in changes.all:
            if change.action != "DELETE":
                live[change.record.key] = change.record
        snap = snapshot_from_records(self.topology, live.values(), self.responder.snapshot.ns_address, self.ttl)
        self.responder.swap(snap)
        if self.zone_file is not None:  # the servers in the other centers answer from this
            write_zone_file(self.zone_file, snap)
        self._live = live  # only once the server serves it
        stats.requests += 1
        stats.batches.append(len(changes))

    def budget(self) -> dict[str, float]:
        return {"requests": float("inf")}  # no API in between: unlimited

    def estimate(self, changes: Changes) -> dict[str, int]:
        return {"requests": 1 if changes else 0, "tokens": 0}


def snapshot_from_records(topology: Topology, records: Iterable[Record], ns_address: str, ttl: int = 60) -> ZoneSnapshot:
    """The immutable snapshot the server answers from, built from the backend's records only."""
    ours = ownership_for(topology)
    answers: dict[str, tuple[str, ...]] = {}
    shares: dict[str, tuple[int, ...]] = {}
    chains: dict[str, list[tuple[int, str, tuple[str, ...]]]] = {}
    serial, table_hash = 1, ""
    for record in records:
        if record.name == ours.service and record.geo is not None and record.geo.country:
            cell, _, n = (record.set_id or record.geo.country).partition("/")
            if not n:
                answers[cell] = record.values
                if len(record.shares) == len(record.values) > 1:
                    shares[cell] = record.shares
            chains.setdefault(cell, []).append((int(n or 0), record.region or "", record.values))
        elif record.name.startswith(TABLE_LABEL + ".") and record.values:
            fields = dict(part.split("=", 1) for part in record.values[0].strip('"').split())
            serial, table_hash = max(1, int(fields.get("generation", "1"))), fields.get("hash", "")
    origin = dns.name.from_text(topology.zone)
    paths = {cell: tuple((center, values) for _, center, values in sorted(chain)) for cell, chain in chains.items() if cell in answers}
    return ZoneSnapshot(origin, dns.name.from_text(topology.service_name), dns.name.from_text("ns1", origin), ns_address,
                        answers, ttl, serial=serial, table_hash=table_hash, paths=paths, principal=dict(topology.principal_cell),
                        shares=shares)


def snapshot_for(topology: Topology, answers: Answers, ns_address: str = "127.0.0.1") -> ZoneSnapshot:
    """What the embedded backend serves for `answers`: the same render as a publish, without a server."""
    backend = EmbeddedBackend(topology, DnsResponder(empty_snapshot(topology, ns_address)))
    return snapshot_from_records(topology, backend.render(answers), ns_address, backend.ttl)


def snapshot_to_json(snap: ZoneSnapshot) -> dict[str, object]:
    return {"origin": snap.origin.to_text(), "service": snap.service.to_text(), "ns_host": snap.ns_host.to_text(),
            "ns_address": snap.ns_address, "answers": {k: list(v) for k, v in snap.answers.items()}, "ttl": snap.ttl,
            "serial": snap.serial, "table_hash": snap.table_hash,
            "paths": {k: [[c, list(a)] for c, a in v] for k, v in snap.paths.items()}, "principal": dict(snap.principal),
            "shares": {k: list(v) for k, v in snap.shares.items()}}


def snapshot_from_json(data: dict[str, Any]) -> ZoneSnapshot:
    """A zone file read back; what a server cannot render or must not answer with is refused by name (the
    server then keeps the zone it serves)."""
    answers = {str(k): _addresses(f"answers of cell {k!r}", v) for k, v in _mapping(data["answers"], "answers").items()}
    paths = {str(k): tuple((str(c), _addresses(f"paths of cell {k!r}", a)) for c, a in v)
             for k, v in _mapping(data.get("paths", {}), "paths").items()}
    ns_address = _addresses("ns_address", [data["ns_address"]])[0]
    ttl, serial = _whole(data["ttl"], "ttl", 0, 2**31 - 1), _whole(data["serial"], "serial", 0, 2**32 - 1)  # RFC 2181 8, RFC 1982
    shares = {str(k): _shares(k, v) for k, v in _mapping(data.get("shares", {}), "shares").items()}
    for cell, values in shares.items():
        if len(values) != len(answers.get(cell, ())) or len(values) < 2:
            raise ValueError(f"shares of cell {cell!r}: {len(values)} shares for {len(answers.get(cell, ()))} answer addresses")
    return ZoneSnapshot(dns.name.from_text(data["origin"]), dns.name.from_text(data["service"]), dns.name.from_text(data["ns_host"]),
                        ns_address, answers, ttl, serial, str(data["table_hash"]), paths,
                        principal={str(k): str(v) for k, v in data.get("principal", {}).items()}, shares=shares)


def _mapping(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{name}: a mapping is expected, not {type(value).__name__}")
    return value


def _addresses(name: str, values: Any) -> tuple[str, ...]:
    """IPv4 addresses in their canonical text: what the server puts in A records as they are."""
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ValueError(f"{name}: a list of IPv4 addresses is expected, not {values!r}")
    for value in values:
        try:
            canonical = str(ipaddress.IPv4Address(value))
        except ValueError:
            canonical = ""
        if canonical != value:
            raise ValueError(f"{name}: {value!r} is not an IPv4 address in canonical form")
    return tuple(values)


def _whole(value: Any, name: str, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"{name}: a whole number from {low} to {high} is expected, not {value!r}")
    return value


def _shares(cell: str, values: Any) -> tuple[int, ...]:
    shares = tuple(values) if isinstance(values, list) else ()
    if not shares or not all(isinstance(x, int) and not isinstance(x, bool) and 1 <= x <= 1_000_000 for x in shares):
        raise ValueError(f"shares of cell {cell!r}: a list of whole numbers from 1 to 1000000 is expected, not {values!r}")
    return shares


def write_zone_file(path: Path, snap: ZoneSnapshot) -> None:
    """The published zone for the servers in every center: written whole, then renamed, so a reader never
    sees half a table."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(snapshot_to_json(snap), sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


def responder_for(topology: Topology, ns_address: str, local_country: str | None = None) -> DnsResponder:
    """The stack's server: its locator (network database or country dataset), a judge for networks two
    countries' rules apply to, and no answers until the first publish (fail closed)."""
    return DnsResponder(empty_snapshot(topology, ns_address), locator_for(topology), local_country, PathJudge(topology).allows,
                        {c.id: c.country for c in topology.cells})


def empty_snapshot(topology: Topology, ns_address: str) -> ZoneSnapshot:
    """No answers at all: what the server serves before the first measured table (fail closed)."""
    return snapshot_from_records(topology, [], ns_address)
