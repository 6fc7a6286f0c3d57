"""routing.heap: the cycle collector paused while the router and its table build many objects, and back as it was
once every paused block has ended. Real threads, real interpreter: nothing to mock."""

from __future__ import annotations

import gc
import sys
import threading

from globalaccel.routing.heap import cycle_collection_paused


def test_the_cycle_collector_is_back_on_once_every_paused_block_in_every_thread_has_ended() -> None:
    """routing.heap.cycle_collection_paused from several threads at once (TableRoutes.values() may be called from any):
    checked and switched per block, two blocks could interleave so that the collector stayed off for good (a
    reviewer's race: 41 runs in 2,932, with the interpreter switching threads every microsecond, as here)."""
    def pause_often() -> None:
        for _ in range(300):
            with cycle_collection_paused():
                pass

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for _ in range(150):
            assert gc.isenabled()
            threads = [threading.Thread(target=pause_often) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert gc.isenabled(), "every paused block has ended: the collector must be on again"
    finally:
        sys.setswitchinterval(interval)
        gc.enable()
