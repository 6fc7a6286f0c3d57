"""CenterNode: one regional center - its AWS provider, residency-tagged data store, its cluster's
prober, and one Route 53 health check for the center itself (never one per edge)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from globalaccel.dns.health_checks import center_check_config
from globalaccel.settings import CLUSTER_RESULTS_PORT, BackendSettings, LeaseSettings, LoopSettings, up_command
from globalaccel.topology import Center
from modules.stack_files import STACKS_MOUNT, stack_config_map

LABELS = {"app.kubernetes.io/part-of": "globalaccel"}
STATE_MOUNT = "/var/lib/globalaccel"
# Non-root, read-only root filesystem, no privilege escalation, no capabilities: the loop needs none.
POD_SECURITY: Any = {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001,
                     "seccompProfile": {"type": "RuntimeDefault"}}
CONTAINER_SECURITY: Any = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
                           "capabilities": {"drop": ["ALL"]}}


def spread(labels: dict[str, str]) -> Any:
    """Replicas in different availability zones, and on different nodes, where the cluster has them."""
    return [{"maxSkew": 1, "topologyKey": key, "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": labels}}
            for key in ("topology.kubernetes.io/zone", "kubernetes.io/hostname")]


PEER_KEY_SECRET = "globalaccel-peer-key"


def peer_key_env(variable: str) -> dict[str, Any]:
    """The container's environment variable holding the centers' shared key, from the namespace's Secret."""
    return {"name": variable, "valueFrom": {"secretKeyRef": {"name": PEER_KEY_SECRET, "key": "key"}}}


def lb_hostnames(status: Any) -> list[str]:
    """The load balancer's hostname (or address) once Kubernetes reports it; a placeholder until then, so a
    preview renders (the engine waits for the Service's status before creating the record)."""
    ingress = (status or {}).get("load_balancer", {}) if isinstance(status, dict) else getattr(getattr(status, "load_balancer", None),
                                                                                                "ingress", None)
    if isinstance(ingress, dict):
        ingress = ingress.get("ingress")
    for item in ingress or []:
        host = item.get("hostname") or item.get("ip") if isinstance(item, dict) else (getattr(item, "hostname", None)
                                                                                    or getattr(item, "ip", None))
        if host:
            return [str(host)]
    return ["pending.invalid"]


@dataclass
class CenterNodeArgs:
    center: Center
    stack: str
    image: str
    kubeconfig: pulumi.Input[str] | None  # secret config; None renders manifests against the default context
    peers: dict[str, str]  # other centers -> their prober's results URL
    probe_port: int = 443
    loop: LoopSettings = field(default_factory=LoopSettings)  # the stack's loop block: the probers start from it
    stack_files: dict[str, str] = field(default_factory=dict)  # relative path under stacks/ -> content
    allowed_account_ids: list[str] | None = None  # the provider refuses to act in any other account
    peer_key: pulumi.Input[str] | None = None  # secret config: the key probers sign their results with (globalaccel.measure.peers)
    zone_id: pulumi.Input[str] | None = None  # the routing zone: prober-<center>.<zone> names this center's results endpoint
    zone: str | None = None


class CenterNode(pulumi.ComponentResource):
    def __init__(self, name: str, args: CenterNodeArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("globalaccel:index:CenterNode", name, None, opts)
        c = args.center
        child = pulumi.ResourceOptions(parent=self)
        self.provider = aws.Provider(f"{name}-aws", region=c.region, allowed_account_ids=args.allowed_account_ids, opts=child)
        on_aws = pulumi.ResourceOptions(parent=self, provider=self.provider)
        tags = {"globalaccel:center": c.id, "globalaccel:residency-zone": c.region, "globalaccel:stack": args.stack}
        self.bucket = aws.s3.Bucket(f"{name}-devices", bucket=f"globalaccel-{args.stack}-{c.id}-devices", tags=tags, opts=on_aws)
        aws.s3.BucketVersioning(f"{name}-devices-versioning", bucket=self.bucket.id,
                                versioning_configuration={"status": "Enabled"}, opts=on_aws)
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-devices-encryption", bucket=self.bucket.id,
            rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": "aws:kms"}, "bucket_key_enabled": True}], opts=on_aws)
        aws.s3.BucketPublicAccessBlock(f"{name}-devices-public-access", bucket=self.bucket.id, block_public_acls=True,
                                       block_public_policy=True, ignore_public_acls=True, restrict_public_buckets=True, opts=on_aws)
        # No replication configuration at all: a device's data stays in its center's region.
        # The center's Route 53 health check: every country's failover chain reads it (globalaccel.dns.route53_compile),
        # so losing this center moves its countries to their next allowed center in the DNS data plane, no API call.
        check = center_check_config(c, args.probe_port)
        self.health_check = aws.route53.HealthCheck(
            f"{name}-health", type=check["Type"], ip_address=check["IPAddress"], port=check["Port"],
            resource_path=check["ResourcePath"], request_interval=check["RequestInterval"],
            failure_threshold=check["FailureThreshold"], tags=tags, opts=on_aws)
        self.k8s = k8s.Provider(f"{name}-k8s", kubeconfig=args.kubeconfig, opts=child)
        on_k8s = pulumi.ResourceOptions(parent=self, provider=self.k8s)
        labels = {**LABELS, "app.kubernetes.io/name": "globalaccel-prober", "globalaccel/center": c.id}
        self.namespace = k8s.core.v1.Namespace(f"{name}-ns", metadata={"name": "globalaccel", "labels": LABELS}, opts=on_k8s)
        after_ns = pulumi.ResourceOptions(parent=self, provider=self.k8s, depends_on=[self.namespace])
        # Every prober is a dry-run loop of its own center: it measures, serves its results to the others
        # and exports metrics; only the control loop publishes. Its command line comes from the settings tree.
        # The full command line is emitted (to_argv full): the pod's behaviour and this manifest's ports cannot
        # be changed behind its back by a value in the mounted stack file.
        prober = dataclasses.replace(
            args.loop, local=False, once=False, duration=None, vantage=c.id, dry_run=True, metrics_host="0.0.0.0",
            measurements_host="0.0.0.0", measurements_port=CLUSTER_RESULTS_PORT,
            peers=tuple(f"{p}={url}" for p, url in sorted(args.peers.items())), state_dir=Path(STATE_MOUNT),
            backend=BackendSettings(kind="embedded"), lease=LeaseSettings(kind="file"))
        self.stack = stack_config_map(f"{name}-stack", args.stack_files, "globalaccel", LABELS, after_ns)
        probes: Any = {"httpGet": {"path": "/healthz", "port": prober.metrics_port}, "periodSeconds": 10}
        deployment_spec: Any = {
                "replicas": 2,  # with the PDB below, a node drain never leaves the center without its prober
                "selector": {"matchLabels": {"app.kubernetes.io/name": "globalaccel-prober"}},
                "template": {
                    "metadata": {"labels": labels, "annotations": {"globalaccel/stack-checksum": self.stack.checksum}},
                    "spec": {
                        "containers": [{
                            "name": "prober", "image": args.image,
                            "args": up_command(args.stack, prober, STACKS_MOUNT, full=True),
                            "env": [peer_key_env(prober.peer_key_env)],
                            "ports": [{"name": "results", "containerPort": CLUSTER_RESULTS_PORT},
                                      {"name": "metrics", "containerPort": prober.metrics_port}],
                            "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}},
                            "readinessProbe": probes, "livenessProbe": {**probes, "initialDelaySeconds": 60},
                            "securityContext": CONTAINER_SECURITY,
                            "volumeMounts": [{"name": "state", "mountPath": STATE_MOUNT}, {"name": "tmp", "mountPath": "/tmp"},
                                             {"name": "stack", "mountPath": STACKS_MOUNT, "readOnly": True}],
                        }],
                        "securityContext": POD_SECURITY,
                        "volumes": [{"name": "state", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}, self.stack.volume],
                        "nodeSelector": {"topology.kubernetes.io/region": c.region},
                        "topologySpreadConstraints": spread({"app.kubernetes.io/name": "globalaccel-prober"}),
                    },
                },
            }
        self.deployment = k8s.apps.v1.Deployment(f"{name}-prober", metadata={"name": "globalaccel-prober", "namespace": "globalaccel",
                                                                             "labels": labels}, spec=deployment_spec, opts=after_ns)
        # The other centers reach this prober's results through a load balancer and a name in the routing zone
        # (prober-<center>.<zone>, what every peer URL says); the results are signed both ways with the
        # centers' shared key, so an open port gives nothing away and takes no forged vote.
        self.peer_key = k8s.core.v1.Secret(f"{name}-peer-key", metadata={"name": PEER_KEY_SECRET, "namespace": "globalaccel"},
                                           string_data={"key": args.peer_key or ""}, opts=after_ns)
        lb_meta: Any = {"name": "globalaccel-prober-peers", "namespace": "globalaccel", "labels": labels,
                        "annotations": {"service.beta.kubernetes.io/aws-load-balancer-type": "nlb",
                                        "service.beta.kubernetes.io/aws-load-balancer-scheme": "internet-facing"}}
        lb_spec: Any = {"type": "LoadBalancer", "selector": {"app.kubernetes.io/name": "globalaccel-prober"},
                        "ports": [{"name": "results", "port": CLUSTER_RESULTS_PORT, "targetPort": CLUSTER_RESULTS_PORT}]}
        self.peers_lb = k8s.core.v1.Service(f"{name}-prober-peers", metadata=lb_meta, spec=lb_spec, opts=after_ns)
        if args.zone_id is not None and args.zone:
            self.peers_name = aws.route53.Record(
                f"{name}-prober-dns", zone_id=args.zone_id, name=f"prober-{c.id}.{args.zone.rstrip('.')}", type="CNAME", ttl=60,
                records=pulumi.Output.from_input(self.peers_lb.status).apply(lb_hostnames), opts=on_aws)
        self.service = k8s.core.v1.Service(f"{name}-prober-svc", metadata={"name": "globalaccel-prober", "namespace": "globalaccel",
                                                                          "labels": labels},
                                           spec={"selector": {"app.kubernetes.io/name": "globalaccel-prober"},
                                                 "ports": [{"name": "results", "port": CLUSTER_RESULTS_PORT},
                                                           {"name": "metrics", "port": prober.metrics_port}]},
                                           opts=after_ns)
        pdb_spec: Any = {"minAvailable": 1, "selector": {"matchLabels": {"app.kubernetes.io/name": "globalaccel-prober"}}}
        self.pdb = k8s.policy.v1.PodDisruptionBudget(f"{name}-prober-pdb", metadata={"name": "globalaccel-prober",
                                                                                    "namespace": "globalaccel"},
                                                     spec=pdb_spec, opts=after_ns)
        self.register_outputs({"bucket": self.bucket.bucket, "region": c.region, "health_check": self.health_check.id})
