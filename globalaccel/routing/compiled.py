"""The decorator of the router's compiled kernels: numba, compiled once and kept on disk where it can be.

numba keeps compiled kernels beside their source (`__pycache__`), else in NUMBA_CACHE_DIR or the user's cache
directory. A read-only install with no writable home (the image's pods: read-only root filesystem, a user with no
home) has none of these, and numba then refuses to define a cached kernel at all: the router would not import. The
image sets NUMBA_CACHE_DIR to its /tmp volume; anywhere else without a cache location the kernels are compiled at
every start (about 3 s) and a warning says how to keep them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar, cast

from numba import njit

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])


def kernel(fn: F) -> F:
    """numba.njit(nogil=True), cached on disk when numba finds a writable place for it."""
    try:
        compiled = cast(F, njit(cache=True, nogil=True)(fn))  # a Dispatcher, called as the function itself
    except RuntimeError as exc:  # numba: "cannot cache function ...: no locator available for file ..."
        if "cannot cache" not in str(exc):
            raise
        log.warning("%s: compiled at every start instead (set NUMBA_CACHE_DIR to a writable directory to keep it)", exc)
        compiled = cast(F, njit(cache=False, nogil=True)(fn))
    return compiled
