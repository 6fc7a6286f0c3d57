"""Static stability, self-hosted: an authoritative server per center (its own process) keeps failing over
with the controller gone. Real parts: the emulated world's center listeners (killed through its fault
API), four `globalaccel dns serve --center` processes each probing the centers from its own address, and
a DNS client asking them over UDP with ECS. No controller runs after the zone file is written once."""

from __future__ import annotations

from pathlib import Path

from globalaccel.dns.embedded import locate_ip
from globalaccel.emulated.failover import data_plane, lose_center
from globalaccel.topology import load_stack
from tests.conftest import STACKS
from tests.services import free_port, free_service_port

# Networks iptocc places in each country (from globalaccel.audit.sources.representative_networks).
NETWORKS = {"DE": "109.192.8.0/24", "BY": "134.17.8.0/24", "US": "100.0.8.0/24", "FR": "109.0.8.0/24", "GB": "1.186.8.0/24",
            "IN": "1.187.8.0/24", "SA": "109.82.8.0/24", "SG": "101.127.8.0/24", "BR": "139.82.8.0/24", "AE": "109.177.8.0/24"}


def test_losing_a_center_fails_over_in_every_other_centers_server_without_the_controller(tmp_path: Path) -> None:
    dev = load_stack("dev", STACKS)
    for code, network in NETWORKS.items():
        assert locate_ip(network.split("/")[0]) == code, code  # the servers will place them there
    # World and per-center servers listen where probers connect from with ephemeral ports: below that range.
    ports = (free_service_port(), free_port(), free_service_port())
    with data_plane(dev, STACKS, tmp_path / "zone.json", NETWORKS, ports) as plane:
        assert plane.centers_answered("us-east-1", "DE") == {"eu-central-1"}
        assert plane.centers_answered("ap-southeast-1", "BY") == {"eu-central-1"}
        took, violations = lose_center(plane, "eu-central-1", STACKS, tmp_path / "zone.json", timeout_s=30)
        assert violations == []
        # Every other server moved Germany (and France) to us-east-1, their chain's next center, and kept Belarus,
        # with no other allowed center, on eu-central-1's path (dead; never another region). Detection takes at
        # least two failed probes a second apart, so an instant "success" would be a broken measurement.
        assert took is not None and 1.0 < took < 30, took
        assert plane.expected({"eu-central-1"})["DE"] == "us-east-1" and plane.expected({"eu-central-1"})["BY"] == "eu-central-1"
        assert plane.centers_answered("me-central-1", "DE") == {"eu-central-1"}  # back once the center is


def test_the_zone_without_chains_never_fails_over(tmp_path: Path) -> None:
    """Today's behaviour before the chains, measured the same way: the servers keep the dead center."""
    dev = load_stack("dev", STACKS)
    # World and per-center servers listen where probers connect from with ephemeral ports: below that range.
    ports = (free_service_port(), free_port(), free_service_port())
    networks = {k: NETWORKS[k] for k in ("DE", "FR")}
    with data_plane(dev, STACKS, tmp_path / "zone.json", networks, ports, chains=False) as plane:
        took, violations = lose_center(plane, "eu-central-1", STACKS, tmp_path / "zone.json", timeout_s=6)
    assert took is None and violations == []


def test_the_ns_set_spans_the_centers_and_survives_one(tmp_path: Path) -> None:
    """Every center's server names all four in the zone's NS set (with their addresses), so a resolver that
    loses one center's server asks another; each of the others still answers NS while one is gone."""
    import dns.message
    import dns.query
    import dns.rdatatype

    from globalaccel.emulated.failover import server_address

    dev = load_stack("dev", STACKS)
    # World and per-center servers listen where probers connect from with ephemeral ports: below that range.
    ports = (free_service_port(), free_port(), free_service_port())
    with data_plane(dev, STACKS, tmp_path / "zone.json", {"DE": NETWORKS["DE"]}, ports) as plane:
        expected = {(f"ns-{c}.{dev.zone.rstrip('.')}.", server_address(j)) for j, c in enumerate(dev.center_ids)}
        plane.servers["eu-central-1"].kill()
        for j, center in enumerate(dev.center_ids):
            if center == "eu-central-1":
                continue
            reply = dns.query.udp(dns.message.make_query(dev.zone, dns.rdatatype.NS), server_address(j), port=plane.dns_port, timeout=2)
            hosts = {r.target.to_text() for rrset in reply.answer for r in rrset}
            glue = {(rrset.name.to_text(), r.address) for rrset in reply.additional for r in rrset}
            assert hosts == {h for h, _ in expected} and glue == expected, center
        plane.servers["eu-central-1"].wait(timeout=10)


def test_a_partitioned_center_and_a_restart_of_everything_keep_answers_lawful(tmp_path: Path) -> None:
    """Partition: eu-central-1 cut from every other center (its probes all fail), so its server sees every
    center down and, taking itself for the one cut off, answers SERVFAIL; the others keep seeing
    eu-central-1 up and answer as published. Then everything restarts at once (world and every server):
    answers come back from the zone file alone, lawful, with nothing measured yet (unknown is up); the
    client's view over time is judged sample by sample."""
    import time

    from globalaccel.emulated.failover import restart_everything

    dev = load_stack("dev", STACKS)
    networks = {k: NETWORKS[k] for k in ("DE", "BY", "US", "IN", "SA")}
    # World and per-center servers listen where probers connect from with ephemeral ports: below that range.
    ports = (free_service_port(), free_port(), free_service_port())
    zone = tmp_path / "zone.json"
    with data_plane(dev, STACKS, zone, networks, ports) as plane:
        chosen = plane.expected(set())
        plane.fault({"kind": "cut_vantage", "target": "eu-central-1"})
        time.sleep(4)  # several of the cut server's probe rounds
        for server in dev.center_ids:
            for code in networks:
                centers, wrong = plane.judge(server, code)
                # The cut server sees every center down: it is the one cut off, so it answers SERVFAIL (resolvers ask
                # another of the NS set) rather than its stale view; the others still see eu-central-1 up.
                expected = set() if server == "eu-central-1" else {chosen[code]}
                assert wrong == [] and centers == expected, (server, code, centers)
        plane.fault({"kind": "clear", "target": "eu-central-1"})
        # Then everything at once: the world (every center and edge) and every server killed together; the
        # servers start again 2 s later into a world still down, the world 18 s after them (a restarted server
        # takes seconds to start on a loaded machine, two test workers, and its first answers must still fall
        # well before the world is back). A client asks every server for every country throughout.
        down_s, world_lag_s = 2.0, 18.0
        timeline = restart_everything(plane, STACKS, zone, down_s=down_s, watch_s=15.0, world_lag_s=world_lag_s)
    world_back = down_s + world_lag_s
    # Every answer seen, at every moment, led to an allowed path.
    assert timeline.violations() == []
    # Restarted with nothing measured, a server answers the zone file as published (unknown is up); then,
    # seeing no center at all while the world is still down, it goes silent (SERVFAIL: it takes itself for
    # cut off) rather than answer a view it cannot check. That first window lasts about two probes (a
    # second or two), so it is judged wherever the client's rounds caught it, and must be caught somewhere.
    caught = 0
    for server in dev.center_ids:
        for code in networks:
            seen = [(t, centers) for t, s, c, centers, _ in timeline.samples if s == server and c == code]
            first = next((t for t, centers in seen if centers and 2.0 < t < world_back - 3), None)
            if first is not None:
                caught += 1
                assert any(not centers for t, centers in seen if first < t < world_back), (server, code)
    assert caught, "no server was seen answering before the world came back: unknown must be up"
    # ... and once the world is back, every server answers every country as chosen, to the end.
    back = timeline.recovered_at(chosen)
    assert back is not None and back > world_back, back
    assert any(t > back + 5 for t, *_ in timeline.samples), "the run did not watch long enough after recovery"


def test_a_zone_file_with_an_unlawful_chain_or_garbage_is_refused_and_the_server_keeps_watching(tmp_path: Path) -> None:
    """A zone file that sends Belarus (eu-central-1 only) to us-east-1 is loaded without Belarus (no answer,
    never the unlawful path); a malformed one is skipped with the last good zone kept; a good one after
    both is picked up."""
    import json
    import time

    dev = load_stack("dev", STACKS)
    # World and per-center servers listen where probers connect from with ephemeral ports: below that range.
    ports = (free_service_port(), free_port(), free_service_port())
    zone = tmp_path / "zone.json"
    networks = {k: NETWORKS[k] for k in ("DE", "BY")}
    with data_plane(dev, STACKS, zone, networks, ports) as plane:
        good = json.loads(zone.read_text())
        us = next(e for e in dev.edges if e.country == "US").address_for("us-east-1")
        # (BY's shares go with its answer: shares that do not match their answer refuse the whole file.)
        tampered = {**good, "serial": 77, "answers": {**good["answers"], "BY": [us]},
                    "paths": {**good["paths"], "BY": [["us-east-1", [us]]]},
                    "shares": {k: v for k, v in good.get("shares", {}).items() if k != "BY"}}
        zone.write_text(json.dumps(tampered))
        time.sleep(1.5)
        assert plane.judge("me-central-1", "BY") == (set(), [])  # refused: no answer
        assert plane.centers_answered("me-central-1", "DE") == {"eu-central-1"}  # the rest of that zone is served
        zone.write_text(json.dumps({**good, "serial": 78, "paths": []}))  # malformed: paths must be a mapping
        time.sleep(1.0)
        zone.write_text(json.dumps({**good, "serial": 79}))
        time.sleep(1.5)
        assert plane.centers_answered("me-central-1", "BY") == {"eu-central-1"}  # the good zone came through


def test_a_centers_https_healthz_is_seen_up_over_tls_and_down_without(tmp_path: Path) -> None:
    """The health endpoint Route 53's checks ask is HTTPS on the probe port; a per-center server probing it
    in plain HTTP would see every center down (and answer SERVFAIL as if cut off). Real TLS on loopback
    (a self-signed certificate from openssl, not verified, as Route 53 does not)."""
    import asyncio
    import ssl
    import subprocess

    from globalaccel.dns.center_watch import CenterWatch

    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=health",
                    "-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "cert.pem")], check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")

    async def healthz(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()

    async def run() -> dict[bool, frozenset[str]]:
        server = await asyncio.start_server(healthz, "127.0.0.1", 0, ssl=context)
        port = server.sockets[0].getsockname()[1]
        seen = {}
        for tls in (True, False):
            watch = CenterWatch({"eu-central-1": ("127.0.0.1", port)}, lambda down: None, down_after=1, up_after=1, tls=tls)
            seen[tls] = await watch.check_once()
        server.close()
        await server.wait_closed()
        return seen

    assert asyncio.run(run()) == {True: frozenset(), False: frozenset({"eu-central-1"})}
