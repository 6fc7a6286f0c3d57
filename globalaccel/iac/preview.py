"""Run the real Pulumi program under the SDK's mocks and record what `pulumi up` would create.

No Pulumi CLI or cloud account is needed: `pulumi.runtime.set_mocks(..., preview=False)` runs
__main__.py in-process and every resource registration reaches RecordingMocks with its inputs.
"""

from __future__ import annotations

import json
import runpy
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime.stack import wait_for_rpcs
from pulumi.runtime.sync_await import _sync_await

from globalaccel.sourcefile import load_yaml
from globalaccel.topology import stack_file

PROJECT = "global-accel"
MOCK_ACCOUNT = "123456789012"  # what the mocked getCallerIdentity answers


@dataclass
class Registered:
    type: str
    name: str
    inputs: dict[str, Any]
    provider: str | None  # URN of the explicit provider, if any


@dataclass
class RecordingMocks(pulumi.runtime.Mocks):
    resources: list[Registered] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        outputs = dict(args.inputs)
        account = MOCK_ACCOUNT
        if args.typ == "aws:route53/zone:Zone":
            outputs.update(zoneId=f"Z{len(self.resources):020d}", nameServers=[f"ns-{i}.awsdns.example" for i in range(4)])
        elif args.typ == "aws:iam/role:Role":
            outputs["arn"] = f"arn:aws:iam::{account}:role/{args.name}"
        elif args.typ == "aws:s3/bucket:Bucket":
            outputs.setdefault("bucket", args.name)
            outputs["arn"] = f"arn:aws:s3:::{outputs['bucket']}"
        self.resources.append(Registered(args.typ, args.name, dict(args.inputs), args.provider))
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[Any, Any], list[tuple[str, str]] | None]:
        self.calls.append(args.token)
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": MOCK_ACCOUNT, "arn": f"arn:aws:iam::{MOCK_ACCOUNT}:user/preview", "userId": "AIDPREVIEW",
                    "id": MOCK_ACCOUNT}, []  # no check failures (the mock host iterates them: None is not accepted)
        return {}, []


def stack_config(stacks_dir: Path, stack: str) -> dict[str, str]:
    """The stack file's config as Pulumi hands it to a program: every value a string (objects as JSON)."""
    root = load_yaml(stack_file(stacks_dir, stack)).plain()
    config = root.get("config", {}) if isinstance(root, dict) else {}
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()}


PREVIEW_ENV = "GLOBALACCEL_PREVIEW_STACKS"  # set while the program runs under these mocks: the stacks folder it reads


def run_program(stack: str, project_dir: Path, stacks_dir: Path | None = None) -> list[Registered]:
    import os

    stacks = (stacks_dir or project_dir / "stacks").resolve()
    pulumi.runtime.set_all_config(stack_config(stacks, stack))
    os.environ[PREVIEW_ENV] = str(stacks)  # the program reads this folder, and knows it is not a real `pulumi up`
    mocks = RecordingMocks()
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=False)
    import sys

    if str(project_dir) not in sys.path:
        sys.path.insert(0, str(project_dir))  # as Pulumi runs a program: its project folder importable
    try:
        runpy.run_path(str(project_dir / "__main__.py"), run_name="__main__")
        _sync_await(wait_for_rpcs())  # registrations are asynchronous: drain them before reading
    finally:
        os.environ.pop(PREVIEW_ENV, None)
    return mocks.resources


def provider_region(resources: list[Registered]) -> dict[str, str]:
    """Explicit AWS provider URN (by name) -> its region."""
    return {r.name: str(r.inputs.get("region")) for r in resources if r.type == "pulumi:providers:aws"}


def urn_name(reference: str | None) -> str | None:
    """A provider reference is `<urn>::<id>`, and a URN ends in `::<type>::<name>`."""
    if not reference or "::" not in reference:
        return None
    return reference.split("::")[-2]


def summarise(stack: str, resources: list[Registered], centers: list[str], violations: list[dict[str, str]]) -> dict[str, Any]:
    by_type = Counter(r.type for r in resources)
    by_center = {c: sum(1 for r in resources if r.name == c or r.name.startswith(f"{c}-")) for c in centers}
    regions = provider_region(resources)
    by_region = Counter(regions.get(urn_name(r.provider) or "", "") for r in resources if r.type.startswith("aws:"))
    return {"stack": stack, "total_resources": len(resources), "by_type": dict(sorted(by_type.items())), "by_center": by_center,
            "by_region": {k or "(default provider)": v for k, v in sorted(by_region.items())}, "policy_violations": violations}


SECRET_SIG = "4dabf18193072939515e22adb298388d"  # the engine's marker of a secret value (pulumi.runtime.rpc)


def whole_numbers(value: Any) -> Any:
    """Resource inputs cross the engine as protobuf doubles (10001 arrives as 10001.0); the provider sends
    whole numbers to the API server as integers, and so do the manifests written here. A secret arrives
    wrapped in the engine's marker; the provider sends its value, and the manifest shows it redacted."""
    if isinstance(value, dict) and value.get(SECRET_SIG) is not None and "value" in value:
        return redacted(value["value"])
    if isinstance(value, dict):
        return {k: whole_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [whole_numbers(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def redacted(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: redacted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redacted(v) for v in value]
    return "[secret]" if isinstance(value, str) else value


def write_manifests(resources: list[Registered], folder: Path) -> list[Path]:
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for r in resources:
        if not r.type.startswith("kubernetes:") or r.type.startswith("pulumi:providers"):
            continue
        group, kind = r.type.split(":")[1], r.type.split(":")[2]
        manifest = whole_numbers({"apiVersion": group.removeprefix("core/"), "kind": kind, **r.inputs})
        path = folder / f"{r.name}.yaml"
        path.write_text(yaml.safe_dump(manifest, sort_keys=True))
        written.append(path)
    return written
