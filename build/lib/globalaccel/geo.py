"""Great-circle geometry on a spherical Earth, scalar and vectorised."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

EARTH_RADIUS_KM = 6371.0088  # IUGG mean radius


def unit_vectors(lat_deg: NDArray[np.float64], lon_deg: NDArray[np.float64]) -> NDArray[np.float64]:
    """(n, 3) unit vectors for points; dot products of these give cos(central angle)."""
    lat = np.radians(lat_deg)
    lon = np.radians(lon_deg)
    cos_lat = np.cos(lat)
    return np.stack([cos_lat * np.cos(lon), cos_lat * np.sin(lon), np.sin(lat)], axis=-1)


def great_circle_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Haversine distance; stable for small and antipodal separations."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp = p2 - p1
    dl = math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def angles_between(a: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.float64]:
    """Central angles (radians) between every row of `a` (n,3) and every row of `b` (m,3): (n, m)."""
    cos = a @ b.T
    np.clip(cos, -1.0, 1.0, out=cos)
    return np.arccos(cos)


def chord_to_km(chord: NDArray[np.float64]) -> NDArray[np.float64]:
    """Unit-sphere chord length -> great-circle km (chord = 2 sin(angle/2))."""
    return 2.0 * EARTH_RADIUS_KM * np.arcsin(np.clip(chord / 2.0, 0.0, 1.0))
