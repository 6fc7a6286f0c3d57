"""Probe kinds against real listeners on loopback: HTTP, HTTPS (with a real TLS handshake and
certificate verification) and TCP; failures are losses, never exceptions."""

from __future__ import annotations

import asyncio
import itertools
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

from globalaccel.measure.prober import ProbePath, Prober, probe_http, probe_https, probe_tcp
from tests.services import free_port


async def serve(port: int, tls: ssl.SSLContext | None = None, status: bytes = b"200") -> asyncio.base_events.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.0 " + status + b" X\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", port, ssl=tls)


def self_signed(folder: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make a test certificate")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def test_http_tcp_and_https_probes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cert, key = self_signed(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # trust the test certificate, as an operator's CA bundle would be

    async def scenario() -> None:
        server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_tls.load_cert_chain(cert, key)
        ports = [free_port() for _ in range(4)]
        servers = [await serve(ports[0]), await serve(ports[1], server_tls), await serve(ports[2], status=b"503")]

        def path(port: int) -> ProbePath:
            return ProbePath("c", None, "t", "127.0.0.1", port)

        try:
            assert (await probe_http(path(ports[0]), 2.0) or 0) > 0
            assert (await probe_tcp(path(ports[0]), 2.0) or 0) > 0
            assert (await probe_https(path(ports[1]), 2.0) or 0) > 0
            assert await probe_https(path(ports[0]), 2.0) is None  # plain HTTP where TLS is expected: a loss
            assert await probe_http(path(ports[2]), 2.0) is None  # 503: unhealthy
            assert await probe_tcp(path(ports[3]), 2.0) is None  # nothing listening: a loss, not an exception
        finally:
            for s in servers:
                s.close()

    asyncio.run(scenario())


def test_https_rejects_an_untrusted_certificate(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)  # not trusted: SSL_CERT_FILE is not set

    async def scenario() -> float | None:
        server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_tls.load_cert_chain(cert, key)
        port = free_port()
        server = await serve(port, server_tls)
        try:
            return await probe_https(ProbePath("c", None, "t", "127.0.0.1", port), 2.0)
        finally:
            server.close()

    import globalaccel.measure.prober as prober

    prober._TLS.clear()
    assert asyncio.run(scenario()) is None


def test_prober_spreads_paths_over_the_interval() -> None:
    paths = [ProbePath("c", None, f"t{i}", "127.0.0.1", 9) for i in range(100)]
    prober = Prober(paths, lambda *_: None, interval=10.0)
    offsets = sorted(prober.offsets())
    gaps = [b - a for a, b in itertools.pairwise(offsets)]
    assert offsets[0] >= 0 and offsets[-1] <= 10.0
    assert max(gaps) < 0.2 and min(gaps) >= 0  # slot 0.1 s, jitter at most half a slot each way
