"""The embedded server's sockets around one DnsResponder: UDP on a thread of its own, TCP on asyncio.

UDP is served by a blocking loop (receive, answer, send) on a dedicated thread: asyncio wakes its selector
and runs a callback for every datagram, which costs about as much as answering one from the fast path
(benchmarks/bench_wire.py). TCP stays on the event loop, where connections are limited in number and closed
when idle. The responder swaps its snapshot and health view as single reference assignments, so the two
threads never see one half-updated.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import logging
import socket
import struct
import sys
import threading

from globalaccel.dns.embedded import DnsResponder

TCP_IDLE_S = 10.0
TCP_CONNECTIONS_MAX = 256  # open TCP connections served at once; more are closed at once (RFC 7766 6.2.2)
# From one source address: one client (or a few) cannot take every slot and lock the others out.
TCP_CONNECTIONS_PER_SOURCE = 16
UDP_RECEIVE_BUFFER = 4 << 20  # asked of the kernel (capped at net.core.rmem_max): rides out bursts
PORT_ATTEMPTS = 20

log = logging.getLogger(__name__)


class _UdpLoop:
    def __init__(self, sock: socket.socket, responder: DnsResponder) -> None:
        self.sock = sock
        self.responder = responder
        self.stopping = False
        self.thread = threading.Thread(target=self._run, name=f"dns-udp-{sock.getsockname()[1]}", daemon=True)

    def _run(self) -> None:
        sock, respond = self.sock, self.responder.respond
        # One buffer for every datagram, copied out at its length: recvfrom(65535) would allocate 64 KB and
        # shrink it per query. A query may be up to 65,535 bytes (EDNS), so the buffer is that big.
        buffer = bytearray(65535)
        view = memoryview(buffer)
        while not self.stopping:
            try:
                size, peer = sock.recvfrom_into(buffer)
            except OSError:
                return  # the socket was shut down or closed: stop() is under way
            if peer is None:
                continue  # woken by shutdown()
            wire = bytes(view[:size])
            try:
                reply = respond(wire, peer[0], True)
            except Exception:  # a bug must not end UDP service: log it, count it, answer the next query
                log.exception("answering a UDP query from %s", peer[0])
                self.responder.stats.servfail += 1
                continue
            if reply is not None:
                with contextlib.suppress(OSError):
                    sock.sendto(reply, peer)

    def stop(self) -> None:
        self.stopping = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked recvfrom (it raises ENOTCONN here)
        self.thread.join(5)
        self.sock.close()


SO_RCVBUFFORCE = 33  # Linux (asm-generic/socket.h); Python's socket module does not export it


def set_receive_buffer(sock: socket.socket, size: int) -> None:
    """Beyond net.core.rmem_max where the process may (Linux, CAP_NET_ADMIN), else up to it."""
    if sys.platform == "linux":
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
            return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)


def _udp_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        set_receive_buffer(sock, UDP_RECEIVE_BUFFER)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


class EmbeddedDnsServer:
    """UDP and TCP listeners around one DnsResponder."""

    def __init__(self, responder: DnsResponder, host: str, port: int) -> None:
        self.responder = responder
        self.host = host
        self.port = port
        self._udp: _UdpLoop | None = None
        self._tcp: asyncio.base_events.Server | None = None
        self.tcp_open = 0
        self._tcp_by_source: dict[str, int] = {}

    async def start(self) -> None:
        """Listen on UDP and TCP at one port. With port 0 the kernel picks the UDP port, and the same
        number may already be taken on TCP (by a listener or a connection's ephemeral end): then both
        are given up and another port is tried, rather than failing at random."""
        attempts = 1 if self.port else PORT_ATTEMPTS
        for attempt in range(attempts):
            sock = _udp_socket(self.host, self.port)
            port = self.port or int(sock.getsockname()[1])
            try:
                self._tcp = await asyncio.start_server(self._serve_tcp, self.host, port)
            except OSError as error:
                sock.close()
                if error.errno != errno.EADDRINUSE or attempt == attempts - 1:
                    raise
                continue
            self.port = port
            self._udp = _UdpLoop(sock, self.responder)
            self._udp.thread.start()
            return

    async def stop(self) -> None:
        if self._udp is not None:
            await asyncio.to_thread(self._udp.stop)
        if self._tcp is not None:
            self._tcp.close()
            await self._tcp.wait_closed()

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        source = peer[0] if peer else "0.0.0.0"
        mine = self._tcp_by_source.get(source, 0)
        if self.tcp_open >= TCP_CONNECTIONS_MAX or mine >= TCP_CONNECTIONS_PER_SOURCE:
            # Full: close at once rather than queue (RFC 7766 6.2.2); the client retries or asks another server.
            self.responder.stats.dropped += 1
            writer.close()
            return
        self.tcp_open += 1
        self._tcp_by_source[source] = mine + 1
        try:
            while True:
                header = await asyncio.wait_for(reader.readexactly(2), TCP_IDLE_S)
                (length,) = struct.unpack("!H", header)
                wire = await asyncio.wait_for(reader.readexactly(length), TCP_IDLE_S)
                reply = self.responder.respond(wire, source, udp=False)
                if reply is None:
                    break
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            pass
        finally:
            self.tcp_open -= 1
            left = self._tcp_by_source[source] - 1
            if left:
                self._tcp_by_source[source] = left
            else:
                del self._tcp_by_source[source]
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


def settle_heap() -> None:
    """For a process about to serve for long: what exists now (the stack, the network database, the first
    table) lives as long as the server. Out of the collector's sight, a full collection no longer walks it and
    stalls UDP service for a burst's worth of queries. Called by the commands, not by the server itself (a
    test process starts many servers and must not freeze its own heap)."""
    gc.freeze()
