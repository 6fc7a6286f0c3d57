"""The country dataset (iptocc) at the IPv4 /24 grain, as one array: where locate.py asks which countries'
rules apply to a network. Built once per iptocc version and cached on disk (shipped for the pinned one)."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import iptocc
import numpy as np
from numpy.typing import NDArray

# iptocc is constant across each IPv4 /24 (checked by sampling in tests/test_locate.py).
V4_GRID_BITS = 24


# ---- the country dataset at the /24 grain (IPv4), cached on disk -----------------------------------------
def _grid_path() -> Path:
    """The grid for the installed iptocc: shipped in the package for the pinned version (300 KB, built by this
    module and copied there), else computed once into the user's cache."""
    version = getattr(iptocc, "__version__", None) or _iptocc_version()
    name = f"iptocc-{version}-v4-{V4_GRID_BITS}-mixed.npz"
    shipped = Path(__file__).resolve().parent / "data" / name
    if shipped.exists():
        return shipped
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "globalaccel" / name


def _iptocc_version() -> str:
    from importlib.metadata import version

    return version("iptocc")


GRID_PROBES = (0, 64, 128, 192, 255)  # host octets sampled in every /24; where they disagree, all 256 are read


def _scan(block_starts: range, host: int) -> list[str | None]:
    return iptocc.country_code([f"{i >> 16}.{(i >> 8) & 255}.{i & 255}.{host}" for i in block_starts])


@functools.lru_cache(maxsize=1)
def ipv4_country_grid() -> tuple[NDArray[np.uint16], list[tuple[str, ...]]]:
    """Countries of every IPv4 /24 as an index into a list of country tuples (index 0: none). Most /24s hold
    one country; a /24 the dataset splits (an RIR range not aligned to /24) holds every country found in
    its 256 addresses, so whoever reads the grid applies all their rules. Computed once (a minute or so)
    and cached per iptocc version: the dataset ships with the package and never changes under a pinned one."""
    path = _grid_path()
    if path.exists():
        with np.load(path) as data:
            return data["grid"], [tuple(str(c).split(",")) if i else () for i, c in enumerate(data["codes"])]
    codes: list[tuple[str, ...]] = [()]
    index: dict[tuple[str, ...], int] = {(): 0}
    grid = np.zeros(1 << V4_GRID_BITS, dtype=np.uint16)
    step = 1 << 16
    for block in range(0, 1 << V4_GRID_BITS, step):
        starts = range(block, block + step)
        probes = [_scan(starts, host) for host in GRID_PROBES]
        for offset in range(step):
            seen = {p[offset] for p in probes}
            if len(seen) > 1:  # split inside the /24: read it whole
                seen = set(iptocc.country_code([f"{(block + offset) >> 16}.{((block + offset) >> 8) & 255}.{(block + offset) & 255}.{h}"
                                                for h in range(256)]))
            # "" marks addresses of the /24 the dataset places nowhere (kept only beside a country).
            key = tuple(sorted(c or "" for c in seen)) if len(seen) > 1 else tuple(c for c in seen if c)
            if key not in index:
                index[key] = len(codes)
                codes.append(key)
            grid[block + offset] = index[key]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, grid=grid, codes=np.array([",".join(c) for c in codes]))
    os.replace(tmp, path)
    return grid, codes
