"""Answers: the one view of a RoutingTable that DNS backends, the audit, `plan` and the Pulumi program read.

Every selector (a country today; a client cell or network next) has an explicit decision:

- `Served`: the center and the ordered edges (with weights) a client there is given, and the paths the
  DNS data plane falls back to, in order, when that center fails (the same edges, on their address for
  another center the rule allows: globalaccel.routing.fallback);
- `FailClosed`: a strict rule leaves no healthy allowed center, so the client must get nothing;
- `NoPath`: nothing healthy at all could serve the client (not a residency outcome).

Absence is never a state. Building the view from a table that lacks a route for a cell of the
topology raises, and asking for a selector the view does not know raises `UnknownSelector`: a consumer
that silently treated "missing" as "fail closed" would turn a keying bug into a dark world that every
test calls compliant.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from globalaccel.routing import REASON_FAIL_CLOSED, Answer, CellRoute, RoutingTable
from globalaccel.topology import Topology


class UnknownSelector(KeyError):
    """A selector (country, cell) that the view has no decision for."""


class InconsistentTable(ValueError):
    """A routing table that does not cover the topology's cells: never published, never audited as is."""


@dataclass(frozen=True)
class FallbackPath:
    center: str
    answers: tuple[Answer, ...]  # the served answers' edges and weights, on their address for `center`

    @property
    def addresses(self) -> tuple[str, ...]:
        return tuple(a.address for a in sorted(self.answers, key=lambda a: (-a.weight, a.edge_id)))


@dataclass(frozen=True)
class Served:
    center: str
    answers: tuple[Answer, ...]  # the router's ranking, best first
    reason: str  # best | held | preferred_fallback | center_capacity | edge_capacity
    fallback: tuple[FallbackPath, ...] = ()  # where the data plane goes when `center` fails, in order

    state = "served"

    @property
    def paths(self) -> tuple[FallbackPath, ...]:
        """Every path the data plane may answer with, the chosen center's first."""
        return (FallbackPath(self.center, self.answers), *self.fallback)

    @property
    def served_order(self) -> tuple[Answer, ...]:
        """The order clients are given: heaviest share first, edge id breaking ties (stable across cycles)."""
        return tuple(sorted(self.answers, key=lambda a: (-a.weight, a.edge_id)))

    @property
    def addresses(self) -> tuple[str, ...]:
        return tuple(a.address for a in self.served_order)

    @property
    def edge_ids(self) -> tuple[str, ...]:
        return tuple(a.edge_id for a in self.answers)


@dataclass(frozen=True)
class FailClosed:
    rule: str  # the residency rule that forbids every healthy center

    state = "fail_closed"


@dataclass(frozen=True)
class NoPath:
    why: str

    state = "no_path"


Decision = Served | FailClosed | NoPath


def decision_of(route: CellRoute, rule: str, topology: Topology) -> Decision:
    if route.center is not None and route.answers:
        edges = topology.edge_by_id
        fallback = tuple(
            # Answer(...) rather than _replace: this runs for every answer of every cell and fallback center.
            FallbackPath(center, tuple(Answer(a.edge_id, edges[a.edge_id].address_for(center), a.weight, a.rtt_ms) for a in route.answers))
            for center in route.fallback
        )
        return Served(route.center, route.answers, route.reason, fallback)
    if route.reason == REASON_FAIL_CLOSED:
        return FailClosed(rule)
    return NoPath(route.reason)


@dataclass(frozen=True)
class Answers:
    stack: str
    generation: int
    table_hash: str
    cells: Mapping[str, Decision]  # cell id -> decision, for every cell of the topology
    cells_of_country: Mapping[str, tuple[str, ...]]  # every country of the topology -> its cells, principal first

    @classmethod
    def from_table(cls, table: RoutingTable, topology: Topology) -> Answers:
        missing = [c.id for c in topology.cells if c.id not in table.routes]
        if missing:
            raise InconsistentTable(f"routing table {table.content_hash[:16]} has no route for cells {missing[:10]}"
                                    f"{' ...' if len(missing) > 10 else ''}")
        cells: dict[str, Decision] = {}
        of_country: dict[str, list[str]] = {code: [] for code in topology.countries}
        for cell in topology.cells:
            rule = topology.residency.rule_for(cell.country).name
            cells[cell.id] = decision_of(table.routes[cell.id], rule, topology)
            if cell.country not in of_country:
                raise InconsistentTable(f"cell {cell.id} is in {cell.country!r}, which is not a country of the stack")
            of_country[cell.country].append(cell.id)
        # Principal cell first (globalaccel.cells.principal_cells): its answer stands for the country.
        principal = topology.principal_cell
        ordered = {k: tuple(sorted(v, key=lambda cid: (cid != principal.get(k), cid))) for k, v in of_country.items()}
        return cls(table.stack, table.generation, table.content_hash, cells, ordered)

    # ---- selectors ---------------------------------------------------------------------------------
    def cell(self, cell_id: str) -> Decision:
        try:
            return self.cells[cell_id]
        except KeyError:
            raise UnknownSelector(f"no decision for cell {cell_id!r} in table {self.table_hash[:16]}") from None

    def country(self, code: str) -> Decision:
        """The decision for clients located only by country (Route 53 geolocation, PowerDNS by country, a
        network the city database does not place): the decision of the country's principal cell, the one
        with the most demand. Every cell of a country shares its rule, so this answer is as lawful for the
        whole country as for that cell; what it costs the other cells is reported as extra RTT (plan)."""
        cells = self.cells_of_country.get(code)
        if cells is None:
            raise UnknownSelector(f"{code!r} is not a country of stack {self.stack}")
        if not cells:
            raise InconsistentTable(f"{code} has no cell in table {self.table_hash[:16]}")
        return self.cells[cells[0]]

    def principal_cell(self, code: str) -> str:
        """The cell whose decision `country(code)` gives."""
        self.country(code)
        return self.cells_of_country[code][0]

    def countries(self) -> Iterator[tuple[str, Decision]]:
        """Every country of the stack, in code order, with its decision."""
        for code in sorted(self.cells_of_country):
            yield code, self.country(code)

    def served_countries(self) -> Iterator[tuple[str, Served]]:
        for code, decision in self.countries():
            if isinstance(decision, Served):
                yield code, decision
