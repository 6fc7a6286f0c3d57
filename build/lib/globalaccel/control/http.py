"""The loop's HTTP endpoint: /metrics (its private Prometheus registry), /status (JSON), /healthz.

/status is the machine-readable view of the last cycle (generation, health counts, fail-closed
countries, leader, errors): tests and tools read it instead of parsing the human status line.
/healthz answers 200 while the loop has completed a cycle within `stale_after` seconds, 503 otherwise,
so a kubelet's liveness probe restarts a stuck loop.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


class LoopHttpServer:
    def __init__(self, host: str, port: int, registry: CollectorRegistry, status: Callable[[], dict[str, Any]],
                 last_cycle: Callable[[], float | None], stale_after: float) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, CONTENT_TYPE_LATEST, generate_latest(registry))
                elif path == "/status":
                    self._send(200, "application/json", json.dumps(status(), sort_keys=True).encode())
                elif path == "/healthz":
                    ok, why = outer.healthy()
                    self._send(200 if ok else 503, "text/plain; charset=utf-8", why.encode())
                else:
                    self._send(404, "text/plain; charset=utf-8", b"not found: /metrics, /status, /healthz\n")

            def _send(self, code: int, content_type: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return  # scrapes every few seconds would drown the loop's own output

        self.started = time.time()
        self.last_cycle = last_cycle
        self.stale_after = stale_after
        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(target=self.server.serve_forever, name="loop-http", daemon=True)
        self._thread.start()

    def healthy(self) -> tuple[bool, str]:
        last = self.last_cycle()
        now = time.time()
        if last is None:
            # Starting up (the first cycle takes one probe interval): alive, not yet stale.
            return (now - self.started < self.stale_after, "starting\n")
        age = now - last
        return (age < self.stale_after, f"last cycle {age:.1f} s ago\n")

    def shutdown(self) -> None:
        self.server.shutdown()
        self.server.server_close()
