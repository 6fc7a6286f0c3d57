"""Hash-chained decision log: one JSON line per routing table change.

Each line holds the generation, the previous line's hash, the table's content hash, the reasons
(what changed and why) and the routes of changed cells; its own `hash` is SHA-256 over the canonical
JSON of everything else. Changing or removing any line breaks the chain at that line, which
`verify_chain` names.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from globalaccel.findings import Finding
from globalaccel.routing import RoutingTable

GENESIS = "0" * 64
LOG_NAME = "decisions.jsonl"


@dataclass(frozen=True)
class LoggedRoute:
    country: str
    center: str | None
    edges: tuple[str, ...]
    # best | held | preferred_fallback | fail_closed | no_healthy_path | center_capacity | edge_capacity
    # ("" in logs written before it was kept)
    reason: str = ""


@dataclass(frozen=True)
class DecisionEntry:
    """One table change: what the loop decided, why, and the routes of the cells that changed."""

    generation: int
    time: float
    table_hash: str
    stack: str
    routes: Mapping[str, LoggedRoute]  # cell id -> route, only the cells that changed
    health_changes: Mapping[str, tuple[str, str]] = field(default_factory=dict)  # target -> (before, after)
    residency_violations: int = 0
    rules_hash: str = ""  # the residency rule set that produced the table ("" in logs written before it was kept)
    rules_as_of: str = ""  # the day the rules were resolved for: a dated rule switching shows here, the hash covers all periods

    @classmethod
    def for_table(cls, table: RoutingTable, changed: Iterable[str], now: float, stack: str,
                  health_changes: Mapping[str, tuple[str, str]], residency_violations: int, rules_hash: str = "",
                  rules_as_of: str = "") -> DecisionEntry:
        routes = {cid: LoggedRoute(table.routes[cid].country, table.routes[cid].center, table.routes[cid].edge_ids,
                                   table.routes[cid].reason) for cid in sorted(changed)}
        return cls(table.generation, round(now, 3), table.content_hash, stack, routes, dict(sorted(health_changes.items())),
                   residency_violations, rules_hash, rules_as_of)

    def to_json(self) -> dict[str, Any]:
        return {
            "generation": self.generation, "time": self.time, "table_hash": self.table_hash, "stack": self.stack,
            "reasons": {"health": {t: list(c) for t, c in self.health_changes.items()}, "cells": sorted(self.routes)[:500]},
            "routes": {cid: {"center": r.center, "edges": list(r.edges), "country": r.country, "reason": r.reason}
                       for cid, r in self.routes.items()},
            "residency_violations": self.residency_violations,
            "rules_hash": self.rules_hash, "rules_as_of": self.rules_as_of,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DecisionEntry:
        routes = {str(cid): LoggedRoute(str(r.get("country", cid)), r.get("center"), tuple(r.get("edges") or ()), str(r.get("reason", "")))
                  for cid, r in (data.get("routes") or {}).items()}
        health = {str(t): (str(c[0]), str(c[1])) for t, c in ((data.get("reasons") or {}).get("health") or {}).items()}
        return cls(int(data.get("generation", 0)), float(data.get("time", 0.0)), str(data.get("table_hash", "")),
                   str(data.get("stack", "")), routes, health, int(data.get("residency_violations", 0)), str(data.get("rules_hash", "")),
                   str(data.get("rules_as_of", "")))


def replay(entries: Iterable[DecisionEntry]) -> dict[str, LoggedRoute]:
    """The live table as the log tells it: each cell's latest logged route."""
    routes: dict[str, LoggedRoute] = {}
    for entry in entries:
        routes.update(entry.routes)
    return routes


def line_hash(entry: dict[str, Any]) -> str:
    body = {k: v for k, v in entry.items() if k != "hash"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class DecisionLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.last_hash = GENESIS
        self.length = 0  # entries in the log
        if path.exists():
            for number, line in enumerate(path.read_text().splitlines(), start=1):
                if not line.strip():
                    continue
                try:
                    self.last_hash = json.loads(line)["hash"]
                    self.length += 1
                except (json.JSONDecodeError, KeyError, TypeError) as exc:
                    # Appending after a broken line would chain onto a guess: stop, and say where.
                    from globalaccel.control.state import StateError

                    raise StateError(f"{path}:{number}: decision log line is not a log entry ({exc}); the audit names what "
                                     "changed (globalaccel audit --state-dir); move the log aside to start a new chain") from exc

    def append(self, entry: DecisionEntry) -> dict[str, Any]:
        record = {**entry.to_json(), "prev": self.last_hash}
        record["hash"] = line_hash(record)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.last_hash = record["hash"]
        self.length += 1
        return record


def read_entries(path: Path) -> tuple[list[DecisionEntry], list[Finding]]:
    """The log's entries, typed, and every place the chain is broken."""
    raw, problems = verify_chain(path)
    return [DecisionEntry.from_json(e) for e in raw], problems


def verify_chain(path: Path) -> tuple[list[dict[str, Any]], list[Finding]]:
    """Every entry, and every place where the chain is broken: log_tampered findings on `<file>:<line>` (1-based)."""
    entries: list[dict[str, Any]] = []
    problems: list[Finding] = []
    prev = GENESIS
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(Finding("log_tampered", f"{path.name}:{number}", f"not JSON: {exc.msg}"))
            prev = "?"
            continue
        if entry.get("prev") != prev:
            problems.append(Finding("log_tampered", f"{path.name}:{number}",
                                    "previous-hash link broken: a line before it was changed, removed or inserted"))
        if line_hash(entry) != entry.get("hash"):
            problems.append(Finding("log_tampered", f"{path.name}:{number}", "content does not match its hash: this line was changed"))
        entries.append(entry)
        prev = entry.get("hash", "?")
    return entries, problems
