"""The stack's files (stack config, catalogs, residency rules) as a ConfigMap the loop and probers mount.

Its name carries a hash of the content, and the pods an annotation with it: any edit creates a new
ConfigMap and rolls the pods out. A fixed name would change under running pods that never reload.
Keys cannot hold "/", so paths are flattened and mapped back by `items`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

STACKS_MOUNT = "/etc/globalaccel/stacks"


@dataclass(frozen=True)
class MountedStack:
    config_map: k8s.core.v1.ConfigMap
    name: str
    checksum: str
    volume: Any  # the pod volume mapping the ConfigMap's keys back to their paths


def stack_config_map(resource_name: str, files: dict[str, str], namespace: str, labels: dict[str, str],
                     opts: pulumi.ResourceOptions) -> MountedStack:
    data = {path.replace("/", "__"): text for path, text in sorted(files.items())}
    checksum = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
    name = f"globalaccel-stack-{checksum[:10]}"
    config_map = k8s.core.v1.ConfigMap(resource_name, metadata={"name": name, "namespace": namespace, "labels": labels}, data=data,
                                       opts=opts)
    items = [{"key": path.replace("/", "__"), "path": path} for path in sorted(files)]
    return MountedStack(config_map, name, checksum, {"name": "stack", "configMap": {"name": name, "items": items}})
