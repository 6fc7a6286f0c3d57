"""A peer's results pulled through one address that reaches several replicas in turn, as a Kubernetes
Service does: every result of every replica arrives exactly once. Real HTTP on loopback: two replicas'
result servers and a round-robin forwarder in front of them."""

from __future__ import annotations

import itertools
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread
from typing import Any

from globalaccel.measure.peers import SIGNATURE, TIMESTAMP, PeerPuller, ResultBuffer, serve_results, sign
from globalaccel.measure.prober import ProbePath

KEY = b"centers-shared-key"


def test_each_replicas_results_arrive_once_through_a_round_robin_service() -> None:
    replicas = [ResultBuffer("eu-central-1"), ResultBuffer("eu-central-1")]
    servers = [serve_results(b, "127.0.0.1", 0, KEY) for b in replicas]
    turn = itertools.cycle(servers)

    class Service(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            backend = next(turn)
            signed = {h: self.headers[h] for h in (TIMESTAMP, SIGNATURE) if self.headers.get(h)}
            request = urllib.request.Request(f"http://127.0.0.1:{backend.server_port}{self.path}", headers=signed)
            with urllib.request.urlopen(request, timeout=5) as response:
                body = response.read()
                answer = {h: response.headers[h] for h in (TIMESTAMP, SIGNATURE)}
            self.send_response(200)
            for header, value in answer.items():
                self.send_header(header, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    service = ThreadingHTTPServer(("127.0.0.1", 0), Service)
    Thread(target=service.serve_forever, daemon=True).start()
    try:
        puller = PeerPuller("eu-central-1", f"http://127.0.0.1:{service.server_port}", KEY)
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


def test_results_are_authenticated_both_ways() -> None:
    """A request without the key's signature is refused (401); an answer signed with another key, or an
    old signed answer replayed, is dropped as no vote; the right key gets the results."""
    import time

    buffer = ResultBuffer("eu-central-1")
    buffer.add("edge-1", 12.0, 1.0)
    server = serve_results(buffer, "127.0.0.1", 0, KEY)
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        try:
            urllib.request.urlopen(f"{url}/measurements?since=0", timeout=5)
            raise AssertionError("an unsigned request was answered")
        except urllib.error.HTTPError as exc:
            assert exc.code == 401
        stranger = PeerPuller("eu-central-1", url, b"another-key")
        assert stranger.fetch() is None and stranger.failures == 1  # refused by the server: its signature does not hold
        good = PeerPuller("eu-central-1", url, KEY)
        data = good.fetch()
        assert data is not None and data["results"] == [["edge-1", 12.0, 1.0]]
        # A correctly signed request captured an hour ago and replayed: refused.
        old = str(time.time() - 3600)
        replay = urllib.request.Request(f"{url}/measurements?since=0", headers={
            TIMESTAMP: old, SIGNATURE: sign(KEY, b"GET", b"/measurements?since=0", old.encode())})
        try:
            urllib.request.urlopen(replay, timeout=5)
            raise AssertionError("a replayed request was answered")
        except urllib.error.HTTPError as exc:
            assert exc.code == 401
        # A man in the middle that passes the signed request on but answers with results of its own.
        class Forger(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                body = b'{"vantage": "eu-central-1", "instance": "x", "next": 9, "results": [["edge-1", null, 2.0]]}'
                self.send_response(200)
                self.send_header(TIMESTAMP, str(time.time()))
                self.send_header(SIGNATURE, "0" * 64)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        forger = ThreadingHTTPServer(("127.0.0.1", 0), Forger)
        Thread(target=forger.serve_forever, daemon=True).start()
        fooled = PeerPuller("eu-central-1", f"http://127.0.0.1:{forger.server_port}", KEY)
        assert fooled.fetch() is None and fooled.failures == 1  # a forged "edge-1 lost" vote never counts
        forger.shutdown()

        # Whatever answers at a peer's address, the puller counts a failure and never raises: a non-ASCII
        # signature, a body cut short (a pod dying mid-reply).
        class Broken(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header(TIMESTAMP, str(time.time()))
                self.send_header(SIGNATURE, "\u00e9" * 64 if "since=0" in self.path else "0" * 64)
                self.send_header("Content-Length", "100")
                self.end_headers()
                self.wfile.write(b"{}")

        broken = ThreadingHTTPServer(("127.0.0.1", 0), Broken)
        Thread(target=broken.serve_forever, daemon=True).start()
        odd = PeerPuller("eu-central-1", f"http://127.0.0.1:{broken.server_port}", KEY)
        assert odd.fetch(timeout=2) is None and odd.failures == 1
        odd.since = 5
        assert odd.fetch(timeout=2) is None and odd.failures == 2
        broken.shutdown()
    finally:
        server.shutdown()
