"""Plan: the minimal changes that turn the current records the controller owns into the desired ones.

The controller only ever sees and touches records it owns (`owns(record)`); anything else in the
zone (SOA, NS, records of people or other tools) is outside the plan and can never be deleted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from globalaccel.dns.records import Record


@dataclass(frozen=True)
class Change:
    action: str  # CREATE | UPSERT | DELETE
    record: Record

    @property
    def tokens(self) -> int:
        """Route 53 change tokens: UPSERT is a delete plus a create."""
        return 2 if self.action == "UPSERT" else 1

    @property
    def values(self) -> int:
        """Values as counted against the 1,000-value batch limit (UPSERT counts twice)."""
        return self.record.value_count * self.tokens

    @property
    def chars(self) -> int:
        return self.record.char_count * self.tokens


@dataclass(frozen=True)
class Changes:
    creates: tuple[Change, ...] = ()
    updates: tuple[Change, ...] = ()
    deletes: tuple[Change, ...] = ()
    summary: dict[str, int] = field(default_factory=dict)

    @property
    def all(self) -> tuple[Change, ...]:
        return self.creates + self.updates + self.deletes

    def __len__(self) -> int:
        return len(self.creates) + len(self.updates) + len(self.deletes)

    @property
    def tokens(self) -> int:
        return sum(c.tokens for c in self.all)


def plan(current: Iterable[Record], desired: Iterable[Record], owns: Callable[[Record], bool]) -> Changes:
    """Diff by (name, type, set id). A record whose routing policy changes is deleted and created,
    since Route 53 cannot UPSERT one policy into another under the same identifier."""
    have = {r.key: r for r in current if owns(r)}
    want: dict[tuple[str, str, str], Record] = {}
    for record in desired:
        if not owns(record):
            raise ValueError(f"desired record {record.name} {record.type} is outside what the controller owns")
        if record.key in want:
            raise ValueError(f"desired records repeat {record.key}")
        want[record.key] = record
    creates: list[Change] = []
    updates: list[Change] = []
    deletes: list[Change] = []
    for key in sorted(want):
        new = want[key]
        old = have.get(key)
        if old is None:
            creates.append(Change("CREATE", new))
        elif old != new:
            if old.policy != new.policy or (old.alias is None) != (new.alias is None):
                deletes.append(Change("DELETE", old))
                creates.append(Change("CREATE", new))
            else:
                updates.append(Change("UPSERT", new))
    deletes.extend(Change("DELETE", have[key]) for key in sorted(set(have) - set(want)))
    return Changes(tuple(creates), tuple(updates), tuple(deletes),
                   {"create": len(creates), "update": len(updates), "delete": len(deletes)})
