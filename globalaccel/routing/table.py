"""The routing table and its parts: per cell, the center and ordered answers, and why. Versioned.

`RoutingTable` is the central artifact of globalaccel. Consumers outside routing read it through
`globalaccel.answers.Answers`, never by key.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, NoReturn

from globalaccel.topology import Topology

REASON_BEST = "best"
REASON_HELD = "held"  # hysteresis kept the current route
REASON_FALLBACK = "preferred_fallback"  # preferred centers all down, another center serves
REASON_FAIL_CLOSED = "fail_closed"  # strict rule, no healthy allowed center
REASON_NO_PATH = "no_healthy_path"  # no healthy center or edge at all
REASON_CENTER_FULL = "center_capacity"  # its best center is beyond capacity; the next allowed one with room serves
REASON_EDGE_FULL = "edge_capacity"  # moved off an edge beyond its budget, onto its planned edges with room, not held there
# every one a route may give
REASONS = (REASON_BEST, REASON_HELD, REASON_FALLBACK, REASON_FAIL_CLOSED, REASON_NO_PATH, REASON_CENTER_FULL, REASON_EDGE_FULL)


class Answer(NamedTuple):
    edge_id: str
    address: str
    weight: float  # share of the cell's demand sent to this edge
    rtt_ms: float  # estimated client -> edge -> center RTT


class CellRoute(NamedTuple):
    """One cell's route. (A NamedTuple rather than a frozen dataclass: the router builds one per cell each evaluation,
    100,000 at a time, and a frozen dataclass costs about three times as much to build.)"""

    cell_id: str
    country: str
    center: str | None
    answers: tuple[Answer, ...]
    reason: str
    # The other centers the cell's rule allows, in the order the DNS data plane fails over to them when
    # `center` fails (routing.fallback): the same edges answer, on their address for that center.
    fallback: tuple[str, ...] = ()

    @property
    def rtt_ms(self) -> float | None:
        if not self.answers:
            return None
        return sum(a.weight * a.rtt_ms for a in self.answers)

    @property
    def edge_ids(self) -> tuple[str, ...]:
        return tuple(a.edge_id for a in self.answers)


@dataclass(frozen=True)
class Health:
    """What is up right now. The probe loop derives it with hysteresis and quorum."""

    edges: frozenset[str]
    centers: frozenset[str]

    @classmethod
    def all_up(cls, topology: Topology) -> Health:
        return cls(frozenset(e.id for e in topology.edges), frozenset(c.id for c in topology.centers))


class CellState(NamedTuple):
    """Hysteresis memory of one cell."""

    center: str | None
    edges: tuple[str, ...]
    weights: tuple[float, ...]
    pending: int = 0  # consecutive evaluations in which a clearly better route existed
    last_switch_at: float | None = None
    # Placed before the measurements settled (LatencyModel.settled): not held, the plan places it afresh each evaluation
    # until they have. Holding what one noisy first sample placed kept it for good (routing.hysteresis, Case.PROVISIONAL).
    provisional: bool = False


class FrozenCells(dict[str, CellState]):
    """The cells of a state the router made: a dict that refuses changes (the router keeps the same routes as arrays
    with the state, good only while its cells are these). Copy it to change it: `dict(state.cells)`. It pickles, copies
    and compares as a dict."""

    def _refuse(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError("a router state's cells cannot be changed in place: copy them (dict(state.cells)) and make a new state")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = __ior__ = _refuse

    def __reduce__(self) -> tuple[type[FrozenCells], tuple[dict[str, CellState]]]:
        return FrozenCells, (dict(self),)

    def __copy__(self) -> FrozenCells:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> FrozenCells:
        return FrozenCells({k: copy.deepcopy(v, memo) for k, v in self.items()})


@dataclass(frozen=True)
class RouterState:
    generation: int = 0
    content_hash: str = ""
    cells: Mapping[str, CellState] = field(default_factory=dict)
    # The same routes as arrays, as the router that made this state keeps them (routing.current.StateColumns), so that
    # its next evaluation need not read them back cell by cell. Not part of the state's value.
    columns: object = field(default=None, compare=False, repr=False)

    def to_json(self) -> dict[str, object]:
        return {
            "generation": self.generation,
            "content_hash": self.content_hash,
            "cells": {
                k: {"center": v.center, "edges": list(v.edges), "weights": list(v.weights), "pending": v.pending,
                    "last_switch_at": v.last_switch_at, "provisional": v.provisional}
                for k, v in sorted(self.cells.items())
            },
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> RouterState:
        cells_raw = data.get("cells", {})
        assert isinstance(cells_raw, dict)
        cells = {
            k: CellState(v["center"], tuple(v["edges"]), tuple(float(w) for w in v["weights"]), int(v["pending"]),
                         v["last_switch_at"], v.get("provisional", False))  # absent in states saved before it was kept
            for k, v in cells_raw.items()
        }
        for k, cell in cells.items():
            if not isinstance(cell.provisional, bool):  # "false" would read as True
                raise ValueError(f"router state, cell {k}: provisional must be true or false, got {cell.provisional!r}")
        for k, cell in cells.items():
            if len(cell.edges) != len(cell.weights):
                raise ValueError(f"router state, cell {k}: {len(cell.edges)} edges but {len(cell.weights)} weights")
        return cls(int(data.get("generation", 0)), str(data.get("content_hash", "")), cells)  # type: ignore[call-overload]


@dataclass(frozen=True)
class RoutingTable:
    """The central artifact: per cell, the center and ordered answers, and why. Versioned."""

    stack: str
    generation: int
    content_hash: str
    routes: Mapping[str, CellRoute]
    edge_load: Mapping[str, float]  # demand carried per edge
    edge_budget: Mapping[str, float]  # demand each edge may carry
    overflow: float  # demand carried beyond budgets, summed over edges

    def fail_closed(self) -> list[str]:
        return sorted({r.country for r in self.routes.values() if r.reason == REASON_FAIL_CLOSED})


def route_line(cell_id: str, center: str | None, edge_ids: tuple[str, ...], weights: tuple[float, ...],
               fallback: tuple[str, ...]) -> str:
    """One cell's decision as table_hash reads it."""
    return f"{cell_id}\t{center}\t{' '.join(edge_ids)}\t{' '.join([repr(w) for w in weights])}\t{' '.join(fallback)}\n"


def table_hash(routes: Mapping[str, CellRoute]) -> str:
    """Hash of routing decisions only (not of the latency figures that change every cycle). Weights
    enter by their exact shortest repr: the same inputs give bit-identical weights."""
    return hash_lines({cid: route_line(cid, r.center, tuple([a.edge_id for a in r.answers]), tuple([a.weight for a in r.answers]),
                                       r.fallback) for cid, r in routes.items()})


def hash_lines(lines: Mapping[str, str], ids_sorted: Sequence[str] | None = None) -> str:
    """table_hash from each cell's route_line. `ids_sorted`: sorted(lines), when the caller keeps it."""
    order = sorted(lines) if ids_sorted is None else ids_sorted
    if len(order) != len(lines):
        raise ValueError(f"{len(lines)} lines, {len(order)} ids to hash them in")
    return hashlib.sha256("".join([lines[cid] for cid in order]).encode()).hexdigest()


# Ties (co-located edges have exactly equal costs) break by edge position: the key adds
