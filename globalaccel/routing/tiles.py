"""Tiles: nearby cells of one edge group, scored together by candidate search (routing.tile_scores).

A tile is the cells of one edge group in one cell of a grid about TILE_DEGREES on a side (longitude steps widen
towards the poles so that tiles stay about square). Its centre is its cells' mean direction and its radius the
angle to its farthest cell: every member's angle to an edge is within that radius of the tile's. Super-tiles gather
tiles the same way, SUPER_DEGREES on a side. Smaller tiles give tighter bounds but more tiles to bound; more super-tiles
mean more full passes over the edges. Of (tile, super-tile) sides 0.5-4 / 2-16 degrees, 3 / 9 was among the fastest on
prod's 3,361 cells (31 ms) and on 100,000 grid cells (0.18 s), every path measured (candidate search alone, 2026-11-27).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

TILE_DEGREES = 3.0
SUPER_DEGREES = 9.0
# Added to each radius: covers the tile's angles from arccos (error up to ~2e-8 rad near 0) and float rounding, so
# the bounds stay bounds (1e-7 rad is 1e-5 ms at the public ms per radian, far below any RTT difference that matters).
RADIUS_MARGIN = 1e-7


class Tiles(NamedTuple):
    tile_of: NDArray[np.intp]  # (N,) each cell's tile
    xyz: NDArray[np.float64]  # (T, 3) each tile's centre, a unit vector
    radius: NDArray[np.float64]  # (T,) radians, margin included
    super_of: NDArray[np.intp]  # (T,) each tile's super-tile
    super_xyz: NDArray[np.float64]  # (S, 3)
    super_radius: NDArray[np.float64]  # (S,) radians: every member cell of its tiles is within it, margin included
    super_group: NDArray[np.int64]  # (S,) the edge group of its cells


def _grid(xyz: NDArray[np.float64], group: NDArray[np.intp], degrees: float,
          reach: NDArray[np.float64]) -> tuple[NDArray[np.intp], NDArray[np.float64], NDArray[np.float64], NDArray[np.int64]]:
    """Points (unit vectors, each reaching `reach` radians around it) of edge groups `group`, gathered per group and grid
    cell of about `degrees` on a side: each point's gathering, and per gathering its centre (the points' mean direction),
    its radius (the farthest reach from the centre, margin included) and its group."""
    lat = np.degrees(np.arcsin(np.clip(xyz[:, 2], -1.0, 1.0)))
    lon = np.degrees(np.arctan2(xyz[:, 1], xyz[:, 0]))
    band = np.floor((lat + 90.0) / degrees).astype(np.int64)
    middle = (band + 0.5) * degrees - 90.0
    step = degrees / np.maximum(np.cos(np.radians(middle)), 0.01)
    column = np.floor((lon + 180.0) / step).astype(np.int64)
    keys = np.stack([group.astype(np.int64), band, column], axis=1)
    unique, of = np.unique(keys, axis=0, return_inverse=True)
    of = of.reshape(-1).astype(np.intp)
    sums = np.zeros((unique.shape[0], 3))
    np.add.at(sums, of, xyz)
    norm = np.linalg.norm(sums, axis=1)
    # Points of one grid cell are within a few degrees of each other, so their mean never vanishes; if it did, the
    # first point (any point gives a valid radius).
    first = np.zeros(unique.shape[0], dtype=np.intp)
    first[of[::-1]] = np.arange(of.size)[::-1]
    centre = np.where((norm > 0)[:, None], sums / np.where(norm > 0, norm, 1.0)[:, None], xyz[first])
    chord = np.linalg.norm(xyz - centre[of], axis=1)
    angle = 2.0 * np.arcsin(np.clip(chord / 2.0, 0.0, 1.0))
    radius = np.zeros(unique.shape[0])
    np.maximum.at(radius, of, angle + reach)
    return of, centre, radius + RADIUS_MARGIN, unique[:, 0].copy()


def make_tiles(xyz: NDArray[np.float64], group: NDArray[np.intp], degrees: float = TILE_DEGREES,
               super_degrees: float = SUPER_DEGREES) -> Tiles:
    """Tiles of the cells at `xyz` (unit vectors) of edge groups `group` (N,), and their super-tiles."""
    tile_of, centre, radius, tile_group = _grid(xyz, group, degrees, np.zeros(xyz.shape[0]))
    super_of, super_xyz, super_radius, super_group = _grid(centre, tile_group, super_degrees, radius)
    return Tiles(tile_of, centre, radius, super_of, super_xyz, super_radius, super_group)
