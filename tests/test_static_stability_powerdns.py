"""Static stability on PowerDNS: a PowerDNS in every center fails over by itself, with no controller and no
API call after the one publish. Real parts: two PowerDNS 4.7 servers (Debian's, on loopback, each its own
sqlite zone, as two centers' servers would be), the emulated world's center listeners (killed through its
fault API), and a DNS client asking with ECS. PowerDNS's own `ifurlup` checks the centers' `/healthz`; the
controller only published the LUA record with each country's failover chain once."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack

import dns.edns
import dns.message
import dns.query
import dns.rdatatype
import pytest

from globalaccel.answers import Answers, Served
from globalaccel.dns.backend import OwnedZone, publish
from globalaccel.dns.powerdns import PowerDnsBackend, compile_powerdns, layout_for, lua_code
from globalaccel.emulated.failover import judge_answers, start_world
from globalaccel.emulated.world import center_address
from globalaccel.routing.summary import route_table
from globalaccel.topology import Topology, load_stack
from tests.conftest import STACKS
from tests.services import free_port, free_service_port, powerdns_server

DEV = load_stack("dev", STACKS)
# Networks PowerDNS's GeoIP data (Debian's geoip-database) places in these countries: checked through its
# own countryCode() probe record before anything else is asserted.
NETWORKS = {"DE": "85.214.0.0/24", "BY": "178.120.0.0/24", "US": "8.8.8.0/24", "GB": "81.2.69.0/24"}


class Plane:
    def __init__(self, topology: Topology, answers: Answers, control_port: int, servers: dict[str, int]) -> None:
        self.topology, self.answers, self.control_port, self.servers = topology, answers, control_port, servers

    def fault(self, item: dict[str, str]) -> None:
        request = urllib.request.Request(f"http://127.0.0.1:{self.control_port}/faults", data=json.dumps(item).encode(), method="POST")
        with urllib.request.urlopen(request, timeout=5):
            pass

    def ask(self, server: str, name: str, rdtype: str, network: str) -> dns.message.Message:
        address, prefix = network.split("/")
        query = dns.message.make_query(name, rdtype, use_edns=0, options=[dns.edns.ECSOption(address, int(prefix))])
        return dns.query.udp(query, "127.0.0.1", port=self.servers[server], timeout=3)

    def judge(self, server: str, code: str) -> tuple[set[str], list[str]]:
        """The centers a client of `code` is answered through by `server`, and any unlawful path among them."""
        reply = self.ask(server, self.topology.service_name, "A", NETWORKS[code])
        # A records only: the CNAME to the country's own name comes first.
        addresses = [r.address for rrset in reply.answer if rrset.rdtype == dns.rdatatype.A for r in rrset]
        return judge_answers(self.topology, code, addresses, f"via {server}")

    def expected(self, down: set[str]) -> dict[str, str]:
        out = {}
        for code in NETWORKS:
            decision = self.answers.country(code)
            assert isinstance(decision, Served), code
            live = [p.center for p in decision.paths if p.center not in down]
            out[code] = live[0] if live else decision.center
        return out


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    table = route_table(DEV)
    answers = Answers.from_table(table, DEV)
    world_port, control_port = free_service_port(), free_port()  # the world: below the ephemeral range
    health = {c.id: f"http://{center_address(j)}:{world_port}" for j, c in enumerate(DEV.centers)}  # the world's center j
    with ExitStack() as stack:
        world = start_world(DEV, STACKS, world_port, control_port)
        stack.callback(world.wait, 10)
        stack.callback(world.terminate)
        servers = {}
        for center in ("us-east-1", "ap-southeast-1"):
            port, api, key = stack.enter_context(powerdns_server(tmp_path_factory.mktemp(f"pdns-{center}")))
            backend = PowerDnsBackend(api, key, layout_for(DEV), DEV, health=health)
            backend.ensure_zone()
            publish(OwnedZone(backend), answers)  # the controller's one publish; nothing writes after this
            servers[center] = port
        yield Plane(DEV, answers, control_port, servers)


def settle(plane: Plane, down: set[str], timeout_s: float) -> tuple[float | None, list[str]]:
    """Seconds until every server answers every country through the first live center of its chain; every
    answer seen on the way is judged for residency."""
    expected = plane.expected(down)
    pending = {(s, code) for s in plane.servers for code in NETWORKS}
    wrong: list[str] = []
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        for server, code in sorted(pending):
            centers, bad = plane.judge(server, code)
            wrong += bad
            if centers == {expected[code]}:
                pending.discard((server, code))
        if not pending:
            return time.monotonic() - start, wrong
        time.sleep(0.1)
    return None, wrong


def test_powerdns_places_the_test_networks_where_the_test_expects(plane: Plane) -> None:
    probe = layout_for(DEV).geo_probe
    for code, network in NETWORKS.items():
        reply = plane.ask("us-east-1", probe, "TXT", network)
        assert [r.strings[0].decode().upper() for rrset in reply.answer for r in rrset] == [code], code


def test_the_published_record_carries_each_countrys_chain_and_asks_powerdns_for_live_centers(plane: Plane) -> None:
    records = compile_powerdns(DEV, plane.answers)  # the stack's own center addresses and probe port (HTTPS, as Route 53's checks)
    content = lua_code(next(r for r in records if r.name == f"de.cc.{DEV.zone.rstrip('.')}.").values[0])[1]
    library = lua_code(next(r for r in records if r.name == f"_lib.cc.{DEV.zone.rstrip('.')}.").values[0])[1]
    assert content.startswith(";include('_lib.cc') return gachain(")
    assert "ifurlup('https://health." in library and "backupSelector='all'" in library
    assert all(len(r.values[0]) < 65535 for r in records)
    de = plane.answers.country("DE")
    assert isinstance(de, Served) and [p.center for p in de.paths][:2] == ["eu-central-1", "us-east-1"]


def test_each_centers_powerdns_fails_over_on_its_own_and_comes_back(plane: Plane) -> None:
    took, wrong = settle(plane, set(), timeout_s=20)
    assert took is not None and wrong == []
    assert plane.expected(set())["DE"] == "eu-central-1"
    plane.fault({"kind": "center_down", "target": "eu-central-1"})
    try:
        took, wrong = settle(plane, {"eu-central-1"}, timeout_s=30)
        # Germany moves to us-east-1 (its chain's next center); Belarus, allowed only eu-central-1, keeps that
        # (dead) path: never another region. Every answer on the way was lawful.
        assert wrong == [] and took is not None, (took, wrong)
        assert plane.expected({"eu-central-1"})["DE"] == "us-east-1" and plane.expected({"eu-central-1"})["BY"] == "eu-central-1"
    finally:
        plane.fault({"kind": "clear", "target": "eu-central-1"})
    took, wrong = settle(plane, set(), timeout_s=30)
    assert took is not None and wrong == [], "PowerDNS did not come back to eu-central-1 once it answered again"


def test_every_center_of_a_chain_down_keeps_the_chosen_lawful_path(plane: Plane) -> None:
    """With every center Germany's rule allows down, PowerDNS's fallback (every address when none is up)
    must not pick one at random: the snippet answers the chosen path, as the embedded server does."""
    chain = plane.answers.country("DE")
    assert isinstance(chain, Served)
    every = {p.center for p in chain.paths}
    for center in every:
        plane.fault({"kind": "center_down", "target": center})
    try:
        time.sleep(8)  # beyond PowerDNS's health-check interval (5 s): every center of the chain is seen down
        for server in plane.servers:
            for _ in range(5):
                assert plane.judge(server, "DE") == ({chain.center}, []), server
    finally:
        for center in every:
            plane.fault({"kind": "clear", "target": center})
    took, _ = settle(plane, set(), timeout_s=30)
    assert took is not None


def test_https_health_endpoints_as_route53_checks_them_drive_powerdns_failover(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The default health endpoint is HTTPS (what Route 53's checks ask). Real TLS on loopback: every center's
    /healthz behind a self-signed certificate (openssl), eu-central-1's answering 503. PowerDNS's ifurlup
    does not verify the certificate (as Route 53 does not) and moves Germany to us-east-1, its chain's next."""
    import ssl
    import subprocess
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    folder = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=somewhere-else",
                    "-keyout", str(folder / "key.pem"), "-out", str(folder / "cert.pem")], check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    addresses = {c.id: f"127.0.78.{j + 1}" for j, c in enumerate(DEV.centers)}

    class Healthz(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            here = self.connection.getsockname()[0]  # the center address this request reached
            self.send_response(503 if here == addresses["eu-central-1"] else 200)
            self.end_headers()

    port = free_service_port()  # bound on the center addresses, where probers take ephemeral ports
    servers = []
    for address in addresses.values():
        server = HTTPServer((address, port), Healthz)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    answers = Answers.from_table(route_table(DEV), DEV)
    try:
        with powerdns_server(tmp_path_factory.mktemp("pdns-tls")) as (dns_port, api, key):
            backend = PowerDnsBackend(api, key, layout_for(DEV), DEV, health={c: f"https://{a}:{port}" for c, a in addresses.items()})
            backend.ensure_zone()
            publish(OwnedZone(backend), answers)
            plane = Plane(DEV, answers, 0, {"here": dns_port})
            took, wrong = settle(plane, {"eu-central-1"}, timeout_s=30)
            assert took is not None and wrong == [], (took, wrong)
            assert plane.expected({"eu-central-1"})["DE"] == "us-east-1"
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
