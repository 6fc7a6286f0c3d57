"""One writer at a time across centers: the etcd lease against a real three-member etcd cluster on
loopback (Debian's etcd-server), one member per "center". Nothing is mocked: the members run Raft, the
lease expires on etcd's clock, and a partition is a member frozen with SIGSTOP (its clients time out
while the other two keep a quorum)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from globalaccel.control.etcd_lease import EtcdLease
from tests.services import free_port, wait_for_port

ETCD = shutil.which("etcd") or "etcd"  # installed by scripts/system-deps; missing, the fixture fails loudly


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[list[tuple[str, subprocess.Popen[bytes]]]]:
    names = ["m1", "m2", "m3"]
    client_ports = {n: free_port() for n in names}
    peer_ports = {n: free_port() for n in names}
    initial = ",".join(f"{n}=http://127.0.0.1:{peer_ports[n]}" for n in names)
    members = []
    for n in names:
        proc = subprocess.Popen(
            [ETCD, "--name", n, "--data-dir", str(tmp_path / n),
             "--listen-client-urls", f"http://127.0.0.1:{client_ports[n]}",
             "--advertise-client-urls", f"http://127.0.0.1:{client_ports[n]}",
             "--listen-peer-urls", f"http://127.0.0.1:{peer_ports[n]}",
             "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_ports[n]}",
             "--initial-cluster", initial, "--initial-cluster-state", "new", "--initial-cluster-token", "globalaccel-test"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        members.append((f"http://127.0.0.1:{client_ports[n]}", proc))
    try:
        for url, _ in members:
            wait_for_port(int(url.rsplit(":", 1)[1]))
        probe = EtcdLease([url for url, _ in members], "/globalaccel/test/ready", "probe", ttl_s=5)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # a leader is elected: writes succeed
            if probe.acquire():
                probe.release()
                break
            time.sleep(0.2)
        else:
            pytest.fail("the etcd cluster elected no leader within 30 s")
        yield members
    finally:
        for _, proc in members:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)
            proc.terminate()
            proc.wait(timeout=10)


KEY = "/globalaccel/prod/leader"


def test_one_holder_and_a_partitioned_holder_stops_before_anyone_else_starts(cluster: list[tuple[str, subprocess.Popen[bytes]]]) -> None:
    (m1, m1_proc), (m2, _), (m3, _) = cluster
    ttl = 3
    a = EtcdLease([m1], KEY, "controller-us-east-1", ttl_s=ttl, timeout_s=0.5)
    b = EtcdLease([m2, m3], KEY, "controller-eu-central-1", ttl_s=ttl, timeout_s=0.5)
    assert a.acquire()
    assert not b.acquire()
    assert a.acquire()  # renewing is holding
    assert b.holder() == "controller-us-east-1"

    os.kill(m1_proc.pid, signal.SIGSTOP)  # controller A and its member cut off; m2 + m3 keep a quorum
    partitioned_at = time.monotonic()
    a_stopped_at = b_started_at = None
    timeline = []
    while time.monotonic() - partitioned_at < ttl + 8:
        held_a, held_b = a.acquire(), b.acquire()
        now = time.monotonic() - partitioned_at
        timeline.append((round(now, 2), held_a, held_b))
        assert not (held_a and held_b), timeline  # never two writers
        if not held_a and a_stopped_at is None:
            a_stopped_at = now
        if held_b:
            b_started_at = now
            break
        time.sleep(0.3)
    assert timeline and timeline[0][1] is False, timeline  # stopped at its first cycle after the cut
    assert b_started_at is not None, timeline
    assert b_started_at >= ttl - 0.5, timeline  # only once A's lease ran out on etcd's clock
    assert not a.valid()

    os.kill(m1_proc.pid, signal.SIGCONT)  # the partition heals: A finds the key is B's and stays out
    time.sleep(1.0)
    assert not a.acquire()
    assert b.acquire() and b.holder() == "controller-eu-central-1"

    b.release()  # a clean stop hands over at once, without waiting for the TTL
    a2 = EtcdLease([m1, m2, m3], KEY, "controller-us-east-1", ttl_s=ttl, timeout_s=0.5)
    assert a2.acquire()


def test_losing_one_member_keeps_the_lease(cluster: list[tuple[str, subprocess.Popen[bytes]]]) -> None:
    """A center (its etcd member) lost: the holder, reaching the other members, keeps writing."""
    urls = [url for url, _ in cluster]
    a = EtcdLease(urls, KEY, "controller-us-east-1", ttl_s=3, timeout_s=0.5)
    assert a.acquire()
    _, m1_proc = cluster[0]
    m1_proc.terminate()
    m1_proc.wait(timeout=10)
    for _ in range(8):
        time.sleep(0.5)
        assert a.acquire()
    assert a.holder() == "controller-us-east-1"


def test_a_publish_that_outlives_its_lease_stops_before_the_next_batch(cluster: list[tuple[str, subprocess.Popen[bytes]]]) -> None:
    """The lease is asked again before every Route 53 change batch (Route53Backend.guard): a holder whose
    renewal is older than half the TTL writes nothing more, though it still "held" the key at the start.
    The zone is a real moto server reached with boto3."""
    import uuid

    from globalaccel.dns.backend import ApplyStats, BackendError
    from globalaccel.dns.budget import ApiBudget
    from globalaccel.dns.plan import Change, Changes
    from globalaccel.dns.records import Record
    from globalaccel.dns.route53 import Route53Backend
    from globalaccel.dns.route53_compile import Route53Layout
    from tests.services import moto_server, route53_client

    urls = [url for url, _ in cluster]
    a = EtcdLease(urls, KEY, "controller-us-east-1", ttl_s=2, timeout_s=0.5)
    layout = Route53Layout("z.example.", "svc.z.example.", "prod")
    records = [Record(f"r{i}.z.example.", "A", (f"192.0.2.{i % 250 + 1}",), 60) for i in range(1200)]  # 3 batches of 500 values
    with moto_server() as url:
        client = route53_client(url)
        zone = client.create_hosted_zone(Name="z.example.", CallerReference=str(uuid.uuid4()))["HostedZone"]["Id"]
        done: list[int] = []

        def slow_batch(number: int) -> None:
            done.append(number)
            time.sleep(1.2)  # a throttled batch: the renewal is now older than half the TTL

        backend = Route53Backend(client, zone, layout, budget=ApiBudget.route53(1000, 100_000, 100_000), after_batch=slow_batch)
        backend.guard = a.valid
        assert a.acquire() and a.valid()  # renewed just now: the first batch may go
        with pytest.raises(BackendError, match="no longer holds the lease"):
            backend.apply(Changes(creates=tuple(Change("CREATE", r) for r in records)), ApplyStats())
        assert done == [1]  # one batch written, then nothing
        names = {r["Name"] for page in client.get_paginator("list_resource_record_sets").paginate(HostedZoneId=zone)
                 for r in page["ResourceRecordSets"] if r["Type"] == "A"}
        assert 0 < len(names) < len(records)

