"""Real servers on loopback for tests: moto's Route 53 over HTTP, and a fault-injecting proxy."""

from __future__ import annotations

import http.client
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
from botocore.config import Config

from tests.conftest import ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_service_port() -> int:
    """A port below the kernel's ephemeral range (32768+), free on the emulated world's addresses. The
    world listens on 127.10.x.y and 127.20.0.x; probers use those source addresses with ephemeral
    ports, so a listener port from the ephemeral range can collide with a live probe connection."""
    import random

    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20_000, 32_000)
        try:
            for address in ("127.0.0.1", "127.20.0.1", "127.10.0.1"):
                with socket.socket() as s:
                    s.bind((address, port))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port in 20000-32000")


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port}")


@contextmanager
def moto_server() -> Iterator[str]:
    """moto on loopback, with the Route 53 CIDR collections it lacks added as a storage-only test double
    (tests/moto_cidr.py says what it stores and refuses, and on whose authority)."""
    port = free_port()
    proc = subprocess.Popen([str(ROOT / ".venv" / "bin" / "python"), "-m", "tests.moto_cidr", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def route53_client(endpoint: str) -> Any:
    """boto3 exactly as against AWS, but with botocore's retries off: globalaccel retries itself."""
    return boto3.client("route53", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                        aws_secret_access_key="testing",
                        config=Config(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=10))


ERROR_XML = ('<?xml version="1.0"?><ErrorResponse xmlns="https://route53.amazonaws.com/doc/2013-04-01/">'
             "<Error><Type>{kind}</Type><Code>{code}</Code><Message>{message}</Message></Error>"
             "<RequestId>fault-proxy</RequestId></ErrorResponse>")
FAULTS = {
    "throttle": (400, "Sender", "Throttling", "Rate exceeded"),
    "prior": (400, "Sender", "PriorRequestNotComplete", "The request was rejected because Route 53 was still processing a prior request."),
    "500": (500, "Receiver", "InternalFailure", "We encountered an internal error. Please try again."),
    "reject": (400, "Sender", "InvalidChangeBatch", "[RRSet with DNS name x is not permitted]"),  # AWS refuses the whole batch
}


class FaultProxy:
    """HTTP proxy in front of moto. For each ChangeResourceRecordSets request it takes the next fault
    from `schedule`: None (forward), 'throttle' / 'prior' / '500' / 'reject' (answer without forwarding:
    not applied), '500-after' (forward, then answer 500: applied, but the client cannot know) or
    'drop-after' (forward, then close the connection without answering)."""

    def __init__(self, upstream: str, schedule: list[str | None]) -> None:
        self.upstream = upstream.removeprefix("http://")
        self.schedule = list(schedule)
        self.seen: list[str | None] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
                conn = http.client.HTTPConnection(proxy.upstream, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                conn.request(self.command, self.path, body=body or None, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                conn.close()
                return resp.status, [(k, v) for k, v in resp.getheaders() if k.lower() not in ("transfer-encoding", "connection")], data

            def _reply(self, status: int, headers: list[tuple[str, str]], data: bytes) -> None:
                self.send_response(status)
                for k, v in headers:
                    if k.lower() != "content-length":
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _error(self, fault: str) -> None:
                status, kind, code, message = FAULTS[fault]
                self._reply(status, [("Content-Type", "text/xml")], ERROR_XML.format(kind=kind, code=code, message=message).encode())

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
                fault = None
                if self.command == "POST" and self.path.rstrip("/").endswith("/rrset"):
                    fault = proxy.schedule.pop(0) if proxy.schedule else None
                    proxy.seen.append(fault)
                if fault in FAULTS:
                    self._error(fault)
                    return
                status, headers, data = self._forward(body)
                if fault == "500-after":
                    self._error("500")
                elif fault == "drop-after":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                else:
                    self._reply(status, headers, data)

            do_GET = do_POST = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FaultProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def powerdns_server(tmp: Any, caches: bool = False, secondary: bool = False,
                    geoip: str = "/usr/share/GeoIP/GeoIP.dat") -> Iterator[tuple[int, str, str]]:
    """PowerDNS 4.7 (Debian) on loopback: gsqlite3 for our zone, geoip for countryCode() (and latlon() when
    `geoip` is a city-level MaxMind DB), LUA records and ECS processing on, the HTTP API on. Caches off by
    default so a pushed table answers at once.
    `secondary`: it may pull zones from a primary by AXFR (zones created with kind Slave).
    Yields (dns port, API URL, API key)."""
    import shutil as _shutil

    if _shutil.which("pdns_server") is None:
        raise RuntimeError("pdns_server is not installed: run scripts/system-deps")
    folder = tmp
    db = folder / "pdns.sqlite3"
    schema = "/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql"
    subprocess.run(["sqlite3", str(db)], stdin=open(schema), check=True)  # noqa: SIM115
    (folder / "geo.yaml").write_text("domains: []\n")
    dns_port, api_port, key = free_port(), free_port(), "test-key"
    (folder / "pdns.conf").write_text("\n".join([
        "launch=gsqlite3,geoip", f"gsqlite3-database={db}", f"geoip-database-files={geoip}",
        f"geoip-zones-file={folder / 'geo.yaml'}", "enable-lua-records=shared", "edns-subnet-processing=yes",
        "local-address=127.0.0.1", f"local-port={dns_port}", "api=yes", f"api-key={key}", "webserver=yes",
        "webserver-address=127.0.0.1", f"webserver-port={api_port}", "webserver-allow-from=127.0.0.0/8",
        "daemon=no", "guardian=no", f"socket-dir={folder}", "disable-syslog=yes", "loglevel=3",
        *([] if caches else ["query-cache-ttl=0", "cache-ttl=0", "negquery-cache-ttl=0"]),
        *(["secondary=yes", "query-local-address=127.0.0.1", "allow-notify-from=127.0.0.0/8"] if secondary else []),
    ]) + "\n")
    log = open(folder / "pdns.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(["pdns_server", f"--config-dir={folder}"], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(api_port)
        wait_for_port(dns_port)
        yield dns_port, f"http://127.0.0.1:{api_port}", key
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()
