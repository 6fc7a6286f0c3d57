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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GENESIS = "0" * 64


def line_hash(entry: dict[str, Any]) -> str:
    body = {k: v for k, v in entry.items() if k != "hash"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class DecisionLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.last_hash = GENESIS
        if path.exists():
            for line in path.read_text().splitlines():
                if line.strip():
                    self.last_hash = json.loads(line)["hash"]

    def append(self, entry: dict[str, Any]) -> dict[str, Any]:
        record = {**entry, "prev": self.last_hash}
        record["hash"] = line_hash(record)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.last_hash = record["hash"]
        return record


@dataclass(frozen=True)
class ChainProblem:
    line: int
    message: str


def verify_chain(path: Path) -> tuple[list[dict[str, Any]], list[ChainProblem]]:
    """Every entry, and every place where the chain is broken (line numbers are 1-based)."""
    entries: list[dict[str, Any]] = []
    problems: list[ChainProblem] = []
    prev = GENESIS
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(ChainProblem(number, f"not JSON: {exc.msg}"))
            prev = "?"
            continue
        if entry.get("prev") != prev:
            problems.append(ChainProblem(number, "previous-hash link broken: a line before it was changed, removed or inserted"))
        if line_hash(entry) != entry.get("hash"):
            problems.append(ChainProblem(number, "content does not match its hash: this line was changed"))
        entries.append(entry)
        prev = entry.get("hash", "?")
    return entries, problems
