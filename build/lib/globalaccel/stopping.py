"""Run until Ctrl-C / SIGTERM or a duration, whichever comes first (long-running commands share it)."""

from __future__ import annotations

import asyncio
import contextlib
import signal


def stop_event() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM on the running loop."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def wait_until_stopped(stop: asyncio.Event, duration: float | None) -> None:
    if duration is None:
        await stop.wait()
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), duration)
