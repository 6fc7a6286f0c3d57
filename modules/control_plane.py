"""ControlPlane: the control loop's identity and workload - an IAM role whose policy can change and
list records only in the controller's own zone (and read change status), and, in the control
center's cluster, the loop's Deployment with leader election (Lease RBAC), service account, and a
metrics Service for Prometheus."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from globalaccel.settings import CLUSTER_RESULTS_PORT, BackendSettings, LeaseSettings, LoopSettings, up_command

STACKS_MOUNT = "/etc/globalaccel/stacks"  # the stack's files, from the ConfigMap
LABELS = {"app.kubernetes.io/part-of": "globalaccel", "app.kubernetes.io/name": "globalaccel-loop"}


@dataclass
class ControlPlaneArgs:
    stack: str
    zone_id: pulumi.Input[str]
    control_center: str
    image: str
    k8s_provider: k8s.Provider
    peers: dict[str, str]  # center -> prober results URL
    stack_files: dict[str, str] | None = None  # relative path under stacks/ -> content: the loop's configuration
    oidc_provider_arn: str | None = None  # EKS IRSA; without it the role trusts the account root (set it in production)


def loop_policy(zone_id: str) -> str:
    """Least privilege: records in this one zone, change status, nothing else."""
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "RecordsInOwnZone", "Effect": "Allow",
             "Action": ["route53:ChangeResourceRecordSets", "route53:ListResourceRecordSets"],
             "Resource": f"arn:aws:route53:::hostedzone/{zone_id}"},
            {"Sid": "ChangeStatus", "Effect": "Allow", "Action": ["route53:GetChange"], "Resource": "arn:aws:route53:::change/*"},
        ],
    }, sort_keys=True)


class ControlPlane(pulumi.ComponentResource):
    def __init__(self, name: str, args: ControlPlaneArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("globalaccel:index:ControlPlane", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        principal: Any = {"Federated": args.oidc_provider_arn} if args.oidc_provider_arn else {"AWS": "arn:aws:iam::root"}
        action = "sts:AssumeRoleWithWebIdentity" if args.oidc_provider_arn else "sts:AssumeRole"
        self.role = aws.iam.Role(f"{name}-role", assume_role_policy=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": principal, "Action": action}]}),
            tags={"globalaccel:stack": args.stack}, opts=child)
        self.policy = aws.iam.RolePolicy(f"{name}-route53", role=self.role.id,
                                         policy=pulumi.Output.from_input(args.zone_id).apply(loop_policy), opts=child)
        on_k8s = pulumi.ResourceOptions(parent=self, provider=args.k8s_provider)
        ns = "globalaccel"
        self.account = k8s.core.v1.ServiceAccount(f"{name}-sa", metadata={"name": "globalaccel-loop", "namespace": ns, "labels": LABELS,
                                                                         "annotations": {"eks.amazonaws.com/role-arn": self.role.arn}},
                                                  opts=on_k8s)
        rules: Any = [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]}]
        self.role_k8s = k8s.rbac.v1.Role(f"{name}-lease-role", metadata={"name": "globalaccel-lease", "namespace": ns}, rules=rules,
                                         opts=on_k8s)
        binding: Any = {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "globalaccel-lease"}
        subjects: Any = [{"kind": "ServiceAccount", "name": "globalaccel-loop", "namespace": ns}]
        self.binding = k8s.rbac.v1.RoleBinding(f"{name}-lease-binding", metadata={"name": "globalaccel-lease", "namespace": ns},
                                               role_ref=binding, subjects=subjects, opts=on_k8s)
        # The stack's files as a ConfigMap mounted at /etc/globalaccel/stacks: a residency or catalog edit
        # rolls out with `pulumi up`, no image rebuild. Keys cannot hold "/", so paths are flattened.
        files = args.stack_files or {}
        self.config = k8s.core.v1.ConfigMap(f"{name}-stack", metadata={"name": "globalaccel-stack", "namespace": ns, "labels": LABELS},
                                            data={path.replace("/", "__"): text for path, text in sorted(files.items())}, opts=on_k8s)
        items: Any = [{"key": path.replace("/", "__"), "path": path} for path in sorted(files)]
        loop = LoopSettings(vantage=args.control_center, metrics_host="0.0.0.0", measurements_host="0.0.0.0",
                            measurements_port=CLUSTER_RESULTS_PORT, peers=tuple(f"{c}={url}" for c, url in sorted(args.peers.items())),
                            lease=LeaseSettings(kind="kubernetes", namespace=ns))
        probes: Any = {"httpGet": {"path": "/healthz", "port": loop.metrics_port}, "periodSeconds": 10}
        container: Any = {
            "name": "loop", "image": args.image,
            # The command line is generated from the settings tree (globalaccel.settings), as the CLI parses it.
            "args": pulumi.Output.from_input(args.zone_id).apply(lambda zone: up_command(
                args.stack, dataclasses.replace(loop, backend=BackendSettings(kind="route53", zone_id=zone)), STACKS_MOUNT)),
            "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
            "ports": [{"name": "metrics", "containerPort": loop.metrics_port}, {"name": "results", "containerPort": CLUSTER_RESULTS_PORT}],
            "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
            "readinessProbe": probes, "livenessProbe": {**probes, "initialDelaySeconds": 60},
            "volumeMounts": [{"name": "stack", "mountPath": STACKS_MOUNT, "readOnly": True}],
        }
        spec: Any = {"replicas": 2, "selector": {"matchLabels": {"app.kubernetes.io/name": "globalaccel-loop"}},
                     "template": {"metadata": {"labels": LABELS},
                                  "spec": {"serviceAccountName": "globalaccel-loop", "containers": [container],
                                           "volumes": [{"name": "stack", "configMap": {"name": "globalaccel-stack", "items": items}}]}}}
        self.deployment = k8s.apps.v1.Deployment(f"{name}-loop", metadata={"name": "globalaccel-loop", "namespace": ns, "labels": LABELS},
                                                 spec=spec, opts=on_k8s)
        service: Any = {"selector": {"app.kubernetes.io/name": "globalaccel-loop"},
                        "ports": [{"name": "metrics", "port": loop.metrics_port}]}
        self.metrics = k8s.core.v1.Service(f"{name}-metrics", metadata={
            "name": "globalaccel-loop-metrics", "namespace": ns, "labels": LABELS,
            "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": str(loop.metrics_port)}}, spec=service, opts=on_k8s)
        self.register_outputs({"role_arn": self.role.arn, "control_center": args.control_center})
