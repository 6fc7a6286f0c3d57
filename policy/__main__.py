"""The CrossGuard policy pack (`pulumi preview --policy-pack policy`). Constructing PolicyPack serves
the analyzer until the engine stops it, so this file only wires the importable validators into it.

The engine runs it from this folder (`python __main__.py <engine address>`), where the project root is
not on sys.path: it is added here so `policy.validators` and the stack files resolve the same way as
under the tests.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from google.protobuf.struct_pb2 import ListValue, Struct  # noqa: E402
from pulumi_policy import (  # noqa: E402
    EnforcementLevel,
    PolicyPack,
    ReportViolation,
    StackValidationArgs,
    StackValidationPolicy,
)

from globalaccel.topology import load_stack  # noqa: E402
from policy.validators import validate  # noqa: E402


@dataclass
class _Resource:
    type: str
    name: str
    inputs: dict[str, Any]
    provider: str | None  # the name of the resource's explicit provider


def plain(value: Any) -> Any:
    """pulumi-policy hands nested maps and lists over as protobuf Struct / ListValue (only the top level
    is a dict): make them the plain Python the validators, like the rest of globalaccel, expect."""
    if isinstance(value, Struct | Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, ListValue | list | tuple):
        return [plain(v) for v in value]
    return value


def stack_of(urn: str) -> str:
    """urn:pulumi:<stack>::<project>::<type>::<name> -> <stack>: the stack being analysed, not a guess."""
    return urn.split("::", 1)[0].rsplit(":", 1)[-1]


def _check(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    if not args.resources:
        return
    topology = load_stack(stack_of(args.resources[0].urn), PROJECT / "stacks")
    resources = [_Resource(r.resource_type, r.name, plain(r.props), r.provider.name if r.provider else None) for r in args.resources]
    for v in validate(resources, topology):
        report_violation(f"[{v.kind}] {v.subject}: {v.evidence}", None)


PolicyPack(name="globalaccel-residency", enforcement_level=EnforcementLevel.MANDATORY, policies=[
    StackValidationPolicy(name="globalaccel-residency", description="Data stores and DNS records obey globalaccel residency rules",
                          validate=_check),
])
