"""EMULATED WORLD, for local runs and tests only: every edge and center of a stack as an HTTP listener
on its own loopback address, answering probes after the delay physics predicts for the prober's
vantage point, with injectable faults. The real loop probes real addresses; nothing here is used then.

Why HTTP and not a bare TCP connect: the handshake is completed by the kernel, so application code
cannot delay it; the time to the first response line can be delayed, and that is what is probed.
Each vantage prober binds its center's own loopback address as the source, so a listener knows which
center is asking and answers with that path's delay.

Client traffic: a client that resolved the service name connects to the answered address. The catalog's
addresses are not on loopback, so the emulation stands in for the network's NAT: `client_endpoint` maps
an answered address to its edge's loopback listener, and the client sends a PROXY protocol v1 line naming
the original destination (what a load balancer in front of a real edge passes on). The edge decides the
center from that destination address alone, as a real edge does from the address it was reached on,
opens a connection from its own loopback address to that center, and relays the center's reply:
`{"edge": ..., "center": ...}`. A down edge resets the connection; a down center gives 502.

Faults (control API `POST /faults` with a JSON list, or a scenario file with `at:` offsets):
  {"kind": "center_down", "target": "eu-central-1"}   center unreachable, and its prober is silent
  {"kind": "edge_down", "target": "de-berlin-1"}
  {"kind": "congestion", "target": "de-berlin-1", "ms": 80}
  {"kind": "loss", "target": "de-berlin-1", "rate": 0.3}
  {"kind": "flap", "target": "de-berlin-1", "period_s": 10}   down for a period, up for a period, ...
  {"kind": "oscillate", "target": "de-berlin-1", "ms": 20, "period_s": 10}   +ms every other period
  {"kind": "cut_vantage", "target": "us-east-1"}   that center's prober reaches nothing (a partition)
  {"kind": "clear"} / {"kind": "clear", "target": "..."}
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from globalaccel.geo import angles_between, unit_vectors
from globalaccel.latency import PhysicsModel
from globalaccel.sourcefile import load_yaml
from globalaccel.stopping import stop_event, wait_until_stopped
from globalaccel.topology import Topology, load_stack

PROBE_PORT = 18080
FAULT_KINDS = {"center_down", "edge_down", "congestion", "loss", "flap", "oscillate", "cut_vantage", "clear"}


def edge_address(index: int) -> str:
    """Emulated edge i listens on 127.10.x.y: one loopback address per edge (up to 62,500)."""
    return f"127.{10 + index // 62_500}.{index % 62_500 // 250}.{index % 250 + 1}"


def center_address(index: int) -> str:
    return f"127.20.0.{index + 1}"


def client_endpoint(topology: Topology, answered: str, port: int) -> tuple[str, int]:
    """The emulation's NAT: the loopback listener of the edge whose client address `answered` is."""
    edge, _ = topology.path_by_address[answered]
    return edge_address(topology.edges.index(edge)), port


def down_centers(control_port: int, previous: set[str]) -> set[str]:
    """The centers the world has down (its control API): their probers are dead in the emulation, so
    `up --local` drops their results instead of recording a stream of failures no real dead prober
    would send. Keeps the previous answer if the control API does not answer."""
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{control_port}/faults", timeout=2) as response:
            return set(json.loads(response.read()).get("down", []))
    except (OSError, ValueError):
        return previous


@dataclass
class Faults:
    down: set[str] = field(default_factory=set)
    cut: set[str] = field(default_factory=set)
    congestion: dict[str, float] = field(default_factory=dict)
    loss: dict[str, float] = field(default_factory=dict)
    flap: dict[str, float] = field(default_factory=dict)
    oscillate: dict[str, tuple[float, float]] = field(default_factory=dict)

    def apply(self, fault: dict[str, Any]) -> None:
        kind = fault.get("kind")
        target = fault.get("target")
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {', '.join(sorted(FAULT_KINDS))}")
        if kind == "clear":
            if target is None:
                fresh = Faults()
                self.down, self.cut, self.congestion = fresh.down, fresh.cut, fresh.congestion
                self.loss, self.flap, self.oscillate = fresh.loss, fresh.flap, fresh.oscillate
            else:
                for store in (self.down, self.cut):
                    store.discard(target)
                for mapping in (self.congestion, self.loss, self.flap, self.oscillate):
                    mapping.pop(target, None)
            return
        if not isinstance(target, str):
            raise ValueError(f"fault {kind} needs a 'target'")
        if kind in ("center_down", "edge_down"):
            self.down.add(target)
        elif kind == "cut_vantage":
            self.cut.add(target)
        elif kind == "congestion":
            self.congestion[target] = float(fault["ms"])
        elif kind == "loss":
            self.loss[target] = float(fault["rate"])
        elif kind == "flap":
            self.flap[target] = float(fault["period_s"])
        elif kind == "oscillate":
            self.oscillate[target] = (float(fault["ms"]), float(fault["period_s"]))

    def describe(self) -> dict[str, Any]:
        return {"down": sorted(self.down), "cut": sorted(self.cut), "congestion": self.congestion, "loss": self.loss,
                "flap": self.flap, "oscillate": {k: list(v) for k, v in self.oscillate.items()}}


class World:
    """The listeners and the delay model. One asyncio server per address."""

    def __init__(self, topology: Topology, port: int = PROBE_PORT, rng: random.Random | None = None) -> None:
        self.topology = topology
        self.port = port
        self.faults = Faults()
        self.rng = rng or random.Random(7)
        self.started = time.monotonic()
        self.target_by_address: dict[str, str] = {}
        self.vantage_by_address: dict[str, str] = {}
        self._center_pos: dict[str, int] = {}
        self._target_pos: dict[str, int] = {}
        self._edge_pos_by_address: dict[str, int] = {}
        for i, edge in enumerate(topology.edges):
            self.target_by_address[edge_address(i)] = edge.id
            self._edge_pos_by_address[edge_address(i)] = i
            self._target_pos[edge.id] = i
        for j, center in enumerate(topology.centers):
            self.target_by_address[center_address(j)] = center.id
            self.vantage_by_address[center_address(j)] = center.id
            self._center_pos[center.id] = j
            self._target_pos[center.id] = len(topology.edges) + j
        physics = PhysicsModel(topology.latency, backbone=True)
        c_xyz = unit_vectors(np.array([c.lat for c in topology.centers]), np.array([c.lon for c in topology.centers]))
        lats = [e.lat for e in topology.edges] + [c.lat for c in topology.centers]
        lons = [e.lon for e in topology.edges] + [c.lon for c in topology.centers]
        t_xyz = unit_vectors(np.array(lats), np.array(lons))
        self.rtt_ms = physics.rtt_from_angles(angles_between(c_xyz, t_xyz))  # (vantage center, target)
        self.probes = 0
        self._servers: list[asyncio.base_events.Server] = []

    def true_rtt_ms(self, vantage: str, target: str, now: float | None = None) -> float | None:
        """What a probe from `vantage` to `target` should see now, or None if it must fail."""
        f = self.faults
        if vantage in f.down or vantage in f.cut or target in f.down:
            return None
        now = time.monotonic() if now is None else now
        elapsed = now - self.started
        if target in f.flap and int(elapsed // f.flap[target]) % 2 == 1:
            return None
        if target in f.loss and self.rng.random() < f.loss[target]:
            return None
        delay = float(self.rtt_ms[self._center_pos[vantage], self._target_pos[target]]) + f.congestion.get(target, 0.0)
        if target in f.oscillate:
            extra, period = f.oscillate[target]
            if int(elapsed // period) % 2 == 1:
                delay += extra
        return delay

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.probes += 1
        try:
            local = writer.get_extra_info("sockname")[0]
            peer = writer.get_extra_info("peername")[0]
            target = self.target_by_address.get(local)
            vantage = self.vantage_by_address.get(peer)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
            if head.startswith(b"PROXY ") and target in self.topology.edge_by_id:
                await self._client_request(target, head, writer)
                return
            if head.startswith(b"GET /forwarded ") and target in self._center_pos:
                edge = self.topology.edges[self._edge_pos_by_address[peer]].id if peer in self._edge_pos_by_address else "?"
                if target in self.faults.down:
                    writer.transport.abort()
                    return
                body = json.dumps({"edge": edge, "center": target}).encode()
                writer.write(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
                return
            delay = self.true_rtt_ms(vantage, target) if target and vantage else None
            if vantage is None and target in self._center_pos and head.startswith(b"GET /healthz "):
                # An observer that is no center's prober (a DNS server's own health check, e.g. PowerDNS's
                # ifurlup from its default address): it sees the center as it is, at no modelled distance.
                delay = None if target in self.faults.down else 0.0
            if delay is None:
                transport = writer.transport
                with contextlib.suppress(Exception):
                    transport.abort()  # a refused/reset connection: the probe fails at once
                return
            await asyncio.sleep(delay / 1000.0)
            writer.write(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _client_request(self, edge_id: str, head: bytes, writer: asyncio.StreamWriter) -> None:
        """A client reached edge `edge_id`: forward to the center its destination address names."""
        fields = head.split(b"\r\n", 1)[0].decode("latin-1").split()
        destination = fields[3] if len(fields) == 6 else ""
        path = self.topology.path_by_address.get(destination)
        if edge_id in self.faults.down:
            writer.transport.abort()
            return
        if path is None or path[0].id != edge_id:
            writer.write(b"HTTP/1.0 421 Misdirected Request\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            return
        center = path[1]
        status, body = 502, b""
        try:
            up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(
                center_address(self._center_pos[center]), self.port, local_addr=(edge_address(self._target_pos[edge_id]), 0)), 3.0)
            up_writer.write(b"GET /forwarded HTTP/1.0\r\n\r\n")
            await up_writer.drain()
            reply = await asyncio.wait_for(up_reader.read(), 3.0)
            up_writer.close()
            if reply.startswith(b"HTTP/1.0 200"):
                status, body = 200, reply.split(b"\r\n\r\n", 1)[1]
        except (OSError, TimeoutError):
            pass  # the center is unreachable: the edge answers 502, it never picks another center
        writer.write(b"HTTP/1.0 %d %s\r\nContent-Length: %d\r\n\r\n%s"
                     % (status, b"OK" if status == 200 else b"Bad Gateway", len(body), body))
        await writer.drain()

    async def start(self) -> None:
        for address in self.target_by_address:
            self._servers.append(await asyncio.start_server(self._handle, address, self.port, backlog=512, reuse_address=True))

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        for server in self._servers:
            await server.wait_closed()

    async def serve_control(self, port: int) -> asyncio.base_events.Server:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
                request_line, *headers = head.decode("latin-1").split("\r\n")
                method, path, _ = request_line.split(" ", 2)
                length = next((int(h.split(":", 1)[1]) for h in headers if h.lower().startswith("content-length:")), 0)
                body = await reader.readexactly(length) if length else b""
                status, payload = 200, self.faults.describe()
                if method == "POST" and path == "/faults":
                    try:
                        items = json.loads(body or b"[]")
                        for item in items if isinstance(items, list) else [items]:
                            self.faults.apply(item)
                        payload = self.faults.describe()
                    except (ValueError, KeyError, TypeError) as exc:
                        status, payload = 400, {"error": str(exc)}
                elif path == "/stats":
                    payload = {"probes": self.probes, "listeners": len(self._servers)}
                elif path != "/faults":
                    status, payload = 404, {"error": "try GET/POST /faults or GET /stats"}
                data = json.dumps(payload).encode()
                head_out = f"HTTP/1.0 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
                writer.write(head_out.encode() + data)
                await writer.drain()
            except (TimeoutError, ValueError, asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()

        return await asyncio.start_server(handle, "127.0.0.1", port)


def load_scenario(path: Path) -> list[tuple[float, dict[str, Any]]]:
    """A scenario file: `faults: [{at: seconds, kind: ..., target: ...}, ...]`."""
    root = load_yaml(path).plain()
    items = root.get("faults") if isinstance(root, dict) else None
    if not isinstance(items, list):
        raise ValueError(f"{path}: expected a mapping with a 'faults' list")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or "at" not in item or item.get("kind") not in FAULT_KINDS:
            raise ValueError(f"{path}: faults[{i}]: needs 'at' (seconds) and a 'kind' in {sorted(FAULT_KINDS)}")
        out.append((float(item.pop("at")), item))
    return sorted(out, key=lambda x: x[0])


async def run_world(stack: str, stacks_dir: Path, port: int, control_port: int, scenario: Path | None, duration: float | None) -> None:
    topology = load_stack(stack, stacks_dir)
    world = World(topology, port)
    events = load_scenario(scenario) if scenario else []
    await world.start()
    control = await world.serve_control(control_port)
    print(json.dumps({"ready": True, "listeners": len(world._servers), "port": port, "control_port": control_port}), flush=True)
    stop = stop_event()

    async def play() -> None:
        for at, fault in events:
            await asyncio.sleep(max(0.0, world.started + at - time.monotonic()))
            world.faults.apply(fault)
            print(json.dumps({"fault": fault, "at": at}), flush=True)

    player = asyncio.create_task(play())
    try:
        await wait_until_stopped(stop, duration)
    finally:
        player.cancel()
        control.close()
        await world.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="EMULATED world of a stack's edges and centers on loopback (local runs and tests)")
    parser.add_argument("--stack", required=True)
    parser.add_argument("--stacks-dir", type=Path, default=Path("stacks"))
    parser.add_argument("--port", type=int, default=PROBE_PORT)
    parser.add_argument("--control-port", type=int, default=18079)
    parser.add_argument("--scenario", type=Path)
    parser.add_argument("--duration", type=float)
    args = parser.parse_args(argv)
    asyncio.run(run_world(args.stack, args.stacks_dir, args.port, args.control_port, args.scenario, args.duration))
    return 0


if __name__ == "__main__":
    sys.exit(main())
