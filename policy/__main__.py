"""The CrossGuard policy pack (`pulumi preview --policy-pack policy`). Constructing PolicyPack blocks
until the engine talks to it, so this file only wires the importable validators into it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pulumi_policy import EnforcementLevel, PolicyPack, ReportViolation, StackValidationArgs, StackValidationPolicy

from globalaccel.topology import load_stack
from policy.validators import validate


@dataclass
class _Resource:
    type: str
    name: str
    inputs: dict[str, Any]
    provider: str | None


def _check(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    topology = load_stack(args.get_config().get("stack", "prod"), Path(__file__).resolve().parent.parent / "stacks")
    resources = [_Resource(r.resource_type, r.name, dict(r.props), getattr(r.opts.provider, "urn", None) if r.opts else None)
                 for r in args.resources]
    for v in validate(resources, topology):
        report_violation(f"[{v.kind}] {v.subject}: {v.evidence}", None)


PolicyPack(name="globalaccel-residency", enforcement_level=EnforcementLevel.MANDATORY, policies=[
    StackValidationPolicy(name="globalaccel-residency", description="Data stores and DNS records obey globalaccel residency rules",
                          validate=_check),
])
