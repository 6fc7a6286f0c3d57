"""Drift: does the live zone differ from the table the loop last published?

The table is the loop's own (its saved router state: every cell's center, edges and weights) when the
audit is given the loop's state folder, else the one computed from the stack's files. It is rendered by
the same compiler the loop publishes with and diffed against the live records this stack owns, so a
changed TTL or weight, a deleted country record or a stray owned record is named. Drift is not a
residency violation: it is reported apart (globalaccel.audit.findings.DRIFT_KINDS).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from globalaccel.control.state import StateStore
from globalaccel.dns.plan import plan
from globalaccel.dns.records import Record
from globalaccel.findings import Finding
from globalaccel.routing import REASON_NO_PATH, Answer, CellRoute, RoutingTable
from globalaccel.routing.fallback import FallbackOrder
from globalaccel.topology import Topology


def published_table(state_dir: Path, topology: Topology) -> RoutingTable | None:
    """The table in the loop's saved state, or None when the folder holds no state of this stack."""
    store = StateStore(state_dir)
    data = store.load()
    if not data or data.get("stack") != topology.stack:
        return None
    state = store.router_state(data)
    routes: dict[str, CellRoute] = {}
    fallback = FallbackOrder(topology)
    for cell in topology.cells:
        saved = state.cells.get(cell.id)
        if saved is None or saved.center is None:
            routes[cell.id] = CellRoute(cell.id, cell.country, None, (), REASON_NO_PATH)
            continue
        answers = tuple(Answer(e, topology.edge_by_id[e].address_for(saved.center), w, 0.0)
                        for e, w in zip(saved.edges, saved.weights, strict=True) if e in topology.edge_by_id)
        routes[cell.id] = CellRoute(cell.id, cell.country, saved.center, answers, "published", fallback.after(cell, saved.center))
    return RoutingTable(topology.stack, state.generation, state.content_hash, routes, {}, {}, 0.0)


def _describe(record: Record) -> str:
    what = f"alias {record.alias}" if record.alias else f"{' '.join(record.values)} ttl {record.ttl}"
    return what + (f" weight {record.weight}" if record.weight is not None else "")


def record_drift(live: Iterable[Record], desired: Iterable[Record], owns: Callable[[Record], bool]) -> list[Finding]:
    """One finding per owned record the live zone has differently from the table's rendering."""
    live = list(live)
    by_key = {r.key: r for r in live}
    changes = plan(live, desired, owns)
    out = []
    for change in changes.creates:
        out.append(Finding("record_drift", " ".join(change.record.key).strip(), f"missing from the live zone: {_describe(change.record)}"))
    for change in changes.updates:
        was = by_key.get(change.record.key)
        out.append(Finding("record_drift", " ".join(change.record.key).strip(),
                           f"live {_describe(was) if was else '?'}; the table says {_describe(change.record)}"))
    for change in changes.deletes:
        out.append(Finding("record_drift", " ".join(change.record.key).strip(),
                           f"in the live zone, not in the table: {_describe(change.record)}"))
    return out
