"""Refuse to deploy a stack that still holds placeholders, before any resource is registered.

The committed stacks are examples: their zone is under example.net (RFC 2606 reserves it) and their
addresses come from the benchmarking and documentation ranges (RFC 2544, RFC 5737), which no client can
reach and AWS rejects for health checks. A stack that declares `global-accel:iac: {example: true}` may
hold them (local runs, tests, `preview`), and is refused by `pulumi up` for that reason; any other stack
must replace every placeholder, and this check names each one with its file, line and field, and says
what an operator must set.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

from globalaccel.errors import ProblemCollector
from globalaccel.sourcefile import load_yaml, read_csv
from globalaccel.topology import NAMESPACE, Topology, stack_file

RESERVED_SUFFIXES = (".example.com", ".example.net", ".example.org", ".test", ".example", ".invalid", ".localhost", ".local",
                     ".home.arpa")
RESERVED_NAMES = ("example.com", "example.net", "example.org")
OIDC_ARN = re.compile(r"^arn:aws:iam::\d{12}:oidc-provider/[a-z0-9.-]+(/[A-Za-z0-9._-]+)*$")


def reserved_name(name: str) -> bool:
    name = name.rstrip(".").lower()
    return name in RESERVED_NAMES or any(name.endswith(s) for s in RESERVED_SUFFIXES)


def placeholder_address(text: str) -> bool:
    """Not a public unicast address: private, loopback, link-local, documentation (RFC 5737/3849),
    benchmarking (RFC 2544, 198.18.0.0/15) and other special-purpose ranges."""
    try:
        return not ipaddress.ip_address(text.strip()).is_global
    except ValueError:
        return True


def check_deployable(topology: Topology, stacks_dir: Path) -> None:
    """Raise ConfigError naming every placeholder or missing production setting, unless the stack is an example."""
    file = stack_file(stacks_dir, topology.stack)
    if topology.iac.example:
        return
    problems = ProblemCollector()
    config = load_yaml(file).get("config")
    assert config is not None  # load_stack already required it

    def line_of(key: str) -> int | None:
        node = config.get(f"{NAMESPACE}:{key}")
        return node.line if node is not None else config.line

    for key, value in (("zone", topology.zone), ("serviceName", topology.service_name)):
        if reserved_name(value):
            problems.add(file, line_of(key), f"config.{NAMESPACE}:{key}",
                         f"{value!r} is a reserved example name (RFC 2606/6761): set the DNS zone you own")
    centers = config.get(f"{NAMESPACE}:centers")
    for i, center in enumerate(topology.centers):
        if placeholder_address(center.address):
            node = centers.value[i].get("address") if centers is not None and isinstance(centers.value, list) else None
            problems.add(file, node.line if node is not None else line_of("centers"), f"config.{NAMESPACE}:centers[{i}].address",
                         f"{center.address} is not a public address (documentation, benchmarking or private range): set the "
                         f"public address of center {center.id}'s load balancer")
    iac = f"config.{NAMESPACE}:iac"
    if "@sha256:" not in topology.iac.image:
        problems.add(file, line_of("iac"), f"{iac}.image", f"{topology.iac.image!r} is not pinned by digest: set IMAGE@sha256:<digest> "
                     "(scripts/build-image prints it)")
    oidc, account = topology.iac.oidc_provider_arn, topology.iac.aws_account_id
    if not oidc:
        problems.add(file, line_of("iac"), f"{iac}.oidcProviderArn", "required: the EKS cluster's IAM OIDC provider ARN (the loop's "
                     "role trusts only its service account)")
    elif not OIDC_ARN.match(oidc):
        problems.add(file, line_of("iac"), f"{iac}.oidcProviderArn", f"{oidc!r} is not an IAM OIDC provider ARN "
                     "(arn:aws:iam::<12-digit account>:oidc-provider/<issuer host and path>)")
    if not account:
        problems.add(file, line_of("iac"), f"{iac}.awsAccountId", "required: the AWS account id every provider may act in")
    elif not re.fullmatch(r"\d{12}", account):
        problems.add(file, line_of("iac"), f"{iac}.awsAccountId", f"{account!r} is not a 12-digit AWS account id")
    elif oidc and OIDC_ARN.match(oidc) and oidc.split(":")[4] != account:
        problems.add(file, line_of("iac"), f"{iac}.oidcProviderArn", f"belongs to account {oidc.split(':')[4]}, not {account}")
    for center in topology.centers:
        key = f"{NAMESPACE}:kubeconfig-{center.id}"
        if key not in topology.raw_config:
            problems.add(file, config.line, f"config.{key}", f"required: the kubeconfig of center {center.id}'s cluster "
                         f"(pulumi config set --secret {key} < kubeconfig)")
    if f"{NAMESPACE}:peerKey" not in topology.raw_config:
        problems.add(file, config.line, f"config.{NAMESPACE}:peerKey", "required: the key the centers' probers sign their results "
                     f"with (pulumi config set --secret {NAMESPACE}:peerKey \"$(openssl rand -hex 32)\")")
    catalog_node = config.get(f"{NAMESPACE}:edgeCatalog")
    if catalog_node is not None and isinstance(catalog_node.value, str):
        catalog = (stacks_dir / catalog_node.value).resolve()
        rows = [row for row in read_csv(catalog, ("id", "address")) if placeholder_address(row.fields["address"])]
        for row in rows[:5]:  # the first few by line; the rest counted, so the stack file's own problems stay visible
            problems.add(catalog, row.line, "address", f"{row.fields['address']} (edge {row.fields['id']}) is not a public address: "
                         "set the edge's public address")
        if len(rows) > 5:
            problems.add(catalog, None, "address", f"... and {len(rows) - 5} more edges without a public address (lines "
                         f"{rows[5].line} to {rows[-1].line})")
    problems.raise_if_any()

