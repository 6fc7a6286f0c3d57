"""The one publish path: Answers (explicit states, no absence), the settings tree (one set of defaults,
the command line generated from it), the layering of the package, and the small things a newcomer
trips on (`plan | head`, packaging warnings, duplicate hosted zones)."""

from __future__ import annotations

import ast
import dataclasses
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from globalaccel.answers import Answers, FailClosed, InconsistentTable, NoPath, Served, UnknownSelector
from globalaccel.cli import build_parser
from globalaccel.control.http import LoopHttpServer
from globalaccel.dns.backend import BackendError
from globalaccel.dns.factory import find_zone
from globalaccel.errors import ConfigError
from globalaccel.routing import Health, RoutingTable
from globalaccel.routing.summary import route_table
from globalaccel.settings import BackendSettings, HealthSettings, LeaseSettings, LoopSettings, up_command, with_overrides
from globalaccel.topology import load_stack
from tests.conftest import ROOT, STACKS
from tests.services import moto_server, route53_client

PROD = load_stack("prod", STACKS)
TABLE = route_table(PROD)
CLI = str(ROOT / ".venv" / "bin" / "globalaccel")


# ---- Answers ----------------------------------------------------------------------------------------


def test_every_country_has_an_explicit_decision() -> None:
    answers = Answers.from_table(TABLE, PROD)
    decisions = dict(answers.countries())
    assert set(decisions) == set(PROD.countries)
    assert isinstance(decisions["DE"], Served) and decisions["DE"].center in ("eu-central-1", "us-east-1")
    assert isinstance(decisions["RU"], FailClosed) and decisions["RU"].rule  # strict with no allowed center: the rule is named
    served = decisions["DE"]
    assert isinstance(served, Served)
    assert list(served.addresses) == [a.address for a in sorted(served.answers, key=lambda a: (-a.weight, a.edge_id))]


def test_no_path_is_not_fail_closed() -> None:
    """Every edge down: open countries have no path (an outage), strict ones still fail closed by rule."""
    table = route_table(PROD, Health(frozenset(), frozenset(PROD.center_ids)))
    answers = Answers.from_table(table, PROD)
    assert isinstance(answers.country("US"), NoPath)
    assert isinstance(answers.country("RU"), FailClosed)


def test_unknown_selectors_and_incomplete_tables_raise() -> None:
    answers = Answers.from_table(TABLE, PROD)
    with pytest.raises(UnknownSelector):
        answers.country("XX")
    with pytest.raises(UnknownSelector):
        answers.cell("nowhere")
    berlin = PROD.principal_cell["DE"]
    missing_de = dataclasses.replace(TABLE, routes={k: v for k, v in TABLE.routes.items() if k != berlin})
    assert isinstance(missing_de, RoutingTable)
    with pytest.raises(InconsistentTable, match=berlin):
        Answers.from_table(missing_de, PROD)


# ---- settings ---------------------------------------------------------------------------------------

def _parse_up(argv: list[str]) -> LoopSettings:
    args = build_parser().parse_args(argv)
    assert args.command == "up"
    return with_overrides(LoopSettings(), args)


@settings(max_examples=60, deadline=None)
@given(
    interval=st.floats(0.05, 3600, allow_nan=False),
    dns_port=st.integers(0, 65535),
    vantage=st.sampled_from([None, "us-east-1", "eu-central-1"]),
    dry_run=st.booleans(),
    kind=st.sampled_from(["embedded", "route53", "powerdns"]),
    zone_id=st.one_of(st.none(), st.from_regex(r"Z[A-Z0-9]{5,12}", fullmatch=True)),
    lease=st.sampled_from(["file", "kubernetes"]),
    down_after=st.integers(1, 100),
    peers=st.lists(st.sampled_from(["us-east-1=http://a:9465", "ap-southeast-1=http://b:9465"]), max_size=2, unique=True),
)
def test_generated_command_line_parses_back_to_the_same_settings(interval: float, dns_port: int, vantage: str | None, dry_run: bool,
                                                                 kind: str, zone_id: str | None, lease: str, down_after: int,
                                                                 peers: list[str]) -> None:
    """What the Pulumi modules run is exactly what the CLI parses: up_command and the parser are two
    views of one settings tree."""
    original = LoopSettings(interval=interval, dns_port=dns_port, vantage=vantage, dry_run=dry_run, peers=tuple(peers),
                            backend=BackendSettings(kind=kind, zone_id=zone_id), lease=LeaseSettings(kind=lease),
                            health=HealthSettings(down_after=down_after))
    assert _parse_up(up_command("prod", original)) == original


def test_defaults_are_declared_once() -> None:
    """No flag given: the parsed settings are the field defaults, not argparse's own."""
    assert _parse_up(["up", "--stack", "prod"]) == LoopSettings()
    assert up_command("prod", LoopSettings()) == ["up", "--stack", "prod"]


def test_stack_loop_block_is_validated_with_file_line_and_field(tmp_path: Path) -> None:
    import shutil

    stacks = tmp_path / "stacks"
    shutil.copytree(STACKS, stacks)
    stack = stacks / "Pulumi.dev.yaml"
    stack.write_text(stack.read_text() + "  global-accel:loop:\n    interval: fast\n    health:\n      downAfter: 0\n"
                     "    backend:\n      kind: bind\n    colour: blue\n")
    with pytest.raises(ConfigError) as caught:
        load_stack("dev", stacks)
    message = str(caught.value)
    lines = stack.read_text().splitlines()
    for fld, needle in (("loop.interval", "interval: fast"), ("loop.health.downAfter", "downAfter: 0"),
                        ("loop.backend.kind", "kind: bind"), ("loop.colour", "colour: blue")):
        line = next(i for i, text in enumerate(lines, start=1) if needle in text)
        assert f"Pulumi.dev.yaml:{line}: config.global-accel:{fld}:" in message, (fld, message)


def test_stack_loop_block_sets_what_the_command_line_can_override(tmp_path: Path) -> None:
    import shutil

    stacks = tmp_path / "stacks"
    shutil.copytree(STACKS, stacks)
    stack = stacks / "Pulumi.dev.yaml"
    stack.write_text(stack.read_text() + "  global-accel:loop:\n    interval: 2.5\n    health:\n      downAfter: 4\n")
    topology = load_stack("dev", stacks)
    assert topology.loop.interval == 2.5 and topology.loop.health.down_after == 4
    args = build_parser().parse_args(["up", "--stack", "dev", "--interval", "1"])
    merged = with_overrides(topology.loop, args)
    assert merged.interval == 1.0 and merged.health.down_after == 4


# ---- layering ---------------------------------------------------------------------------------------

LOWER = ("globalaccel.answers", "globalaccel.routing", "globalaccel.residency", "globalaccel.topology", "globalaccel.dns",
         "globalaccel.latency", "globalaccel.verify", "globalaccel.settings", "globalaccel.findings")
UPPER = ("globalaccel.cli", "globalaccel.app", "globalaccel.control", "globalaccel.audit", "globalaccel.emulated")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_data_flows_one_way() -> None:
    """Nothing imports the CLI; the model and the DNS backends import no consumer above them."""
    package = ROOT / "globalaccel"
    for path in package.rglob("*.py"):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        imported = _imports(path)
        if module != "globalaccel.cli":
            assert not [m for m in imported if m.startswith("globalaccel.cli")], module
        if module.startswith(LOWER):
            assert not [m for m in imported if m.startswith(UPPER)], (module, imported)


def test_no_module_reads_the_table_by_country() -> None:
    for path in (ROOT / "globalaccel").rglob("*.py"):
        assert "country_route" not in path.read_text(), path


# ---- small things -----------------------------------------------------------------------------------


def test_plan_into_head_ends_quietly() -> None:
    result = subprocess.run(f"{CLI} plan --stack prod | head -n 2", shell=True, cwd=ROOT, capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.stdout.count("\n") == 2
    assert result.stderr == "", result.stderr


def test_building_the_package_prints_no_deprecation_warning(tmp_path: Path) -> None:
    """The license is an SPDX string (setuptools >= 77), not the deprecated TOML table."""
    # Build from a copy of the tracked files: setuptools writes build/ and *.egg-info beside the sources.
    source = tmp_path / "src"
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(tmp_path / "wheel"), str(source)],
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "deprecated" not in (result.stdout + result.stderr).lower(), result.stderr[-2000:]


def test_several_zones_with_one_name_are_refused_by_name() -> None:
    """Route 53 allows duplicate zone names; which one the world resolves is the delegation's choice,
    so picking one is a guess. Real moto server over HTTP."""
    with moto_server() as url:
        client = route53_client(url)
        ids = [client.create_hosted_zone(Name=PROD.zone, CallerReference=str(uuid.uuid4()))["HostedZone"]["Id"].split("/")[-1]
               for _ in range(2)]
        with pytest.raises(BackendError) as caught:
            find_zone(client, PROD.zone, create=False)
        assert all(i in str(caught.value) for i in ids)
        assert find_zone(client, "other." + PROD.zone, create=False) is None


def test_healthz_turns_503_when_the_loop_stops_cycling() -> None:
    last: list[float | None] = [None]
    server = LoopHttpServer("127.0.0.1", 0, CollectorRegistry(), lambda: {"cycles": 0}, lambda: last[0], stale_after=5.0)
    try:
        def get(path: str) -> int:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}", timeout=5) as response:
                    return int(response.status)
            except urllib.error.HTTPError as exc:
                return int(exc.code)

        assert get("/healthz") == 200  # starting: alive
        last[0] = time.time()
        assert get("/healthz") == 200 and get("/status") == 200 and get("/metrics") == 200
        last[0] = time.time() - 60
        assert get("/healthz") == 503  # stuck: a liveness probe restarts it
        assert get("/nope") == 404
    finally:
        server.shutdown()


@pytest.mark.parametrize(("argv", "needle"), [
    (["up", "--stack", "dev", "--local", "--dns-port", "99999", "--once"], "--dns-port: must be between 0 and 65535"),
    (["up", "--stack", "dev", "--local", "--interval", "0", "--once"], "--interval: must be between"),
    (["up", "--stack", "dev", "--peer", "nonsense", "--vantage", "us-east-1", "--once"], "--peer: takes CENTER=URL"),
    (["up", "--stack", "dev", "--once"], "without --local, name this prober's center with --vantage"),
    (["dns", "sync", "--stack", "dev", "--requests-per-s", "0", "--dry-run"], "--requests-per-s: must be between"),
    (["dns", "sync", "--stack", "dev", "--backend", "powerdns", "--dry-run"], "needs --endpoint-url"),
    (["dns", "sync", "--stack", "dev", "--endpoint-url", "http://127.0.0.1:9", "--dry-run"], "AWS"),
])
def test_operator_errors_are_one_line_and_exit_2(argv: list[str], needle: str) -> None:
    env = {k: v for k, v in __import__("os").environ.items() if k != "PDNS_API_KEY"}
    env.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"})
    result = subprocess.run([CLI, *argv], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False, env=env)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert needle in result.stderr and "Traceback" not in result.stderr, result.stderr
