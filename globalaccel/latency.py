"""Latency: a physics estimate that measurements override.

Physics: light in fibre covers ~200 km per ms one way, public-Internet paths run ~2.1x the great circle,
a private backbone less (default 1.4x), and every path pays a fixed overhead:
RTT(ms) = 2 * km * inflation / fibre_km_per_ms + overhead. The client leg is public Internet; the
edge -> center leg is backbone. Without that difference every edge on the way would cost the same.
Measurements: per (vantage, target) path an EWMA, a window of recent samples for p50/p95, and the loss
rate over the same window. Stale measurements are ignored, never trusted.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from globalaccel.geo import EARTH_RADIUS_KM, angles_between, great_circle_km, unit_vectors
from globalaccel.settings import LatencySettings
from globalaccel.topology import Topology

# No probe waits a minute for an answer. Beyond this a figure is a fault, and a sum of such figures can overflow to
# infinity, where costs no longer order edges.
MAX_RTT_MS = 60_000.0


@dataclass(frozen=True)
class PhysicsModel:
    settings: LatencySettings
    backbone: bool = False  # use the backbone inflation factor instead of the public-Internet one

    @property
    def ms_per_km(self) -> float:
        inflation = self.settings.backbone_inflation if self.backbone else self.settings.route_inflation
        return 2.0 * inflation / self.settings.fibre_km_per_ms

    @property
    def ms_per_radian(self) -> float:
        return EARTH_RADIUS_KM * self.ms_per_km

    def rtt_ms(self, lat1: float, lon1: float, lat2: float, lon2: float) -> float:
        return great_circle_km(lat1, lon1, lat2, lon2) * self.ms_per_km + self.settings.overhead_ms

    def rtt_from_angles(self, angles: NDArray[np.float64]) -> NDArray[np.float64]:
        return angles * self.ms_per_radian + self.settings.overhead_ms


def _quantile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated quantile of an already sorted, non-empty list."""
    pos = (len(sorted_values) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def nanmedian_rows(values: NDArray[np.float64]) -> NDArray[np.float64]:
    """np.nanmedian(values, axis=1), the same figures, by one sort (NaN sorts last): nanmedian takes several
    times as long on the router's 12,800 windows. NaN for a row with no number."""
    if not values.shape[1]:
        return np.full(values.shape[0], np.nan)
    ordered = np.sort(values, axis=1)
    count = np.sum(~np.isnan(values), axis=1)
    rows = np.arange(values.shape[0])
    low, high = ordered[rows, np.maximum(count - 1, 0) // 2], ordered[rows, count // 2]
    out: NDArray[np.float64] = np.where(count > 0, (low + high) / 2, np.nan)
    return out


@dataclass
class PathStats:
    """Measurements of one (vantage, target) path."""

    alpha: float
    window: int
    ewma: float | None = None
    last_update: float | None = None
    _samples: deque[float | None] = field(default_factory=deque)

    def record(self, rtt_ms: float | None, now: float) -> None:
        """Record one probe: an RTT in ms, or None for a loss (timeout, refused)."""
        if rtt_ms is not None:
            if not math.isfinite(rtt_ms) or rtt_ms < 0 or rtt_ms > MAX_RTT_MS:
                raise ValueError(f"RTT must be a number of ms from 0 to {MAX_RTT_MS:g}, got {rtt_ms!r}")
            self.ewma = rtt_ms if self.ewma is None else self.alpha * rtt_ms + (1 - self.alpha) * self.ewma
        self._samples.append(rtt_ms)
        while len(self._samples) > self.window:
            self._samples.popleft()
        self.last_update = now

    def fresh(self, now: float, stale_after_s: float) -> bool:
        return self.last_update is not None and now - self.last_update <= stale_after_s

    @property
    def loss_rate(self) -> float:
        if not self._samples:
            return 0.0
        return sum(1 for s in self._samples if s is None) / len(self._samples)

    def quantile(self, q: float) -> float | None:
        values = sorted(s for s in self._samples if s is not None)
        return _quantile(values, q) if values else None

    @property
    def p50(self) -> float | None:
        return self.quantile(0.5)

    @property
    def p95(self) -> float | None:
        return self.quantile(0.95)


class LatencyModel:
    """Physics estimates for every path, overridden by fresh measurements where we have them."""

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self.physics = PhysicsModel(topology.latency)  # client -> edge
        self.backbone = PhysicsModel(topology.latency, backbone=True)  # edge -> center
        self.paths: dict[tuple[str, str], PathStats] = {}
        centers, edges = topology.centers, topology.edges
        self._center_xyz = unit_vectors(np.array([c.lat for c in centers]), np.array([c.lon for c in centers]))
        self._edge_xyz = unit_vectors(np.array([e.lat for e in edges]), np.array([e.lon for e in edges]))
        self._edge_index = {e.id: i for i, e in enumerate(edges)}
        self._center_index = {c.id: i for i, c in enumerate(centers)}
        # Physics RTT from every center to every edge: (C, E). Small (4 x 3200), computed once.
        self.physics_center_edge = self.backbone.rtt_from_angles(angles_between(self._center_xyz, self._edge_xyz))
        # The same windows as the paths' PathStats, for center -> edge paths, as one array the router reads
        # every cycle without a Python loop over 12,800 paths: (C, E, window) samples (NaN: a loss, or not yet
        # recorded), the slot each path writes next, and when it was last recorded (NaN: never). Only record and
        # load_json write paths and these arrays, together: `paths` is not to be edited from outside.
        window = topology.latency.window
        self._ring = np.full((len(centers), len(edges), window), np.nan)
        self._ring_next = np.zeros((len(centers), len(edges)), dtype=np.intp)
        self._ring_updated = np.full((len(centers), len(edges)), np.nan)
        self._ring_filled = np.zeros((len(centers), len(edges)), dtype=np.intp)  # results in each window, losses too
        # The same paths' EWMA and when it was last updated (NaN: none), kept beside their PathStats for the same
        # reason: center_edge_ms without a loop over the paths. Apart from the ring, since a restart's load_json
        # restores these but starts the windows empty.
        self._ewma = np.full((len(centers), len(edges)), np.nan)
        self._ewma_at = np.full((len(centers), len(edges)), np.nan)

    def record(self, vantage: str, target: str, rtt_ms: float | None, now: float) -> None:
        stats = self.paths.get((vantage, target))
        if stats is None:
            stats = PathStats(self.topology.latency.ewma_alpha, self.topology.latency.window)
            self.paths[(vantage, target)] = stats
        stats.record(rtt_ms, now)
        ci, ei = self._center_index.get(vantage), self._edge_index.get(target)
        if ci is not None and ei is not None:
            slot = self._ring_next[ci, ei]
            self._ring[ci, ei, slot] = np.nan if rtt_ms is None else rtt_ms
            self._ring_next[ci, ei] = (slot + 1) % self._ring.shape[2]
            self._ring_filled[ci, ei] = min(self._ring_filled[ci, ei] + 1, self._ring.shape[2])
            self._ring_updated[ci, ei] = now
            if stats.ewma is not None:
                self._ewma[ci, ei] = stats.ewma
                self._ewma_at[ci, ei] = now

    def measured(self, vantage: str, target: str, now: float) -> float | None:
        stats = self.paths.get((vantage, target))
        if stats is None or stats.ewma is None or not stats.fresh(now, self.topology.latency.stale_after_s):
            return None
        return stats.ewma

    def center_edge_ms(self, now: float) -> NDArray[np.float64]:
        """(C, E) RTT from each center to each edge: fresh measured EWMA, else physics."""
        with np.errstate(invalid="ignore"):  # NaN: never measured, not fresh
            fresh = now - self._ewma_at <= self.topology.latency.stale_after_s
        return np.where(fresh, self._ewma, self.physics_center_edge)

    def _fresh_windows(self, now: float) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.float64]]:
        """Every fresh center -> edge path with samples: (centers, edges, rows), each row its window's samples
        oldest first, losses left out, NaN-padded on the right."""
        updated = self._ring_updated
        with np.errstate(invalid="ignore"):
            fresh = ~np.isnan(updated) & (now - updated <= self.topology.latency.stale_after_s)
        cis, eis = np.nonzero(fresh)
        width = self._ring.shape[2]
        rolled = (self._ring_next[cis, eis][:, None] + np.arange(width)) % width  # oldest slot first
        samples = np.take_along_axis(self._ring[cis, eis], rolled, axis=1)  # a new array: compacted in place below
        gaps = np.isnan(samples)
        holed = np.flatnonzero(gaps.any(axis=1))  # losses, or a window not yet full: compact those rows only
        kept = np.argsort(gaps[holed], axis=1, kind="stable")  # samples first, in order; the NaNs after
        samples[holed] = np.take_along_axis(samples[holed], kept, axis=1)
        some = ~np.isnan(samples[:, 0])
        return cis[some], eis[some], samples[some]

    def center_edge_steady_ms(self, now: float, recent: int = 16) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """What the hysteresis judges routes on, from the measured distribution rather than the moving average:
        (C, E) each fresh path's median of its last `recent` measured samples (losses are not samples: on a lossy
        path they span more cycles; a shift over fewer than half of them moves it not at all, a real change of
        level does once it holds more than half), physics elsewhere; and (C, E) its noise band, half the
        median absolute step between successive samples of its window (jitter shows in every step, a change
        of level in one), 0 where a path has fewer than two samples (physics does not jitter)."""
        level = self.physics_center_edge.copy()
        band = np.zeros_like(self.physics_center_edge)
        cis, eis, samples = self._fresh_windows(now)
        if not cis.size:
            return level, band
        counts = np.sum(~np.isnan(samples), axis=1)
        # Each row's last `recent` samples (NaN where it has fewer): the median ignores the padding.
        at = counts[:, None] - recent + np.arange(recent)
        last = np.where(at >= 0, np.take_along_axis(samples, np.maximum(at, 0), axis=1), np.nan)
        level[cis, eis] = nanmedian_rows(last)
        several = counts >= 2
        if several.any():
            steps = np.abs(np.diff(samples[several], axis=1))
            band[cis[several], eis[several]] = nanmedian_rows(steps) / 2
        return level, band

    def settled(self, now: float, samples: int) -> bool:
        """Whether the figures a plan reads have settled: at most a tenth of the center -> edge paths are young, their
        moving average fresh but their window holding fewer than `samples` results (losses count: a lossy path settles
        too). A cold start's first cycles have one or a few per path, and then one cycle's noise decides where every cell
        goes (the same noise on an edge for every cell near it: their ranked edges crowd onto the same few, and the plan
        runs out of room); so does a restart, whose windows start empty while its restored averages are fresh. A path
        not measured, or not freshly, reads physics, which does not jitter."""
        with np.errstate(invalid="ignore"):  # NaN: never measured
            fresh = now - self._ewma_at <= self.topology.latency.stale_after_s
        young = int(np.count_nonzero(fresh & (self._ring_filled < samples)))
        return young <= 0.1 * fresh.size

    def edge_penalty_ms(self, now: float, center_edge: NDArray[np.float64] | None = None) -> NDArray[np.float64]:
        """Per-edge extra delay seen by measurement (queueing, congestion): the median over vantage
        centers of measured minus physics, never negative. It applies to the client leg too, which
        no prober can measure directly."""
        measured = self.center_edge_ms(now) if center_edge is None else center_edge
        excess = np.clip(measured - self.physics_center_edge, 0.0, None)
        return np.asarray(np.median(excess, axis=0), dtype=np.float64)

    # Persistence of the smoothed figures only (not the sample windows): enough for a restarted loop
    # to route on measured latencies from its first cycle instead of on physics.
    def to_json(self) -> list[list[object]]:
        return [[v, t, s.ewma, s.last_update] for (v, t), s in sorted(self.paths.items()) if s.ewma is not None]

    def load_json(self, rows: list[list[object]]) -> None:
        """Restore to_json's rows. A row that is not [vantage, target, EWMA in ms from 0 to MAX_RTT_MS, time or null]
        is refused with its position; nothing is restored then."""
        for n, row in enumerate(rows):
            ok = isinstance(row, list) and len(row) == 4
            if ok:
                ewma, last = row[2], row[3]
                ok = (isinstance(ewma, int | float) and not isinstance(ewma, bool) and math.isfinite(ewma)
                      and 0 <= ewma <= MAX_RTT_MS and (last is None or (isinstance(last, int | float) and math.isfinite(last))))
            if not ok:
                raise ValueError(f"latency row {n}: expected [vantage, target, EWMA ms from 0 to {MAX_RTT_MS:g}, "
                                 f"last update or null], got {row!r}")
        for v, t, ewma, last in rows:
            stats = PathStats(self.topology.latency.ewma_alpha, self.topology.latency.window)
            stats.ewma = float(ewma)  # type: ignore[arg-type]
            stats.last_update = None if last is None else float(last)  # type: ignore[arg-type]
            self.paths[(str(v), str(t))] = stats
            ci, ei = self._center_index.get(str(v)), self._edge_index.get(str(t))
            if ci is not None and ei is not None:  # the path's window starts empty again, in the array as in stats
                self._ring[ci, ei] = np.nan
                self._ring_next[ci, ei] = 0
                self._ring_updated[ci, ei] = np.nan
                self._ring_filled[ci, ei] = 0
                self._ewma[ci, ei] = stats.ewma
                self._ewma_at[ci, ei] = np.nan if stats.last_update is None else stats.last_update
