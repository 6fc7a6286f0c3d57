"""Asyncio prober: measures every (vantage, target) path once per interval, spread evenly.

Each path gets a fixed slot in the interval (its rank in a stable hash order) plus a little jitter,
so 12,800 prod paths arrive as a smooth ~1,300 probes/s rather than a burst every 10 s, and a target
sees its vantages' probes at different moments. Concurrency is bounded by a semaphore; a probe that
exceeds its timeout is a loss.

Probe kinds: "http" and "https" (connect, GET /healthz, time to a 2xx status line: what an application
sees; https verifies the certificate) and "tcp" (time to complete the TCP handshake: the network RTT on
real networks).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

RECV_HEAD = 64


@dataclass(frozen=True)
class ProbePath:
    vantage: str  # center id doing the probing
    source: str | None  # local address to bind (the center's own address), None = any
    target: str  # edge or center id
    address: str
    port: int


ResultSink = Callable[[ProbePath, float | None, float], None]  # (path, rtt ms or None = lost, wall time)


async def probe_http(path: ProbePath, timeout: float, tls: ssl.SSLContext | None = None) -> float | None:
    start = time.perf_counter()
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            local = (path.source, 0) if path.source else None
            reader, writer = await asyncio.open_connection(path.address, path.port, local_addr=local, ssl=tls)
            writer.write(b"GET /healthz HTTP/1.0\r\nHost: probe\r\n\r\n")
            line = await reader.readline()
        if line.startswith(b"HTTP/1.") and line[9:10] == b"2":
            return (time.perf_counter() - start) * 1000.0
        return None
    except (OSError, TimeoutError, asyncio.IncompleteReadError):
        return None
    finally:
        if writer is not None:
            writer.close()


async def probe_tcp(path: ProbePath, timeout: float) -> float | None:
    start = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            local = (path.source, 0) if path.source else None
            _, writer = await asyncio.open_connection(path.address, path.port, local_addr=local)
        rtt = (time.perf_counter() - start) * 1000.0
        writer.close()
        return rtt
    except (OSError, TimeoutError):
        return None


async def probe_https(path: ProbePath, timeout: float) -> float | None:
    """HTTP over TLS, certificate verified against the system trust store (SSL_CERT_FILE honoured):
    an edge whose certificate is wrong is not healthy."""
    return await probe_http(path, timeout, tls=_tls_context())


_TLS: list[ssl.SSLContext] = []


def _tls_context() -> ssl.SSLContext:
    if not _TLS:
        _TLS.append(ssl.create_default_context())
    return _TLS[0]


PROBES = {"http": probe_http, "https": probe_https, "tcp": probe_tcp}


def slot_order(paths: Sequence[ProbePath]) -> list[ProbePath]:
    """A stable order that interleaves vantages and targets (hash of the path, not list order)."""
    return sorted(paths, key=lambda p: hashlib.blake2b(f"{p.vantage}|{p.target}".encode(), digest_size=8).digest())


class Prober:
    def __init__(
        self,
        paths: Sequence[ProbePath],
        sink: ResultSink,
        interval: float = 10.0,
        timeout: float = 2.0,
        concurrency: int = 1024,
        kind: str = "http",
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if kind not in PROBES:
            raise ValueError(f"probe kind must be one of {sorted(PROBES)}")
        self.paths = slot_order(paths)
        self.sink = sink
        self.interval = interval
        self.timeout = min(timeout, interval)
        self.limit = asyncio.Semaphore(concurrency)
        self.probe = PROBES[kind]
        self.rng = rng or random.Random()
        self.clock = clock
        self.sent = 0
        self.lost = 0

    def offsets(self) -> list[float]:
        """Each path's start within the interval: its slot plus jitter of up to half a slot."""
        n = len(self.paths)
        slot = self.interval / max(n, 1)
        return [min(self.interval, max(0.0, (i + self.rng.uniform(-0.5, 0.5)) * slot)) for i in range(n)]

    async def _one(self, path: ProbePath) -> None:
        async with self.limit:
            rtt = await self.probe(path, self.timeout)
        self.sent += 1
        if rtt is None:
            self.lost += 1
        self.sink(path, rtt, self.clock())

    async def run_cycle(self) -> None:
        """Start every path's probe at its offset; return when all have finished."""
        loop = asyncio.get_running_loop()
        begin = loop.time()
        tasks: list[asyncio.Task[None]] = []
        pending = sorted(zip(self.offsets(), self.paths, strict=True), key=lambda x: x[0])
        i = 0
        while i < len(pending):
            now = loop.time() - begin
            while i < len(pending) and pending[i][0] <= now:
                tasks.append(asyncio.create_task(self._one(pending[i][1])))
                i += 1
            if i < len(pending):
                await asyncio.sleep(min(0.01, max(0.0, pending[i][0] - now)))
        if tasks:
            await asyncio.gather(*tasks)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await self.run_cycle()
