"""A peer's results pulled through one address that reaches several replicas in turn, as a Kubernetes
Service does: every result of every replica arrives exactly once. Real HTTP on loopback: two replicas'
result servers and a round-robin forwarder in front of them."""

from __future__ import annotations

import itertools
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread
from typing import Any

from globalaccel.measure.peers import PeerPuller, ResultBuffer, serve_results
from globalaccel.measure.prober import ProbePath


def test_each_replicas_results_arrive_once_through_a_round_robin_service() -> None:
    replicas = [ResultBuffer("eu-central-1"), ResultBuffer("eu-central-1")]
    servers = [serve_results(b, "127.0.0.1", 0) for b in replicas]
    turn = itertools.cycle(servers)

    class Service(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            backend = next(turn)
            with urllib.request.urlopen(f"http://127.0.0.1:{backend.server_port}{self.path}", timeout=5) as response:
                body = response.read()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    service = ThreadingHTTPServer(("127.0.0.1", 0), Service)
    Thread(target=service.serve_forever, daemon=True).start()
    try:
        puller = PeerPuller("eu-central-1", f"http://127.0.0.1:{service.server_port}")
        seen: list[tuple[str, float]] = []

        def sink(path: ProbePath, rtt: float | None, at: float) -> None:
            seen.append((path.target, at))

        expected = []
        for cycle in range(6):
            for n, buffer in enumerate(replicas):
                for k in range(n + 2):  # the replicas' sequence numbers drift apart, as real ones do
                    buffer.add(f"edge-{n}-{k}", 10.0, float(cycle))
                    expected.append((f"edge-{n}-{k}", float(cycle)))
            data = puller.fetch()
            if data is not None:
                puller.feed(data, sink)
        for _ in range(4):  # drain: each replica answers in turn
            data = puller.fetch()
            if data is not None:
                puller.feed(data, sink)
        assert sorted(seen) == sorted(expected)  # nothing lost, nothing twice
    finally:
        service.shutdown()
        for server in servers:
            server.shutdown()
