"""Settings: one tree, each default declared once (on its field), validated once.

Stack-wide blocks (`routing`, `latency`, `probe`) and the loop's block (`loop`: health, backend,
lease, ports) are read by the same validator, so every key of the stack file is checked alike.

Sources for the loop, later wins: the field defaults here; the stack file's `global-accel:loop:` block
(camelCase keys, validated with file, line and field); command-line flags. The `up` command line is *generated*
from these fields (argparse arguments by `add_arguments`, and back to flags by `to_argv`), so the CLI,
the stack file and the Pulumi modules that start the loop cannot drift apart.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from globalaccel.errors import ProblemCollector, UsageError
from globalaccel.sourcefile import Located

T = TypeVar("T")


def setting(default: Any, help: str, *, flag: str | None = None, lo: float | None = None, hi: float | None = None,
            choices: tuple[str, ...] | None = None, in_stack: bool = True, cli: bool = True) -> Any:
    """A settings field: its default, its help, and where it may be set (stack file, command line)."""
    return field(default=default, metadata={"help": help, "flag": flag, "lo": lo, "hi": hi, "choices": choices,
                                            "in_stack": in_stack, "cli": cli})


def center_pairs(items: tuple[str, ...], flag: str, form: str) -> dict[str, str]:
    """Repeated CENTER=VALUE settings as a mapping; a malformed one is named with its flag."""
    out: dict[str, str] = {}
    for item in items:
        center, sep, value = item.partition("=")
        if not sep or not center or not value:
            raise UsageError(f"{flag} takes {form}, got {item!r}")
        out[center] = value
    return out


@dataclass(frozen=True)
class HysteresisSettings:
    absolute_ms: float = setting(5.0, "a new route must beat the current one by at least this much ...", lo=0, hi=1000)
    relative: float = setting(0.10, "... and by this fraction of the current RTT (whichever is larger)", lo=0, hi=1)
    consecutive: int = setting(3, "for this many evaluations in a row", lo=1, hi=100)
    hold_down_s: float = setting(300.0, "and never within this long after the cell's last switch", lo=0, hi=86400)
    steady_samples: int = setting(16, "both routes judged on each path's median of its last this many samples (at most the "
                                  "latency window; a shift lasting under half of them moves no route)", lo=3, hi=10000)


@dataclass(frozen=True)
class RoutingSettings:
    answers: int = setting(4, "k: edges per answer", lo=1, hi=8)
    max_answers: int = setting(8, "edges a cell may take to fit its demand within edge capacity", lo=1, hi=100)
    capacity_headroom: float = setting(1.25, "an edge may take this multiple of its capacity share of demand", lo=1.0, hi=1000)
    hysteresis: HysteresisSettings = field(default_factory=HysteresisSettings)
    center_return_band: float = setting(0.03, "a cell moves onto a center with a capacity from another only while that center "
                                              "stays this fraction below its capacity (cells on it stay until it is full)",
                                        lo=0, hi=0.5)


@dataclass(frozen=True)
class CellSettings:
    """Client cells and how clients are located into them (the `global-accel:cells:` block; globalaccel.cells)."""

    places: str | None = setting(None, "populated places: 'builtin' (GeoNames places of 15,000+ people, shipped in the package) "
                                       "or a CSV path relative to the stacks folder; unset: one cell per country")
    radius_km: float = setting(150.0, "places within this distance of a cell's largest place join that cell", lo=1, hi=5000)
    split_subdivisions: bool = setting(True, "a cell never spans two first-level subdivisions")
    networks: str | None = setting(None, "city-level IP geolocation database in the MaxMind DB format (GeoIP2/GeoLite2 City, "
                                         "DB-IP City Lite, ...), path relative to the stacks folder: locates client networks "
                                         "for the self-hosted DNS servers (read when one starts; Route 53 does not use it)")


@dataclass(frozen=True)
class LatencySettings:
    fibre_km_per_ms: float = setting(200.0, "light in fibre, one way", lo=1, hi=300)
    route_inflation: float = setting(2.1, "public-Internet paths (client -> edge) vs great circle", lo=1, hi=10)
    backbone_inflation: float = setting(1.4, "private backbone (edge -> center, center -> center): the edge's reason to exist",
                                        lo=1, hi=10)
    overhead_ms: float = setting(1.0, "per-path processing/serialisation RTT", lo=0, hi=1000)
    ewma_alpha: float = setting(0.3, "weight of the newest sample in the moving average", lo=0.01, hi=1)
    window: int = setting(32, "samples kept per path for quantiles", lo=4, hi=10000)
    stale_after_s: float = setting(60.0, "measurements older than this are unknown, never healthy", lo=1, hi=86400)


@dataclass(frozen=True)
class ProbeSettings:
    """How the probe loop reaches real edges and centers (the emulated world ignores this)."""

    port: int = setting(443, "port probed on every edge and center", lo=1, hi=65535)
    kind: str = setting("tcp", "tcp: handshake time; http/https: time to a 2xx status line from GET /healthz",
                        choices=("tcp", "http", "https"))


@dataclass(frozen=True)
class HealthSettings:
    down_after: int = setting(2, "consecutive losses that make a path down", lo=1, hi=100)
    up_after: int = setting(3, "consecutive successes that make a path up", lo=1, hi=100)
    min_down_s: float = setting(20.0, "a target stays down at least this long", lo=0, hi=3600)
    stale_after_s: float = setting(60.0, "results older than this are unknown, never healthy", lo=1, hi=86400)
    flap_penalty: float = setting(1000.0, "damping penalty per down transition", lo=0, hi=1e6)
    suppress: float = setting(2500.0, "penalty above which a target is held down", lo=0, hi=1e6)
    reuse: float = setting(800.0, "penalty below which a held target may come back", lo=0, hi=1e6)
    half_life_s: float = setting(120.0, "half-life of the damping penalty", lo=1, hi=86400)


@dataclass(frozen=True)
class BackendSettings:
    kind: str = setting("embedded", "where answers are published", flag="--backend", choices=("embedded", "route53", "powerdns"))
    endpoint_url: str | None = setting(None, "DNS API endpoint (Route 53 / moto, or the PowerDNS API)", flag="--endpoint-url")
    zone_id: str | None = setting(None, "hosted zone id (skips looking the zone up by name)", flag="--zone-id")
    create_zone: bool = setting(False, "create the zone when it does not exist", flag="--create-zone")
    api_key_env: str = setting("PDNS_API_KEY", "environment variable holding the PowerDNS API key", flag="--api-key-env")
    requests_per_s: float = setting(10.0, "Route 53 API requests per second (account-wide quota)", lo=0.1, hi=100,
                                    flag="--requests-per-s")
    tokens_per_s: float = setting(100.0, "Route 53 change tokens refilled per second (AWS: 100/s, burst 1,500; UPSERT costs 2)",
                                  lo=1, hi=1e6, flag="--tokens-per-s")
    wait_insync: bool = setting(False, "wait until Route 53 reports each change INSYNC", flag="--wait-insync")
    health_checks: tuple[str, ...] = setting((), "a center's Route 53 health check, CENTER=ID (repeat; pulumi up passes them)",
                                             flag="--health-check")
    cidr_collection: str | None = setting(None, "id of the stack's Route 53 CIDR collection (skips looking it up by name; pulumi up "
                                                "passes it)", flag="--cidr-collection")
    center_health: tuple[str, ...] = setting((), "where PowerDNS checks a center's /healthz, CENTER=SCHEME://ADDRESS:PORT "
                                             "(repeat; default: https on the center's address and the probe port, as Route 53's "
                                             "checks)", flag="--center-health")

    @property
    def health_check_ids(self) -> dict[str, str]:
        return center_pairs(self.health_checks, "--health-check", "CENTER=ID")

    @property
    def center_health_endpoints(self) -> dict[str, str]:
        """center -> base URL of its health endpoint (checked: scheme, an IP address, a port)."""
        return center_pairs(self.center_health, "--center-health", "CENTER=SCHEME://ADDRESS:PORT")


@dataclass(frozen=True)
class LeaseSettings:
    kind: str = setting("file", "leader election (kubernetes: in-cluster Lease; etcd: a key under an etcd lease, across centers)",
                        flag="--lease", choices=("file", "kubernetes", "etcd"))
    etcd_endpoints: str | None = setting(None, "etcd client URLs, comma-separated (one member per center)", flag="--etcd-endpoints")
    ttl_s: int = setting(15, "lease time to live: a lost controller's successor waits this long", lo=2, hi=600, flag="--lease-ttl")
    namespace: str = setting("globalaccel", "namespace of the Lease", flag="--lease-namespace")
    name: str = setting("globalaccel-loop", "name of the Lease", flag="--lease-name")
    identity: str | None = setting(None, "lease holder identity (default: host name)", flag="--identity", in_stack=False)


@dataclass(frozen=True)
class LoopSettings:
    local: bool = setting(False, "emulate every edge and center on loopback and serve DNS locally", in_stack=False)
    duration: float | None = setting(None, "stop after this many seconds (default: until Ctrl-C)", lo=0, hi=1e9, in_stack=False)
    interval: float = setting(5.0, "seconds per probe cycle (every path once)", lo=0.05, hi=3600)
    probe_timeout: float = setting(2.0, "seconds before a probe counts as lost (at most the interval)", lo=0.01, hi=60)
    min_fresh_share: float = setting(0.5, "publish only while at least this share of probe paths has fresh results "
                                          "(a cold start or a stall holds the last answers)", lo=0, hi=1)
    max_withdraw_share: float = setting(0.25, "a table taking service from more than this share of demand is published only "
                                             "where a quorum of vantages saw the lost centers or edges down", lo=0, hi=1)
    once: bool = setting(False, "one probe cycle and one routing cycle, then exit", in_stack=False)
    dry_run: bool = setting(False, "compute and log, but do not publish to DNS", in_stack=False)
    dns_host: str = setting("127.0.0.1", "address the embedded DNS server listens on")
    dns_port: int = setting(5353, "port of the embedded DNS server", lo=0, hi=65535)
    metrics_host: str = setting("127.0.0.1", "address for /metrics, /status and /healthz (0.0.0.0 in a pod)")
    metrics_port: int = setting(9464, "port for /metrics, /status and /healthz", lo=0, hi=65535)
    state_dir: Path | None = setting(None, "state folder (default: state/<stack>)", in_stack=False)
    scenario: Path | None = setting(None, "YAML file of timed faults for the emulated world", in_stack=False)
    world_port: int = setting(18080, "port of the emulated world's listeners", lo=1, hi=65535)
    control_port: int = setting(18079, "port of the emulated world's fault API", lo=1, hi=65535)
    vantage: str | None = setting(None, "the center this prober runs in (without --local)", in_stack=False)
    source_address: str | None = setting(None, "local address to probe from (default: any)", in_stack=False)
    peers: tuple[str, ...] = setting((), "another center's prober results endpoint, CENTER=URL (repeat)", flag="--peer")
    measurements_host: str = setting("127.0.0.1", "address to serve this prober's results on")
    measurements_port: int | None = setting(None, "port to serve this prober's results on (for peers)", lo=1, hi=65535)
    peer_key_env: str = setting("GLOBALACCEL_PEER_KEY", "environment variable holding the key the centers share to sign probers' "
                                                        "results and requests (HMAC-SHA256)", flag="--peer-key-env")
    backend: BackendSettings = field(default_factory=BackendSettings)
    lease: LeaseSettings = field(default_factory=LeaseSettings)
    health: HealthSettings = field(default_factory=HealthSettings)

    @property
    def peer_urls(self) -> dict[str, str]:
        return center_pairs(self.peers, "--peer", "CENTER=URL")


@dataclass(frozen=True)
class Route53Settings:
    """How the Route 53 zone locates clients (the `global-accel:route53:` block; globalaccel.dns.route53_cells).

    AWS documents no quota for CIDR collections (checked 2026-11-26: the Route 53 quotas page lists none; the
    API takes at most 1,000 blocks per request, CloudFormation at most 1,000 per location). The defaults are
    the conservative reading; an operator raises them after checking Service Quotas in us-east-1."""

    cidr_cells: int = setting(99, "cells answered by client network (IP-based routing; one record each beside the default "
                                   "under the service name, which holds at most 100 of one name and type); 0: geolocation only",
                              lo=0, hi=99)
    cidr_blocks: int = setting(1000, "CIDR blocks the stack's collection may hold", lo=1, hi=1_000_000)
    max_records: int = setting(10_000, "records the hosted zone may hold (AWS's default quota; more is charged and on request)",
                               lo=100, hi=10_000_000)
    collection: str | None = setting(None, "name of the stack's CIDR collection (default globalaccel-<stack>)")


@dataclass(frozen=True)
class IacSettings:
    """What `pulumi up` needs beyond the world itself (the `global-accel:iac:` block)."""

    example: bool = setting(False, "an example stack: placeholder addresses and reserved names are allowed, and it must never be deployed")
    protect: bool = setting(True, "protect the hosted zone and the edge fleet: Pulumi refuses to delete or replace them")
    delete_records_on_destroy: bool = setting(False, "deleting the fleet resource deletes the live records it owns (default: leave them)")
    image: str = setting("ghcr.io/globalaccel/globalaccel:0.1.0", "container image of the loop and probers; pin by digest (...@sha256:...)")
    control_center: str | None = setting(None, "center whose cluster runs the control loop (default: the first center)")
    parent_zone_id: str | None = setting(None, "hosted zone to delegate the routing zone from")
    oidc_provider_arn: str | None = setting(None, "the EKS cluster's IAM OIDC provider: the loop's role trusts only its service account")
    aws_account_id: str | None = setting(None, "the AWS account every provider is allowed to act in (allowedAccountIds)")
    state_storage: str = setting("1Gi", "size of the persistent volume holding the loop's state and decision log")


# In a cluster every prober serves its results on this port (the Pulumi modules open it and name it in peers).
CLUSTER_RESULTS_PORT = 9465


def up_command(stack: str, settings: LoopSettings, stacks_dir: str | None = None, full: bool = False) -> list[str]:
    """The `globalaccel up` arguments that run the loop with `settings` (container args in the Pulumi modules)."""
    return ["up", "--stack", stack, *(["--stacks-dir", stacks_dir] if stacks_dir else []), *to_argv(settings, full)]


# ---- the machinery ---------------------------------------------------------------------------------------

def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.capitalize() for p in rest)


def _scalar_type(cls: type, f: dataclasses.Field[Any]) -> Any:
    hint = typing.get_type_hints(cls)[f.name]
    if isinstance(hint, types.UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    return hint


def _flag(f: dataclasses.Field[Any], prefix: str) -> str:
    return f.metadata.get("flag") or "--" + (prefix + f.name).replace("_", "-")


def _walk(cls: type, prefix: str = "", path: str = "") -> typing.Iterator[tuple[str, str, dataclasses.Field[Any], Any]]:
    """(dotted path, flag, field, python type) of every leaf setting."""
    for f in dataclasses.fields(cls):
        kind = _scalar_type(cls, f)
        if dataclasses.is_dataclass(kind):
            yield from _walk(kind, "" if f.name in ("backend", "lease") else f"{f.name}-", f"{path}{f.name}.")  # type: ignore[arg-type]
        else:
            yield f"{path}{f.name}", _flag(f, prefix), f, kind


def add_arguments(parser: argparse.ArgumentParser, cls: type = LoopSettings) -> None:
    """One argparse argument per setting; defaults stay on the fields (argparse only records what was given)."""
    for path, flag, f, kind in _walk(cls):
        if not f.metadata.get("cli", True):
            continue
        common: dict[str, Any] = {"dest": path, "default": argparse.SUPPRESS, "help": f"{f.metadata['help']} (default: {f.default})"}
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **common)  # --x / --no-x: either wins over the stack
        elif f.name in LIST_FIELDS:
            parser.add_argument(flag, action="append", metavar=LIST_FIELDS[f.name][0], **common)
        else:
            parser.add_argument(flag, type=kind if kind in (int, float, Path) else str, choices=f.metadata.get("choices"), **common)


def _replace_path(obj: T, dotted: str, value: Any) -> T:
    head, _, rest = dotted.partition(".")
    if rest:
        return dataclasses.replace(obj, **{head: _replace_path(getattr(obj, head), rest, value)})  # type: ignore[type-var]
    return dataclasses.replace(obj, **{head: value})  # type: ignore[type-var]


def with_overrides(settings: T, args: argparse.Namespace) -> T:
    """`settings` with every setting given on the command line replacing its value, each checked by the
    same rules as the stack file (ranges, choices, CENTER=URL); problems name the flag."""
    problems = ProblemCollector()
    for path, flag, f, kind in _walk(type(settings)):
        if path not in vars(args):
            continue
        value = getattr(args, path)
        if f.name in LIST_FIELDS:
            value = tuple(value)
            for item in value:
                LIST_FIELDS[f.name][1](item, Path("command line"), None, flag, problems)
        elif value is not None and kind is not Path:
            value = _check_value(value, kind, f, Path("command line"), None, flag, problems)
        settings = _replace_path(settings, path, value)
    if problems.problems:
        raise UsageError("; ".join(f"{p.field}: {p.message}" for p in problems.problems))
    return settings


def to_argv(settings: Any, full: bool = False) -> list[str]:
    """The flags that reproduce `settings`: by default those that differ from the field defaults; with
    `full`, every setting that has a value, so the command line alone decides (the Pulumi modules'
    containers, whose stack file could otherwise supply a different value for a flag left out)."""
    argv: list[str] = []
    for path, flag, f, _ in _walk(type(settings)):
        value: Any = settings
        for part in path.split("."):
            value = getattr(value, part)
        default = f.default if f.default is not dataclasses.MISSING else None
        if not f.metadata.get("cli", True) or value is None or (value == default and not full):
            continue
        if isinstance(value, bool):
            argv.append(flag if value else "--no-" + flag.removeprefix("--"))
        elif f.name in LIST_FIELDS:
            argv += [f"{flag}={item}" for item in value]
        else:
            argv += [flag, str(value)]
    return argv


def _check_peer(item: str, file: Path, line: int | None, key: str, problems: ProblemCollector) -> None:
    center, sep, url = item.partition("=")
    if not sep or not center or not url.startswith(("http://", "https://")):
        problems.add(file, line, key, f"takes CENTER=URL (an http:// or https:// base URL); got {item!r}")


def _check_health_check(item: str, file: Path, line: int | None, key: str, problems: ProblemCollector) -> None:
    center, sep, check = item.partition("=")
    if not sep or not center or not check.strip():
        problems.add(file, line, key, f"takes CENTER=ID (a Route 53 health check id); got {item!r}")


def _check_center_health(item: str, file: Path, line: int | None, key: str, problems: ProblemCollector) -> None:
    import ipaddress
    import urllib.parse

    center, sep, url = item.partition("=")
    try:
        parts = urllib.parse.urlsplit(url)
        ip = ipaddress.ip_address(parts.hostname or "")
        plain = not (isinstance(ip, ipaddress.IPv6Address) and (ip.ipv4_mapped is not None or ip.scope_id is not None))
        ok = (bool(sep and center) and parts.scheme in ("http", "https") and parts.port is not None and parts.port > 0
              and not parts.path.strip("/") and not parts.query and not parts.fragment and parts.username is None and plain)
    except ValueError:
        ok = False
    if not ok:
        problems.add(file, line, key, f"takes CENTER=SCHEME://ADDRESS:PORT (http or https, an IP address, a port: where the "
                                      f"center's /healthz answers); got {item!r}")


# Repeatable CENTER=VALUE settings: their metavar and their check.
LIST_FIELDS: dict[str, tuple[str, typing.Callable[[str, Path, int | None, str, ProblemCollector], None]]] = {
    "peers": ("CENTER=URL", _check_peer),
    "health_checks": ("CENTER=ID", _check_health_check),
    "center_health": ("CENTER=SCHEME://ADDRESS:PORT", _check_center_health),
}


def _check_value(value: Any, kind: Any, f: dataclasses.Field[Any], file: Path, line: int | None, key: str,
                 problems: ProblemCollector) -> Any:
    meta = f.metadata
    if kind in (int, float):
        if isinstance(value, bool) or not isinstance(value, int | float) or (kind is int and not isinstance(value, int)):
            problems.add(file, line, key, f"must be {'an integer' if kind is int else 'a number'}; got {value!r}")
            return None
        lo, hi = meta.get("lo"), meta.get("hi")
        if lo is not None and hi is not None and not lo <= value <= hi:
            problems.add(file, line, key, f"must be between {lo:g} and {hi:g}; got {value!r}")
            return None
        return kind(value)
    if kind is bool:
        if not isinstance(value, bool):
            problems.add(file, line, key, f"must be true or false; got {value!r}")
            return None
        return value
    if f.name in LIST_FIELDS:
        metavar, check = LIST_FIELDS[f.name]
        if not isinstance(value, list) or not all(isinstance(v.value, str) for v in value):
            problems.add(file, line, key, f"must be a list of {metavar}")
            return None
        for i, v in enumerate(value):
            check(v.value, file, v.line, f"{key}[{i}]", problems)
        return tuple(v.value for v in value)
    if not isinstance(value, str) or not value.strip():
        problems.add(file, line, key, f"must be non-empty text; got {value!r}")
        return None
    choices = meta.get("choices")
    if choices and value not in choices:
        problems.add(file, line, key, f"must be one of {', '.join(choices)}; got {value!r}")
        return None
    return Path(value) if kind is Path else value


def from_stack(cls: type[T], node: Located | None, file: Path, key: str, problems: ProblemCollector) -> T:
    """Settings of `cls` from a stack-file block (camelCase keys); unknown keys and bad values are problems."""
    if node is None:
        return cls()
    if not isinstance(node.value, dict):
        problems.add(file, node.line, key, "must be a mapping")
        return cls()
    values: dict[str, Any] = {}
    known: set[str] = set()
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        kind = _scalar_type(cls, f)
        yaml_key = _camel(f.name)
        if not dataclasses.is_dataclass(kind) and not f.metadata.get("in_stack", True):
            continue
        known.add(yaml_key)
        child = node.get(yaml_key)
        if child is None:
            continue
        if dataclasses.is_dataclass(kind):
            values[f.name] = from_stack(kind, child, file, f"{key}.{yaml_key}", problems)  # type: ignore[arg-type]
            continue
        checked = _check_value(child.value, kind, f, file, child.line, f"{key}.{yaml_key}", problems)
        if checked is not None:
            values[f.name] = checked
    for name in sorted(set(node.value) - known):
        problems.add(file, node.value[name].line, f"{key}.{name}", f"unknown field; expected one of {', '.join(sorted(known))}")
    return cls(**values)
