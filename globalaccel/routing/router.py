"""The router: topology + residency + latency + health -> RoutingTable.

For every client cell it picks one center and the best k edges in front of it, minimising
client->edge + edge->center RTT, among the healthy edges and centers the cell's residency rule allows
on its path (residency decides; this module never re-derives it). Strict cells with no healthy
allowed center fail closed: an empty answer, never another region. Each answer's address is the
edge's address for the chosen center, so the answer alone fixes the whole path.

Cells whose rules allow the same edges form a group; one candidate search scores every cell, an edge
its group forbids costing infinity for it.

Steps, each vectorised over cells:
1. candidates (routing.candidates): the allowed center with the cheapest best path and its ranked
   edges, proven exact;
2. capacity (routing.capacity): each cell's demand split over its answers within edge budgets, the
   routes hysteresis may hold kept in place, overflow reported, never hidden;
3. hysteresis (routing.hysteresis): a valid current route is only replaced when the new one is better
   by max(absolute ms, relative %) for N evaluations in a row, and not within the hold-down; the switches
   granted take effect together where they fit the edge budgets (capacity.admit). A provisional route (placed before
   the measurements settled, LatencyModel.settled) is not held: it takes its fresh route;
4. relief (routing.relief): cells held on an edge beyond its budget move into the room really left, near where they
   are, once outside their hold-down.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

from globalaccel.cells import Cell
from globalaccel.latency import LatencyModel
from globalaccel.residency import Eligibility, Role
from globalaccel.routing.candidates import CandidateSearch
from globalaccel.routing.capacity import CapacityPlanner, id_ranks
from globalaccel.routing.center_load import CenterLoad
from globalaccel.routing.current import NONE, CurrentRoutes, StateColumns, current_routes, served_as_current
from globalaccel.routing.fallback import FallbackOrder
from globalaccel.routing.final_ranks import final_ranks
from globalaccel.routing.heap import cycle_collection_paused
from globalaccel.routing.hysteresis import Case, judge, settle
from globalaccel.routing.relief import RELIEF_RANKS, Relief
from globalaccel.routing.route_builder import RouteBuilder
from globalaccel.routing.route_costs import RouteColumns, RouteCosts
from globalaccel.routing.table import (
    REASON_BEST,
    REASON_CENTER_FULL,
    REASON_EDGE_FULL,
    REASON_FAIL_CLOSED,
    REASON_HELD,
    REASON_NO_PATH,
    CellState,
    FrozenCells,
    Health,
    RouterState,
    RoutingTable,
    hash_lines,
    route_line,
)
from globalaccel.routing.table_routes import TableRoutes
from globalaccel.topology import Topology

_UNDECIDED = CellState(None, (), ())  # a placeholder in the table's columns until the cell is decided

# Each cell's case before costs are compared (hysteresis.Case, plus the router's own two).
_NOT_ROUTABLE, _PROVISIONAL, _LEAVING, _FIRST, _INVALID, _SAME, _JUDGE = range(7)


def _same_rows(a: NDArray[np.intp], b: NDArray[np.intp]) -> NDArray[np.bool_]:
    """(N,) whether row n of a equals row n of b, both -1 padded (to different widths, maybe)."""
    width = max(a.shape[1], b.shape[1])
    pad_a = np.pad(a, ((0, 0), (0, width - a.shape[1])), constant_values=-1)
    pad_b = np.pad(b, ((0, 0), (0, width - b.shape[1])), constant_values=-1)
    out: NDArray[np.bool_] = (pad_a == pad_b).all(axis=1)
    return out


class _EdgeGroup(NamedTuple):
    """Cells whose rules allow the same edges on their path."""

    rows: NDArray[np.intp]  # positions of the cells in Router.cells
    edge_mask: NDArray[np.bool_]  # (E,) edges allowed on these cells' paths


class Router:
    """Computes routing tables for one topology. Reuse it across cycles: it caches geometry."""

    def __init__(self, topology: Topology, cells: Iterable[Cell] | None = None) -> None:
        self.topology = topology
        self.cells: tuple[Cell, ...] = tuple(cells) if cells is not None else topology.cells
        twice = sorted(cid for cid, n in Counter(c.id for c in self.cells).items() if n > 1)
        if twice:  # a table holds one route per id: a second cell of the same id would be routed unseen
            raise ValueError(f"cell ids must be unique; given more than once: {', '.join(twice[:10])}")
        self.settings = topology.routing
        self._center_ids = topology.center_ids
        self._edge_ids = tuple(e.id for e in topology.edges)
        self._edge_pos = {eid: i for i, eid in enumerate(self._edge_ids)}
        self._center_pos = {c: i for i, c in enumerate(self._center_ids)}
        self._id_rank = id_ranks(self.cells)
        self._token = object()  # marks the states this router made, whose routes as arrays it may take as they are
        self.groups = self._edge_groups()
        self.search = CandidateSearch(topology, self.cells)
        self._edge_ok = np.array([g.edge_mask for g in self.groups], dtype=bool)  # (G, E)
        self._cell_group = np.zeros(len(self.cells), dtype=np.intp)
        for g, group in enumerate(self.groups):
            self._cell_group[group.rows] = g
        self._constrained = not self._edge_ok.all()
        self.capacity = CapacityPlanner(topology, self.cells)
        self.center_load = CenterLoad(topology, self.cells)
        self.fallback = FallbackOrder(topology)
        self._fallback_of = self.fallback.after_each(self.cells, self._center_ids)
        self._ids_sorted = sorted(c.id for c in self.cells)  # the table hash's order: every cell has a line
        self._countries = sorted({c.country for c in self.cells})
        country_pos = {code: k for k, code in enumerate(self._countries)}
        self._cell_country = np.array([country_pos[c.country] for c in self.cells], dtype=np.intp)
        self.costs = RouteCosts(topology, self.cells)
        # center -> edge id -> the address that takes a client through that edge to that center
        addresses = {c: {e.id: e.address_for(c) for e in topology.edges if c in dict(e.center_addresses)}
                     for c in self._center_ids}
        self._addresses = addresses
        self._cell_ids = tuple(c.id for c in self.cells)
        self._cell_index = {cid: n for n, cid in enumerate(self._cell_ids)}
        self._cell_countries = tuple(c.country for c in self.cells)
        self.builder = RouteBuilder(self.cells, self._fallback_of)
        self.relief = Relief(self.capacity, self.costs, self.settings, self.center_load.demand, self._id_rank)

    # ----------------------------------------------------------------------------------------------
    def compute(
        self,
        latency: LatencyModel,
        health: Health | None = None,
        now: float = 0.0,
        state: RouterState | None = None,
    ) -> tuple[RoutingTable, RouterState]:
        """One evaluation. Pure: the same inputs give the same table and hash; `state` is not mutated."""
        # An evaluation builds a few new tuples per cell that all survive (decisions, states; the routes themselves
        # are built when read, routing.table_routes): each time the cycle collector triggers meanwhile, it walks every
        # one built so far. Nothing here makes a reference cycle, so it waits until the evaluation is done (100,000
        # cells, when every route was built here: 6.0 s -> 4.1 s warm, one sitting).
        with cycle_collection_paused():
            return self._compute(latency, health, now, state)

    def _compute(self, latency: LatencyModel, health: Health | None, now: float,
                 state: RouterState | None) -> tuple[RoutingTable, RouterState]:
        topo = self.topology
        health = health or Health.all_up(topo)
        state = state or RouterState()
        healthy_idx = np.array([i for i, eid in enumerate(self._edge_ids) if eid in health.edges], dtype=np.intp)
        # The plan and hysteresis read the same figures: each path's median of its last `steady_samples` (the measured
        # distribution: hysteresis, below). Planned on the moving average, which one stall of the prober moves by tens of
        # ms for several cycles, the real loop's settled plan crowded its cells off edges that only looked slow: 7.7 % of
        # demand beyond budgets (its averages were 7 ms above physics at the median path, 65 ms at the 95th percentile).
        hyst = self.settings.hysteresis
        steady, leg_band = latency.center_edge_steady_ms(now, hyst.steady_samples)
        center_edge = steady
        penalty = latency.edge_penalty_ms(now, steady)
        eligibility = self._eligibility(health)

        shed: dict[int, int] = {}  # cell position -> the center it was moved off (beyond that center's capacity)
        choice = np.full(len(self.cells), -1, dtype=np.intp)
        # (N, ranks) each cell's candidate edges (catalog positions), best first, -1 past its last
        ranked = np.full((len(self.cells), 1), -1, dtype=np.intp)
        allowed, lawful = self._center_masks(eligibility)
        present = current_routes(state, self.cells, self._center_pos, self._edge_pos, max(1, self.settings.max_answers),
                                 self._token)
        if healthy_idx.size:
            prefer, prev_edges = self.search.sticky(present, healthy_idx)
            edge_ok, cell_group = (self._edge_ok, self._cell_group) if self._constrained else (None, None)
            choice, ranked_idx, ranked_cost = self.search.select(latency, healthy_idx, center_edge, penalty, allowed, prefer,
                                                                 edge_ok, cell_group)
            def again(trial: NDArray[np.bool_], rows: NDArray[np.intp]) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.float64]]:
                return self.search.select(latency, healthy_idx, center_edge, penalty, trial, prefer, edge_ok, cell_group, rows)

            # Load may spill to any center the rule allows (a later tier too: lawful, only less preferred).
            if self.center_load.limited:
                shed = self.center_load.shed(choice, ranked_idx, ranked_cost, lawful, again, prefer)
            # Current edges favoured by the margin where the center stays, so that noise cannot reshuffle near-equal
            # edges; ranks past a cell's allowed edges hold forbidden ones (infinite cost): never offered.
            ranked = np.empty(ranked_idx.shape, dtype=np.int64)
            edge_ok_arg, group_arg = ((self._edge_ok, self._cell_group.astype(np.int64)) if self._constrained
                                      else (np.ones((1, 1), dtype=bool), np.empty(0, dtype=np.int64)))
            final_ranks(ranked_idx.astype(np.int64, copy=False), ranked_cost, choice.astype(np.int64, copy=False),
                        prefer.astype(np.int64, copy=False), prev_edges.astype(np.int64, copy=False), hyst.absolute_ms,
                        hyst.relative, healthy_idx.astype(np.int64, copy=False), edge_ok_arg, group_arg, ranked)
        routable = choice >= 0
        # Cells whose current route may stay (hysteresis decides whether it does): the capacity plan keeps their
        # current load in place, places the cells that must move around it, then plans these in what is left.
        # A provisional route (placed before the measurements settled) is placed afresh: never held, never counted as staying.
        valid_mask = self._still_valid(present, healthy_idx, allowed, lawful, choice) & ~present.provisional
        # Cells shed off their current center move whatever hysteresis says: placed with the cells that must move.
        leaving = {pos for pos, c in shed.items() if present.center[pos] == c}
        if self.center_load.limited:
            # So are the held cells a center beyond its capacity must let go: placed in the room really left, before
            # hysteresis (afterwards, only a backstop is left: CenterLoad.release_holds_beyond_capacity).
            stays = valid_mask.copy()  # a valid route has a known current center
            stays[list(leaving)] = False
            leaving |= self.center_load.holds_to_let_go(present.center, stays, choice, self._id_rank)
        holding_mask = valid_mask.copy()
        holding_mask[list(leaving)] = False
        holding_rows = np.flatnonzero(holding_mask)
        holding = (RouteColumns(holding_rows, present.center[holding_rows], present.edges[holding_rows],
                                present.weights[holding_rows]) if holding_rows.size else None)
        hold_at = np.full(len(self.cells), -1, dtype=np.intp)  # each cell's row in `holding` (-1: none)
        hold_at[holding_rows] = np.arange(holding_rows.size)

        budget = self.capacity.budgets(healthy_idx, routable)
        allocation = self.capacity.allocate(ranked, routable, budget, holding)
        # The fresh routes as arrays (rows: cells), costed as they are; as objects only for the cells that take one.
        fresh_routes = RouteColumns(np.arange(len(self.cells), dtype=np.intp), np.maximum(choice, 0), allocation.edges,
                                    allocation.weights)
        edge_ids = self._edge_ids
        placed_early = not latency.settled(now, hyst.steady_samples)  # routes placed now are provisional

        def fresh_of(pos: int) -> CellState:
            return CellState(self._center_ids[choice[pos]], *allocation.route(pos, edge_ids), 0, None, placed_early)

        # The table's columns, by cell position: each cell's decided route (center None: none) and why.
        states: list[CellState] = [_UNDECIDED] * len(self.cells)
        reasons: list[str] = [""] * len(self.cells)
        lines: dict[str, str] = {}  # each cell's line of the table hash
        # Hysteresis judges on the measured distribution (`steady`, read above, as the plan does): each leg's median of
        # its last `steady_samples` (not the moving average, which one spike moves for several cycles; nor of its last 5,
        # which a few slow cycles of the prober move: on the real loop 8.8 % of cells changed an hour with 5, 1.2 % with
        # 16, BENCHMARKS.md), and how far its figure moves with noise alone: its edge leg's band, plus the band of the
        # edge's penalty (the median over vantages, as the penalty itself), which the client leg carries.
        steady_lookup = steady + penalty[None, :]
        band = leg_band + np.median(leg_band, axis=0)[None, :]
        # Each cell's case before any cost is compared: hysteresis.classify, for every cell at once (still_valid is
        # _still_valid; the same route is the same center and the same edges).
        moving_off = np.zeros(len(self.cells), dtype=bool)
        moving_off[list(leaving)] = True
        same = valid_mask & (present.center == choice) & _same_rows(present.edges, allocation.edges)
        case = np.select([~routable, present.provisional & (present.center != NONE), moving_off, present.center == NONE,
                          ~valid_mask, same],
                         [_NOT_ROUTABLE, _PROVISIONAL, _LEAVING, _FIRST, _INVALID, _SAME], _JUDGE).tolist()
        # One decision per routable cell, in cell order: (position, decided route, reason). Fresh routes are built as objects
        # only where a cell takes one (fresh_of): most judged cells hold theirs.
        decisions: list[tuple[int, CellState, str]] = []
        on_current: list[bool] = []  # per decision: its route is the cell's current one (its shares too)
        judged: list[tuple[int, CellState]] = []  # (decision index, current): costs decide
        current_of = state.cells
        for pos, cell in enumerate(self.cells):
            kind = case[pos]
            if kind == _SAME:
                # The fresh route is the current one: it keeps its capacity shares (hysteresis.settle), and the very
                # objects it had when nothing else changed. Its fresh slot holds the same route (nothing reads its shares).
                prev = current_of[cell.id]
                decided = prev if prev.pending == 0 else CellState(prev.center, prev.edges, prev.weights, 0, prev.last_switch_at)
                decisions.append((pos, decided, REASON_BEST))
                on_current.append(True)
            elif kind == _NOT_ROUTABLE:
                was = current_of.get(cell.id)
                reasons[pos] = REASON_FAIL_CLOSED if eligibility[cell.country].fail_closed else REASON_NO_PATH
                lines[cell.id] = route_line(cell.id, None, (), (), ())
                switched_at = now if was is not None and was.center is not None else (was.last_switch_at if was else None)
                states[pos] = CellState(None, (), (), 0, switched_at)
            elif kind == _JUDGE:
                prev = current_of[cell.id]
                judged.append((len(decisions), prev))
                decisions.append((pos, prev, REASON_HELD))  # until judged below
                on_current.append(True)
            elif kind == _LEAVING:
                # Moved off a center beyond its capacity: like a center lost, no hysteresis holds it there.
                fresh = fresh_of(pos)
                decisions.append((pos, fresh._replace(last_switch_at=now), REASON_CENTER_FULL))
                on_current.append(False)
            else:  # FIRST (a cell's very first route is not a switch), PROVISIONAL (nor is replacing one) or INVALID: the fresh route
                fresh = fresh_of(pos)
                settled_case = Case.FIRST if kind == _FIRST else Case.PROVISIONAL if kind == _PROVISIONAL else Case.INVALID
                decisions.append((pos, settle(settled_case, current_of.get(cell.id), fresh, now), REASON_BEST))
                on_current.append(False)
        if judged:
            rows = np.array([decisions[i][0] for i, _ in judged], dtype=np.intp)
            # Judged cells may hold their route, so it is in `holding`.
            assert holding is not None and bool((hold_at[rows] >= 0).all())
            current = holding.take(hold_at[rows])
            candidate = fresh_routes.take(rows)
            current_cost = self.costs.weighted(current, steady_lookup, latency.physics)
            fresh_cost = self.costs.weighted(candidate, steady_lookup, latency.physics)
            spread = self.costs.noise(current, band) + self.costs.noise(candidate, band)
            switch, pending = judge(current_cost, fresh_cost, spread,
                                    np.array([prev.pending for _, prev in judged], dtype=np.int64),
                                    np.array([np.nan if prev.last_switch_at is None else prev.last_switch_at
                                              for _, prev in judged], dtype=np.float64), now, hyst)
            # A switch earned on latency takes effect only together with the others that fit the edge budgets, every
            # cell that stays where it is counted (a cell on a congested edge in a full region therefore stays: see
            # capacity.admit).
            switch &= self.capacity.admit(allocation, current, candidate, switch)
            for (i, prev), moves, count in zip(judged, switch.tolist(), pending.tolist(), strict=True):
                pos = decisions[i][0]
                if moves:
                    decisions[i] = (pos, fresh_of(pos)._replace(last_switch_at=now), REASON_BEST)
                elif count != prev.pending:  # built with tuple.__new__ (see below): _replace is three times the cost
                    held = (prev.center, prev.edges, prev.weights, count, prev.last_switch_at, False)  # held: never provisional
                    decisions[i] = (pos, tuple.__new__(CellState, held), REASON_HELD)
                on_current[i] = not moves
        if shed:
            decisions = [(pos, decided, REASON_CENTER_FULL if pos in shed and reason == REASON_BEST else reason)
                         for pos, decided, reason in decisions]
        if self.center_load.limited:
            released = self.center_load.release_holds_beyond_capacity(decisions, choice, fresh_of, now, self._center_ids)
            on_current = [kept and after is before for kept, after, before in zip(on_current, released, decisions, strict=True)]
            decisions = released
        served = self._served(decisions, on_current, holding, hold_at, fresh_routes)
        if holding is not None:
            # Last, with every other move known: cells held on an edge beyond its budget, re-placed in the room really
            # left (routing.relief). Their new routes go in the fresh rows, which nothing reads any more but _served.
            def physics_ranks(rows: NDArray[np.intp], centers: NDArray[np.intp]) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
                """Each of `rows`' edges for its center in `centers`, ranked on physics (catalog positions, -1 where none;
                and their costs): the same from one cycle to the next. Ranked on measurements, even on the steady medians,
                relief kept finding new room as the noise reordered near-equal edges (in process, 0-20 ms of jitter: 21
                relief moves in 60 cycles after settling, against 0 from the third cycle on ranked on physics)."""
                only = np.zeros((len(self._center_ids), len(self.cells)), dtype=bool)
                only[centers, rows] = True
                edge_ok, cell_group = (self._edge_ok, self._cell_group) if self._constrained else (None, None)
                _, idx, cost = self.search.select(latency, healthy_idx, physics_legs, no_penalty, only, None, edge_ok, cell_group, rows,
                                                  RELIEF_RANKS, compact=True)
                return np.where(np.isfinite(cost), healthy_idx[idx], -1).astype(np.int64), cost

            physics_legs, no_penalty = latency.physics_center_edge, np.zeros(len(self._edge_ids))
            relieved = self.relief.moves(decisions, on_current, served, allocation, choice, now, physics_legs, latency.physics,
                                         physics_ranks, healthy_idx.tobytes())
            if relieved:
                for i in relieved:
                    pos = decisions[i][0]
                    decisions[i] = (pos, fresh_of(pos)._replace(last_switch_at=now), REASON_EDGE_FULL)
                    on_current[i] = False
                served = self._served(decisions, on_current, holding, hold_at, fresh_routes)
        # Each answer's RTT with the latest figures, for every routed cell at once.
        rtts = np.full((len(self.cells), served.edges.shape[1]), np.nan)
        latest = latency.center_edge_ms(now)  # the moving average: what the answers cost right now, not what they are judged on
        rtts[served.cells] = self.costs.per_answer(served, latest + latency.edge_penalty_ms(now, latest)[None, :], latency.physics)
        in_first_tier = self._first_tier(eligibility)[served.center, served.cells].tolist()
        self.builder.build(decisions, served.center.tolist(), in_first_tier, states, reasons, lines)
        assert not any(s is _UNDECIDED for s in states), "every cell is decided: routed, failed closed or without a path"
        routes = TableRoutes(self._cell_ids, self._cell_index, self._cell_countries, states, reasons, rtts, self._addresses,
                             self._center_pos, self._fallback_of)

        load = self.capacity.load(served.cells, served.edges, served.weights)
        # Excess within float rounding of the budget (the greedy fills edges exactly) is not overflow.
        # fsum: the same total whatever order the edges come in.
        overflow = math.fsum(max(0.0, v - budget.get(e, 0.0) * (1 + 1e-9)) for e, v in load.items())
        digest = hash_lines(lines, self._ids_sorted)
        generation = state.generation + 1 if digest != state.content_hash else state.generation
        table = RoutingTable(topo.stack, generation, digest, routes, load, budget, overflow)
        # Read-only: the routes as arrays kept with it are only good for these very cells (routing.current).
        cells_view = FrozenCells(zip(self._cell_ids, states, strict=True))
        provisional = np.array([decided.provisional for _, decided, _ in decisions], dtype=bool)
        out = RouterState(generation, digest, cells_view,
                          StateColumns(self._token, cells_view, served_as_current(served, len(self.cells), provisional)))
        return table, out

    @staticmethod
    def _served(decisions: list[tuple[int, CellState, str]], on_current: list[bool], holding: RouteColumns | None,
                hold_at: NDArray[np.intp], fresh_routes: RouteColumns) -> RouteColumns:
        """The decided routes as arrays, row by row from those already built: a decided route is the cell's current
        one (held, or the same route keeping its shares: then the cell may hold it, so it is in `holding`) or its
        fresh one."""
        positions = np.array([pos for pos, _, _ in decisions], dtype=np.intp)
        fresh = fresh_routes.take(positions)
        current = np.array(on_current, dtype=bool)
        if holding is None or not current.any():
            served = fresh
        else:
            held_rows = hold_at[positions]
            assert bool((held_rows[current] >= 0).all()), "a route kept as it is must be one the cell may hold"
            served = RouteColumns.pick(holding.take(np.maximum(held_rows, 0)), fresh, ~current)
        # As wide as the longest route (padding is -1 after each route's last edge): every column is costed.
        width = max(1, int(np.count_nonzero(served.edges >= 0, axis=1).max(initial=0)))
        return RouteColumns(served.cells, served.center, served.edges[:, :width], served.weights[:, :width])

    def _still_valid(self, current: CurrentRoutes, healthy_idx: NDArray[np.intp], allowed: NDArray[np.bool_],
                     lawful: NDArray[np.bool_], choice: NDArray[np.intp]) -> NDArray[np.bool_]:
        """Per cell: it has a current route, it is routable now, and that route may stay (hysteresis.still_valid, for
        every cell at once): its center allowed right now (any lawful one when the fresh route is itself spilled to a
        later tier), every edge healthy and allowed on the cell's path."""
        cells = np.arange(len(self.cells))
        known = (current.center >= 0) & (choice >= 0)
        at, fresh = np.maximum(current.center, 0), np.maximum(choice, 0)
        spilled = ~allowed[fresh, cells]
        center_ok = np.where(spilled, lawful[at, cells], allowed[at, cells])
        healthy = np.zeros(len(self._edge_ids), dtype=bool)
        healthy[healthy_idx] = True
        valid = known & center_ok & current.all_edges(lambda e: healthy[e])
        if self._constrained:
            valid &= current.all_edges(lambda e: self._edge_ok[self._cell_group[:, None], e])
        return valid

    # ----------------------------------------------------------------------------------------------
    def _edge_groups(self) -> list[_EdgeGroup]:
        """Group the cells by the edges their rules allow on the path (terminating edges only where
        the rule lets traffic be terminated, no edge in a never-transit jurisdiction)."""
        residency = self.topology.residency
        edges = self.topology.edges
        where = np.array([e.country for e in edges])
        relays = np.array([e.role is Role.TRANSIT for e in edges], dtype=bool)
        masks: dict[tuple[int, str], NDArray[np.bool_]] = {}
        groups: dict[bytes, tuple[list[int], NDArray[np.bool_]]] = {}
        for n, cell in enumerate(self.cells):
            rule = residency.rule_for(cell.country)
            key = (id(rule), cell.country)
            mask = masks.get(key)
            if mask is None:
                mask = masks[key] = rule.edge_mask(where, relays, cell.country)  # the residency module decides
            groups.setdefault(mask.tobytes(), ([], mask))[0].append(n)
        out = []
        for rows, mask in groups.values():
            out.append(_EdgeGroup(np.array(rows, dtype=np.intp), mask))
        return out

    def _first_tier(self, eligibility: dict[str, Eligibility]) -> NDArray[np.bool_]:
        """(C, N) whether center c is in cell n's first tier right now: a best route on another center is a fallback."""
        first = np.array([[c in (eligibility[country].tiers or ((),))[0] for country in self._countries] for c in self._center_ids],
                         dtype=bool).reshape(len(self._center_ids), len(self._countries))
        out: NDArray[np.bool_] = first[:, self._cell_country]
        return out

    def _center_masks(self, eligibility: dict[str, Eligibility]) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
        """(C, N) each: may cell n use center c right now (its rule's first tier with a healthy center), and may
        it lawfully (any tier: where load may spill)."""
        allowed = np.zeros((len(self._center_ids), len(self._countries)), dtype=bool)
        lawful = np.zeros_like(allowed)
        for k, country in enumerate(self._countries):
            elig = eligibility[country]
            allowed[:, k] = [c in elig.centers for c in self._center_ids]
            lawful[:, k] = [any(c in tier for tier in elig.tiers) for c in self._center_ids]
        return allowed[:, self._cell_country], lawful[:, self._cell_country]

    def _eligibility(self, health: Health) -> dict[str, Eligibility]:
        countries = {c.country for c in self.cells}
        return {
            code: self.topology.residency.eligibility(code, health.centers, self._center_ids) for code in countries
        }
