"""A DNS server's own view of center health: what lets a self-hosted server in every center fail over
without the controller (static stability, as Route 53's health checks do for the hosted zone).

Each server probes every center's `/healthz` from where it stands: over TLS unless the stack probes
plain http (the endpoint Route 53's HTTPS checks and PowerDNS's ifurlup ask too; the certificate is not
verified, as Route 53 does not), with 2 s to answer, as ifurlup (a TLS handshake between distant
centers takes two round trips of ~300 ms), and its own hysteresis (down after
`down_after` failures in a row, up after `up_after` successes). Unknown is up: before its first verdict,
and for a center it cannot judge, the server answers the published table as it is (fail static; every
path of a chain is lawful anyway).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable, Mapping

from globalaccel.dns.embedded import DnsResponder


class CenterWatch:
    def __init__(self, targets: Mapping[str, tuple[str, int]], on_change: Callable[[frozenset[str]], None],
                 source: str | None = None, interval_s: float = 1.0, timeout_s: float = 2.0, down_after: int = 2,
                 up_after: int = 2, tls: bool = False) -> None:
        self.targets = dict(targets)  # center -> (host, port) of its health endpoint
        self.on_change = on_change
        self.source = source  # local address to probe from (this server's center)
        self.interval_s, self.timeout_s = interval_s, timeout_s
        self.down_after, self.up_after = down_after, up_after
        self.tls: ssl.SSLContext | None = None
        if tls:
            self.tls = ssl.create_default_context()
            self.tls.check_hostname, self.tls.verify_mode = False, ssl.CERT_NONE  # reachability, not identity
        self.down: frozenset[str] = frozenset()
        self._streak: dict[str, int] = dict.fromkeys(targets, 0)  # >0: successes in a row, <0: failures in a row
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def for_responder(cls, responder: DnsResponder, targets: Mapping[str, tuple[str, int]], **kw: object) -> CenterWatch:
        every = frozenset(targets)
        return cls(targets, lambda down: responder.set_centers_down(down, isolated=down >= every), **kw)  # type: ignore[arg-type]

    async def probe(self, host: str, port: int) -> bool:
        try:
            local = (self.source, 0) if self.source else None
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, local_addr=local, ssl=self.tls), self.timeout_s)
        except (OSError, TimeoutError, ssl.SSLError):
            return False
        try:
            writer.write(b"GET /healthz HTTP/1.0\r\n\r\n")
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), self.timeout_s)
            return line.startswith((b"HTTP/1.0 2", b"HTTP/1.1 2"))
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            return False
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def check_once(self) -> frozenset[str]:
        results = await asyncio.gather(*(self.probe(h, p) for h, p in self.targets.values()))
        down = set(self.down)
        for center, ok in zip(self.targets, results, strict=True):
            streak = self._streak[center]
            streak = (max(streak, 0) + 1) if ok else (min(streak, 0) - 1)
            self._streak[center] = streak
            if streak <= -self.down_after:
                down.add(center)
            elif streak >= self.up_after:
                down.discard(center)
        if frozenset(down) != self.down:
            self.down = frozenset(down)
            self.on_change(self.down)
        return self.down

    async def run(self) -> None:
        while True:
            await self.check_once()
            await asyncio.sleep(self.interval_s)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
