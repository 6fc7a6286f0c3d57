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
2. capacity (routing.capacity): each cell's demand split over its answers within edge budgets,
   overflow reported, never hidden;
3. hysteresis (routing.hysteresis): a valid current route is only replaced when the new one is better
   by max(absolute ms, relative %) for N evaluations in a row, and not within the hold-down.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

from globalaccel.cells import Cell
from globalaccel.latency import LatencyModel
from globalaccel.residency import Eligibility, Role
from globalaccel.routing.candidates import CandidateSearch
from globalaccel.routing.capacity import CapacityPlanner
from globalaccel.routing.center_load import CenterLoad
from globalaccel.routing.fallback import FallbackOrder
from globalaccel.routing.hysteresis import decide
from globalaccel.routing.table import (
    REASON_BEST,
    REASON_CENTER_FULL,
    REASON_FAIL_CLOSED,
    REASON_FALLBACK,
    REASON_NO_PATH,
    Answer,
    CellRoute,
    CellState,
    Health,
    RouterState,
    RoutingTable,
    table_hash,
)
from globalaccel.topology import Topology


class _EdgeGroup(NamedTuple):
    """Cells whose rules allow the same edges on their path."""

    rows: NDArray[np.intp]  # positions of the cells in Router.cells
    edge_mask: NDArray[np.bool_]  # (E,) edges allowed on these cells' paths
    allowed_ids: frozenset[str] | None  # the same as ids; None when every edge is allowed


class Router:
    """Computes routing tables for one topology. Reuse it across cycles: it caches geometry."""

    def __init__(self, topology: Topology, cells: Iterable[Cell] | None = None) -> None:
        self.topology = topology
        self.cells: tuple[Cell, ...] = tuple(cells) if cells is not None else topology.cells
        self.settings = topology.routing
        self._center_ids = topology.center_ids
        self._edge_ids = tuple(e.id for e in topology.edges)
        self._edge_pos = {eid: i for i, eid in enumerate(self._edge_ids)}
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
        self._client_leg: dict[tuple[int, int], float] = {}  # (cell, edge) physics RTT: geometry never changes

    # ----------------------------------------------------------------------------------------------
    def compute(
        self,
        latency: LatencyModel,
        health: Health | None = None,
        now: float = 0.0,
        state: RouterState | None = None,
    ) -> tuple[RoutingTable, RouterState]:
        """One evaluation. Pure: the same inputs give the same table and hash; `state` is not mutated."""
        topo = self.topology
        health = health or Health.all_up(topo)
        state = state or RouterState()
        healthy_idx = np.array([i for i, eid in enumerate(self._edge_ids) if eid in health.edges], dtype=np.intp)
        center_edge = latency.center_edge_ms(now)
        penalty = latency.edge_penalty_ms(now, center_edge)
        eligibility = self._eligibility(health)

        fresh_center: list[str | None] = [None] * len(self.cells)
        shed: dict[int, int] = {}  # cell position -> the center it was moved off (beyond that center's capacity)
        ranked: list[NDArray[np.intp]] = [np.empty(0, dtype=np.intp)] * len(self.cells)
        routable = np.zeros(len(self.cells), dtype=bool)
        allowed = np.zeros((len(self._center_ids), len(self.cells)), dtype=bool)
        for ci, center_id in enumerate(self._center_ids):
            allowed[ci] = [center_id in eligibility[c.country].centers for c in self.cells]
        allowed_edges: list[frozenset[str] | None] = [self.groups[g].allowed_ids for g in self._cell_group]
        if healthy_idx.size:
            prefer, prev_edges = self.search.sticky(state, healthy_idx)
            edge_ok, cell_group = (self._edge_ok, self._cell_group) if self._constrained else (None, None)
            choice, ranked_idx, ranked_cost = self.search.select(latency, healthy_idx, center_edge, penalty, allowed, prefer,
                                                                 edge_ok, cell_group)
            def again(trial: NDArray[np.bool_], rows: NDArray[np.intp]) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.float64]]:
                return self.search.select(latency, healthy_idx, center_edge, penalty, trial, prefer, edge_ok, cell_group, rows)

            # Load may spill to any center the rule allows (a later tier too: lawful, only less preferred).
            if self.center_load.limited:
                lawful = np.zeros_like(allowed)
                for ci, center_id in enumerate(self._center_ids):
                    lawful[ci] = [any(center_id in tier for tier in eligibility[c.country].tiers) for c in self.cells]
                shed = self.center_load.shed(choice, ranked_idx, ranked_cost, lawful, again, prefer)
            ranked_idx = self.search.favour_current_edges(choice, prefer, prev_edges, ranked_idx, ranked_cost)
            routable = choice >= 0
            for n in np.nonzero(routable)[0]:
                fresh_center[n] = self._center_ids[int(choice[n])]
                candidates = healthy_idx[ranked_idx[n]]
                # Ranks past a cell's allowed edges hold forbidden ones (infinite cost): never offered.
                ranked[n] = candidates[self._edge_ok[self._cell_group[n], candidates]] if self._constrained else candidates

        budget = self.capacity.budgets(healthy_idx, routable)
        alloc = self.capacity.allocate(ranked, routable, budget)

        routes: dict[str, CellRoute] = {}
        new_cells: dict[str, CellState] = {}
        cost_lookup = center_edge + penalty[None, :]  # (C, E): edge leg plus the edge's own delay
        # Hysteresis judges on the measured distribution: each leg's recent median (not the moving average,
        # which one spike moves for several cycles), and how far its figure moves with noise alone: its edge
        # leg's band, plus the band of the edge's penalty (the median over vantages, as the penalty itself),
        # which the client leg carries.
        steady, leg_band = latency.center_edge_steady_ms(now)
        steady_lookup = steady + latency.edge_penalty_ms(now, steady)[None, :]
        band = leg_band + np.median(leg_band, axis=0)[None, :]
        decisions: list[tuple[int, CellState, list[float], CellState, str]] = []
        for pos, cell in enumerate(self.cells):
            elig = eligibility[cell.country]
            prev = state.cells.get(cell.id)
            center = fresh_center[pos]
            if not routable[pos] or center is None:
                reason = REASON_FAIL_CLOSED if elig.fail_closed else REASON_NO_PATH
                routes[cell.id] = CellRoute(cell.id, cell.country, None, (), reason)
                switched_at = now if prev is not None and prev.center is not None else (prev.last_switch_at if prev else None)
                new_cells[cell.id] = CellState(None, (), (), 0, switched_at)
                continue
            fresh = CellState(center, tuple(alloc[pos].keys()), tuple(alloc[pos].values()))
            fresh_costs = self._costs(pos, fresh, cost_lookup, latency)
            if pos in shed and prev is not None and prev.center == self._center_ids[shed[pos]]:
                # Moved off a center beyond its capacity: like a center lost, no hysteresis holds it there.
                decided, reason = fresh._replace(last_switch_at=now), REASON_CENTER_FULL
            else:
                judged = partial(self._route_cost, pos, cost_lookup=steady_lookup, latency=latency)
                decided, reason = decide(prev, fresh, partial(judged, fresh), judged,
                                         elig, health, now, self.settings.hysteresis, allowed_edges[pos],
                                         partial(self._route_noise, band=band))
                if pos in shed and reason == REASON_BEST:
                    reason = REASON_CENTER_FULL
            decisions.append((pos, fresh, fresh_costs, decided, reason))
        if self.center_load.limited:
            decisions = self._release_holds_beyond_capacity(decisions, now)
        for pos, fresh, fresh_costs, decided, reason in decisions:
            cell = self.cells[pos]
            elig = eligibility[cell.country]
            if reason == REASON_BEST and fresh.center not in elig.tiers[0]:
                reason = REASON_FALLBACK
            assert decided.center is not None
            same = decided.center == fresh.center and decided.edges == fresh.edges
            costs = fresh_costs if same else self._costs(pos, decided, cost_lookup, latency)
            answers = tuple(
                Answer(e, self._answer_address(e, decided.center), w, c)
                for e, w, c in zip(decided.edges, decided.weights, costs, strict=True)
            )
            routes[cell.id] = CellRoute(cell.id, cell.country, decided.center, answers, reason,
                                        self.fallback.after(cell, decided.center))
            new_cells[cell.id] = decided

        load = self.capacity.load(routes)
        # Excess within float rounding of the budget (the greedy fills edges exactly) is not overflow.
        overflow = float(sum(max(0.0, v - budget.get(e, 0.0) * (1 + 1e-9)) for e, v in load.items()))
        digest = table_hash(routes)
        generation = state.generation + 1 if digest != state.content_hash else state.generation
        table = RoutingTable(topo.stack, generation, digest, routes, load, budget, overflow)
        return table, RouterState(generation, digest, new_cells)

    def _release_holds_beyond_capacity(self, decisions: list[tuple[int, CellState, list[float], CellState, str]],
                                       now: float) -> list[tuple[int, CellState, list[float], CellState, str]]:
        """Hysteresis may hold a cell on a center the shed planned it off (or that others filled meanwhile):
        where that leaves a center beyond its capacity, its held cells take their fresh route (which the shed
        fitted), largest demand first, until it fits. A hold is for noise, never for overload."""
        index = {c: i for i, c in enumerate(self._center_ids)}
        demand = self.center_load.demand
        load = np.zeros(len(self._center_ids))
        for pos, _, _, decided, _ in decisions:
            if decided.center is not None:
                load[index[decided.center]] += demand[pos]
        out = list(decisions)
        capacity = self.center_load.capacity
        held = sorted((i for i, (_, fresh, _, decided, _) in enumerate(out) if decided.center != fresh.center),
                      key=lambda i: -demand[out[i][0]])
        for i in held:
            pos, fresh, costs, decided, _ = out[i]
            c = index[decided.center]  # type: ignore[index]
            if load[c] <= capacity[c] * (1 + 1e-9):
                continue
            load[c] -= demand[pos]
            load[index[fresh.center]] += demand[pos]  # type: ignore[index]
            out[i] = (pos, fresh, costs, fresh._replace(last_switch_at=now), REASON_CENTER_FULL)
        return out

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
            ids = None if mask.all() else frozenset(self._edge_ids[i] for i in np.nonzero(mask)[0])
            out.append(_EdgeGroup(np.array(rows, dtype=np.intp), mask, ids))
        return out

    def _answer_address(self, edge_id: str, center: str) -> str:
        """The address that takes a client through `edge_id` to `center`."""
        return self.topology.edges[self._edge_pos[edge_id]].address_for(center)

    def _eligibility(self, health: Health) -> dict[str, Eligibility]:
        countries = {c.country for c in self.cells}
        return {
            code: self.topology.residency.eligibility(code, health.centers, self._center_ids) for code in countries
        }

    def _costs(self, cell_pos: int, route: CellState, cost_lookup: NDArray[np.float64], latency: LatencyModel) -> list[float]:
        """Estimated client -> edge -> center RTT of each answer of `route`, with current latencies."""
        assert route.center is not None
        ci = self._center_ids.index(route.center)
        out = []
        for edge_id in route.edges:
            ei = self._edge_pos[edge_id]
            client_leg = self._client_leg.get((cell_pos, ei))
            if client_leg is None:
                cell, edge = self.cells[cell_pos], self.topology.edges[ei]
                client_leg = self._client_leg[(cell_pos, ei)] = latency.physics.rtt_ms(cell.lat, cell.lon, edge.lat, edge.lon)
            out.append(float(client_leg + cost_lookup[ci, ei]))
        return out

    def _route_noise(self, route: CellState, band: NDArray[np.float64]) -> float:
        """A route's measured spread: its edge legs' noise bands, weighted like its cost."""
        if route.center is None:
            return 0.0
        ci = self._center_ids.index(route.center)
        return float(sum(w * band[ci, self._edge_pos[e]] for e, w in zip(route.edges, route.weights, strict=True)))

    def _route_cost(self, cell_pos: int, route: CellState, cost_lookup: NDArray[np.float64], latency: LatencyModel) -> float:
        return sum(w * c for w, c in zip(route.weights, self._costs(cell_pos, route, cost_lookup, latency), strict=True))
