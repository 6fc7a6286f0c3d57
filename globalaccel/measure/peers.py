"""How measurements reach the leader: every prober serves its own results; the leader pulls them.

A prober keeps its recent results in a bounded buffer with sequence numbers and serves
`GET /measurements?since=N` as JSON. Each loop instance pulls every peer once per cycle and feeds the
results into its own health tracker and latency model, exactly as if it had probed them itself. A
peer that cannot be reached adds nothing: its paths go stale, which counts as unknown (never healthy,
never a down vote). See the README's architecture section for why pull.

Authenticated both ways with a key the centers share (HMAC-SHA256, the key from the environment, never
on a command line): the puller signs its request (method, path, timestamp), the prober refuses an
unsigned or stale one (401) and signs its answer (timestamp, path, body), and the puller drops an answer
whose signature or timestamp does not hold (a forged or replayed vote counts as no vote at all).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from globalaccel.measure.prober import ProbePath

BUFFER = 200_000  # results kept for peers: > 15 prod cycles of one vantage (3,203 paths each)
SIGNATURE = "X-Globalaccel-Signature"
TIMESTAMP = "X-Globalaccel-Timestamp"
MAX_SKEW_S = 60.0  # a signed request or answer older than this is refused: no replays
MAX_AHEAD_S = 5.0  # ... or dated further ahead than this (a future date would stretch the replay window)


def sign(key: bytes, *parts: bytes) -> str:
    return hmac.new(key, b"\n".join(parts), hashlib.sha256).hexdigest()


def fresh(timestamp: str | None, now: float) -> bool:
    try:
        return timestamp is not None and -MAX_AHEAD_S <= now - float(timestamp) <= MAX_SKEW_S
    except ValueError:
        return False


def same(given: str, expected: str) -> bool:
    """Constant-time, on bytes: a header may hold any characters, and str comparison refuses non-ASCII."""
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode())


class ResultBuffer:
    """This vantage's recent results, numbered, for peers to pull. Thread-safe."""

    def __init__(self, vantage: str, capacity: int = BUFFER) -> None:
        self.vantage = vantage
        self.instance = uuid.uuid4().hex  # which process: a peer behind a Service may be any of several replicas
        self._items: deque[tuple[int, str, float | None, float]] = deque(maxlen=capacity)
        self._next = 0
        self._lock = threading.Lock()

    def add(self, target: str, rtt_ms: float | None, at: float) -> None:
        with self._lock:
            self._items.append((self._next, target, rtt_ms, at))
            self._next += 1

    def since(self, seq: int) -> dict[str, Any]:
        with self._lock:
            results = [[t, r, a] for s, t, r, a in self._items if s >= seq]
            return {"vantage": self.vantage, "instance": self.instance, "next": self._next, "results": results}


def serve_results(buffer: ResultBuffer, host: str, port: int, key: bytes) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            stamp = self.headers.get(TIMESTAMP)
            given = self.headers.get(SIGNATURE, "")
            if not fresh(stamp, time.time()) or not same(given, sign(key, b"GET", self.path.encode(), str(stamp).encode())):
                self.send_error(401, "sign the request with the centers' shared key")
                return
            url = urllib.parse.urlparse(self.path)
            if url.path != "/measurements":
                self.send_error(404, "try /measurements?since=N")
                return
            try:
                since = int(urllib.parse.parse_qs(url.query).get("since", ["0"])[0])
            except ValueError:
                self.send_error(400, "since must be an integer")
                return
            body = json.dumps(buffer.since(since)).encode()
            answered = str(time.time())
            self.send_response(200)
            self.send_header(TIMESTAMP, answered)
            self.send_header(SIGNATURE, sign(key, answered.encode(), self.path.encode(), body))
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@dataclass
class PeerPuller:
    vantage: str  # the center this peer probes from
    url: str  # base URL, e.g. http://10.0.1.5:9465
    key: bytes = b""  # the centers' shared key (globalaccel.settings LoopSettings.peer_key_env)
    since: int = 0
    failures: int = 0
    pulled: int = 0
    # The sequence already read, per peer process: behind one Service, each request may reach another
    # replica with its own numbering, and one shared cursor would skip one's results and replay the other's.
    cursors: dict[str, int] = field(default_factory=dict)
    last_instance: str | None = None

    def fetch(self, timeout: float = 3.0) -> dict[str, Any] | None:
        """New results from the peer (blocking I/O: run it off the event loop), or None if unreachable."""
        try:
            data = self._get(timeout)
            instance = str(data.get("instance", ""))
            if instance != self.last_instance and self.cursors.get(instance, 0) != self.since:
                # Another replica answered than the one the cursor was for: ask it again from its own cursor.
                self.since = self.cursors.get(instance, 0)
                data = self._get(timeout)
                if str(data.get("instance", "")) != instance:
                    return None  # the Service moved us on again: next cycle
            self.last_instance = instance
        except Exception:  # whatever a peer address answers (a dead pod mid-reply, a stranger): no vote, never a crash
            self.failures += 1
            return None
        if data.get("vantage") != self.vantage:
            self.failures += 1
            return None  # a misconfigured peer must not vote under another center's name
        return data

    def _get(self, timeout: float) -> dict[str, Any]:
        """One signed request; the answer only if its signature and timestamp hold (ValueError otherwise)."""
        path = f"/measurements?since={self.since}"
        stamp = str(time.time())
        request = urllib.request.Request(f"{self.url.rstrip('/')}{path}",
                                         headers={TIMESTAMP: stamp, SIGNATURE: sign(self.key, b"GET", path.encode(), stamp.encode())})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
            answered = response.headers.get(TIMESTAMP)
            given = response.headers.get(SIGNATURE, "")
        if not fresh(answered, time.time()) or not same(given, sign(self.key, str(answered).encode(), path.encode(), body)):
            raise ValueError(f"{self.url}: answer not signed with the centers' key (or stale): dropped")
        data: dict[str, Any] = json.loads(body)
        return data

    def feed(self, data: dict[str, Any], sink: Callable[[ProbePath, float | None, float], None]) -> int:
        """Hand fetched results to `sink` (on the loop's own thread). Returns how many."""
        for target, rtt, at in data["results"]:
            sink(ProbePath(self.vantage, None, str(target), "", 0), None if rtt is None else float(rtt), float(at))
        self.since = int(data["next"])
        self.cursors[str(data.get("instance", ""))] = self.since
        self.pulled += len(data["results"])
        return len(data["results"])
