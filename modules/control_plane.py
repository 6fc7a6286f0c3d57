"""ControlPlane: the control loop's identity and workload - an IAM role whose policy can change and
list records only in the controller's own zone (and read change status), and, in the control
center's cluster, the loop's Deployment with leader election (Lease RBAC), service account, and a
metrics Service for Prometheus."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from globalaccel.settings import CLUSTER_RESULTS_PORT, LoopSettings, up_command
from modules.center import CONTAINER_SECURITY, POD_SECURITY, STATE_MOUNT, peer_key_env, spread
from modules.stack_files import STACKS_MOUNT, MountedStack

LABELS = {"app.kubernetes.io/part-of": "globalaccel", "app.kubernetes.io/name": "globalaccel-loop"}


@dataclass
class ControlPlaneArgs:
    stack: str
    zone_id: pulumi.Input[str]
    control_center: str
    image: str
    k8s_provider: k8s.Provider
    peers: dict[str, str]  # center -> prober results URL
    mounted: MountedStack  # the stack's files in the control center's cluster (its CenterNode mounts them for the prober too)
    loop: LoopSettings = dataclasses.field(default_factory=LoopSettings)  # the stack's loop block: the loop starts from it
    oidc_provider_arn: str | None = None  # EKS IRSA: required to deploy (globalaccel.iac.deployable); examples trust the account
    state_storage: str = "1Gi"  # the loop's state and decision log, on a persistent volume per replica
    control_region: str | None = None  # the control center's region: the loop's pods and volumes stay there
    aws_provider: aws.Provider | None = None  # the account-pinned provider IAM is created through
    health_checks: dict[str, pulumi.Input[str]] = dataclasses.field(default_factory=dict)  # center -> Route 53 check id
    cidr_collection_id: pulumi.Input[str] | None = None  # the zone's CIDR collection, when it routes cells by network


def trust_policy(account_id: str, oidc_provider_arn: str | None, namespace: str, service_account: str) -> str:
    """Who may assume the loop's role. With the cluster's OIDC provider (IRSA): only the loop's service
    account in its namespace, for the STS audience. Without (example stacks only): principals of this
    account, by its account-qualified root ARN (a bare `arn:aws:iam::root` is malformed to AWS)."""
    if oidc_provider_arn:
        issuer = oidc_provider_arn.split(":oidc-provider/", 1)[1]
        statement: dict[str, Any] = {
            "Effect": "Allow", "Principal": {"Federated": oidc_provider_arn}, "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {f"{issuer}:sub": f"system:serviceaccount:{namespace}:{service_account}",
                                           f"{issuer}:aud": "sts.amazonaws.com"}},
        }
    else:
        statement = {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account_id}:root"}, "Action": "sts:AssumeRole"}
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]}, sort_keys=True)


def loop_policy(zone_id: str, health_checks: list[str] | tuple[str, ...] = (), cidr_collection: str | None = None) -> str:
    """Least privilege: records in this one zone, change status, reading the centers' health checks (the
    loop verifies the ids its failover records name before writing them), reading and changing the blocks of
    the zone's one CIDR collection (its id is passed: no right to list or create collections), nothing else."""
    statements: list[dict[str, Any]] = [
        {"Sid": "RecordsInOwnZone", "Effect": "Allow",
         "Action": ["route53:ChangeResourceRecordSets", "route53:ListResourceRecordSets"],
         "Resource": f"arn:aws:route53:::hostedzone/{zone_id}"},
        {"Sid": "ChangeStatus", "Effect": "Allow", "Action": ["route53:GetChange"], "Resource": "arn:aws:route53:::change/*"},
    ]
    if cidr_collection:
        statements.append({"Sid": "CellNetworks", "Effect": "Allow", "Action": ["route53:ChangeCidrCollection", "route53:ListCidrBlocks"],
                           "Resource": f"arn:aws:route53:::cidrcollection/{cidr_collection}"})
    if health_checks:
        statements.append({"Sid": "CentersHealthChecks", "Effect": "Allow", "Action": ["route53:GetHealthCheck"],
                           "Resource": [f"arn:aws:route53:::healthcheck/{c}" for c in sorted(health_checks)]})
    return json.dumps({"Version": "2012-10-17", "Statement": statements}, sort_keys=True)


class ControlPlane(pulumi.ComponentResource):
    def __init__(self, name: str, args: ControlPlaneArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("globalaccel:index:ControlPlane", name, None, opts)
        # IAM and the caller identity through the account-pinned provider (allowedAccountIds), never the default.
        child = pulumi.ResourceOptions(parent=self, provider=args.aws_provider)
        ns, account_name = "globalaccel", "globalaccel-loop"
        identity = aws.get_caller_identity_output(opts=pulumi.InvokeOutputOptions(parent=self, provider=args.aws_provider))
        self.role = aws.iam.Role(f"{name}-role", assume_role_policy=identity.account_id.apply(
            lambda account: trust_policy(account, args.oidc_provider_arn, ns, account_name)),
            tags={"globalaccel:stack": args.stack}, opts=child)
        self.policy = aws.iam.RolePolicy(f"{name}-route53", role=self.role.id,
                                         policy=pulumi.Output.all(args.zone_id, pulumi.Output.from_input(args.health_checks),
                                                                  args.cidr_collection_id).apply(
                                             lambda v: loop_policy(v[0], tuple(v[1].values()), v[2])), opts=child)
        on_k8s = pulumi.ResourceOptions(parent=self, provider=args.k8s_provider)
        self.account = k8s.core.v1.ServiceAccount(f"{name}-sa", metadata={"name": account_name, "namespace": ns, "labels": LABELS,
                                                                         "annotations": {"eks.amazonaws.com/role-arn": self.role.arn}},
                                                  opts=on_k8s)
        rules: Any = [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]}]
        self.role_k8s = k8s.rbac.v1.Role(f"{name}-lease-role", metadata={"name": "globalaccel-lease", "namespace": ns}, rules=rules,
                                         opts=on_k8s)
        binding: Any = {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "globalaccel-lease"}
        subjects: Any = [{"kind": "ServiceAccount", "name": account_name, "namespace": ns}]
        self.binding = k8s.rbac.v1.RoleBinding(f"{name}-lease-binding", metadata={"name": "globalaccel-lease", "namespace": ns},
                                               role_ref=binding, subjects=subjects, opts=on_k8s)
        # The stack's files as a ConfigMap mounted at /etc/globalaccel/stacks: a residency or catalog edit
        # rolls out with `pulumi up`, no image rebuild. Keys cannot hold "/", so paths are flattened.
        # The stack's own loop settings, with what this deployment decides set explicitly, emitted in full.
        loop = dataclasses.replace(
            args.loop, local=False, once=False, duration=None, dry_run=False, vantage=args.control_center, metrics_host="0.0.0.0",
            measurements_host="0.0.0.0", measurements_port=CLUSTER_RESULTS_PORT,
            peers=tuple(f"{c}={url}" for c, url in sorted(args.peers.items())),
            lease=dataclasses.replace(args.loop.lease, kind="kubernetes", namespace=ns), state_dir=Path(STATE_MOUNT))
        probes: Any = {"httpGet": {"path": "/healthz", "port": loop.metrics_port}, "periodSeconds": 10}
        container: Any = {
            "name": "loop", "image": args.image,
            # The command line is generated from the settings tree (globalaccel.settings), as the CLI parses it.
            # The centers' health checks go with it: every failover leg the loop publishes names one.
            "args": pulumi.Output.all(args.zone_id, pulumi.Output.from_input(args.health_checks), args.cidr_collection_id).apply(
                lambda v: up_command(args.stack, dataclasses.replace(loop, backend=dataclasses.replace(
                    loop.backend, kind="route53", zone_id=v[0], create_zone=False, cidr_collection=v[2],
                    health_checks=tuple(f"{c}={check}" for c, check in sorted(v[1].items())))), STACKS_MOUNT, full=True)),
            "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    peer_key_env(loop.peer_key_env)],  # the Secret its center's CenterNode creates in this namespace
            "ports": [{"name": "metrics", "containerPort": loop.metrics_port}, {"name": "results", "containerPort": CLUSTER_RESULTS_PORT}],
            "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
            "readinessProbe": probes, "livenessProbe": {**probes, "initialDelaySeconds": 60},
            "securityContext": CONTAINER_SECURITY,
            "volumeMounts": [{"name": "stack", "mountPath": STACKS_MOUNT, "readOnly": True}, {"name": "state", "mountPath": STATE_MOUNT},
                             {"name": "tmp", "mountPath": "/tmp"}],
        }
        placed = {**LABELS, "globalaccel/center": args.control_center}
        pod_spec: Any = {"serviceAccountName": account_name, "containers": [container], "securityContext": POD_SECURITY,
                         "topologySpreadConstraints": spread({"app.kubernetes.io/name": "globalaccel-loop"}),
                         "volumes": [args.mounted.volume, {"name": "tmp", "emptyDir": {}}]}
        if args.control_region:
            pod_spec["nodeSelector"] = {"topology.kubernetes.io/region": args.control_region}
        # A StatefulSet: each replica keeps its state and decision log on its own volume across restarts.
        spec: Any = {"replicas": 2, "serviceName": "globalaccel-loop-metrics",
                     "selector": {"matchLabels": {"app.kubernetes.io/name": "globalaccel-loop"}},
                     "template": {"metadata": {"labels": placed, "annotations": {"globalaccel/stack-checksum": args.mounted.checksum}},
                                  "spec": pod_spec},
                     "volumeClaimTemplates": [{"metadata": {"name": "state", "labels": placed},
                                               "spec": {"accessModes": ["ReadWriteOnce"],
                                                        "resources": {"requests": {"storage": args.state_storage}}}}]}
        self.statefulset = k8s.apps.v1.StatefulSet(f"{name}-loop", metadata={"name": "globalaccel-loop", "namespace": ns,
                                                                             "labels": placed}, spec=spec, opts=on_k8s)
        pdb: Any = {"minAvailable": 1, "selector": {"matchLabels": {"app.kubernetes.io/name": "globalaccel-loop"}}}
        self.pdb = k8s.policy.v1.PodDisruptionBudget(f"{name}-loop-pdb", metadata={"name": "globalaccel-loop", "namespace": ns},
                                                     spec=pdb, opts=on_k8s)
        service: Any = {"selector": {"app.kubernetes.io/name": "globalaccel-loop"},
                        "ports": [{"name": "metrics", "port": loop.metrics_port}]}
        self.metrics = k8s.core.v1.Service(f"{name}-metrics", metadata={
            "name": "globalaccel-loop-metrics", "namespace": ns, "labels": LABELS,
            "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": str(loop.metrics_port)}}, spec=service, opts=on_k8s)
        self.register_outputs({"role_arn": self.role.arn, "control_center": args.control_center})
