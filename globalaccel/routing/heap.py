"""The cycle collector paused while many objects are built that all survive.

Python's cycle collector triggers every few hundred allocations and, past the youngest generation, walks every object
built so far: building 100,000 routes and 300,000 answers with it running took 1.7 s, with it paused 0.6 s (one sitting,
cProfile). Nothing built here makes a reference cycle, so reference counting frees all of it; the collector resumes after.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_pauses = 0  # blocks paused right now, in every thread
_resume = False  # whether the collector was on when the first of them began


@contextmanager
def cycle_collection_paused() -> Iterator[None]:
    """Python's cycle collector off for the block, back as it was once every paused block has ended, in whatever
    threads (reference counting still frees everything that is not in a cycle). Counted under a lock: checking and
    switching per block let two threads' blocks interleave so that the collector stayed off for good (a reviewer's
    race, 41 runs in 2,932). A collector the caller had switched off stays off."""
    global _pauses, _resume
    with _lock:
        if _pauses == 0:
            _resume = gc.isenabled()
            gc.disable()
        _pauses += 1
    try:
        yield
    finally:
        with _lock:
            _pauses -= 1
            if _pauses == 0 and _resume:
                gc.enable()
