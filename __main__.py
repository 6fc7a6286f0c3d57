"""The Pulumi program (`pulumi up`). Thin: stack config -> Topology -> components -> exports.

The stack's files are read through globalaccel.topology, the same loader the control loop and the
auditor use, so a bad catalog fails here with the file, line and field before any resource exists.
"""

from __future__ import annotations

import os
from pathlib import Path

import pulumi

from globalaccel.answers import Answers
from globalaccel.dns.route53_cells import collection_name, routes_by_network
from globalaccel.dns.route53_compile import compile_route53
from globalaccel.dns.route53_validate import validate_records
from globalaccel.errors import ConfigError
from globalaccel.iac.deployable import check_deployable
from globalaccel.iac.preview import PREVIEW_ENV
from globalaccel.routing.summary import compute_table
from globalaccel.settings import CLUSTER_RESULTS_PORT
from globalaccel.topology import load_stack, stack_file
from modules.center import CenterNode, CenterNodeArgs
from modules.control_plane import ControlPlane, ControlPlaneArgs
from modules.edge_fleet import EdgeFleet, EdgeFleetArgs
from modules.routing_zone import RoutingZone, RoutingZoneArgs

# `globalaccel preview` runs this program under the SDK's mocks and may point it at another stacks folder.
previewing = PREVIEW_ENV in os.environ
stacks_dir = Path(os.environ[PREVIEW_ENV]) if previewing else Path(__file__).resolve().parent / "stacks"
topology = load_stack(pulumi.get_stack(), stacks_dir)
check_deployable(topology, stacks_dir)  # placeholders and missing production settings: refused before any resource
if topology.iac.example and not previewing and not pulumi.runtime.is_dry_run():
    raise ConfigError.single(stack_file(stacks_dir, topology.stack), None, "config.global-accel:iac.example",
                             "an example stack (placeholder zone and addresses) is never deployed: copy it, set real values, "
                             "remove `example: true` (globalaccel preview names every value to set)")
iac = topology.iac
config = pulumi.Config("global-accel")
control_center = iac.control_center or topology.centers[0].id
allowed_accounts = [iac.aws_account_id] if iac.aws_account_id else None


def kubeconfig(center: str) -> pulumi.Output[str] | None:
    """Each center's cluster from its own secret. Required to deploy (check_deployable names a missing one);
    an example stack renders against no cluster."""
    key = f"kubeconfig-{center}"
    return config.get_secret(key) if iac.example else config.require_secret(key)


zone = RoutingZone("routing", RoutingZoneArgs(topology.zone, topology.stack, iac.parent_zone_id, protect=iac.protect,
                                              allowed_account_ids=allowed_accounts,
                                              cidr_collection=collection_name(topology) if routes_by_network(topology) else None))
prober_urls = {c.id: f"http://prober-{c.id}.{topology.zone}:{CLUSTER_RESULTS_PORT}" for c in topology.centers}
stack_files = {str(Path(f).resolve().relative_to(stacks_dir)): Path(f).read_text(encoding="utf-8") for f in topology.source_files}
centers = {
    c.id: CenterNode(c.id, CenterNodeArgs(center=c, stack=topology.stack, image=iac.image, kubeconfig=kubeconfig(c.id),
                                          peers={k: v for k, v in prober_urls.items() if k != c.id}, probe_port=topology.probe.port,
                                          loop=topology.loop, stack_files=stack_files, allowed_account_ids=allowed_accounts,
                                          peer_key=config.get_secret("peerKey") if iac.example else config.require_secret("peerKey"),
                                          zone_id=zone.zone.zone_id, zone=topology.zone))
    for c in topology.centers
}
table, _ = compute_table(topology)
records = compile_route53(topology, Answers.from_table(table, topology))  # the fleet's sync adds the zone's ownership claim
validate_records(records, topology.zone.rstrip(".") + ".", topology.countries)
fleet = EdgeFleet("edges", EdgeFleetArgs(zone=topology.zone.rstrip(".") + ".", service=topology.service_name.rstrip(".") + ".",
                                         stack=topology.stack, zone_id=zone.zone.zone_id, records=records, edges=len(topology.edges),
                                         protect=iac.protect, delete_records=iac.delete_records_on_destroy,
                                         health_checks={c: node.health_check.id for c, node in centers.items()}))
control = ControlPlane("control", ControlPlaneArgs(stack=topology.stack, zone_id=zone.zone.zone_id, control_center=control_center,
                                                   image=iac.image, k8s_provider=centers[control_center].k8s,
                                                   peers={k: v for k, v in prober_urls.items() if k != control_center},
                                                   mounted=centers[control_center].stack, loop=topology.loop,
                                                   oidc_provider_arn=iac.oidc_provider_arn,
                                                   state_storage=iac.state_storage,
                                                   control_region=topology.center_by_id[control_center].region,
                                                   aws_provider=zone.provider,
                                                   health_checks={c: node.health_check.id for c, node in centers.items()},
                                                   cidr_collection_id=zone.cidr_collection.id if zone.cidr_collection else None))

pulumi.export("serviceName", topology.service_name)
pulumi.export("zoneId", zone.zone.zone_id)
pulumi.export("nameServers", zone.zone.name_servers)
pulumi.export("centers", {c.id: {"region": c.region, "address": c.address, "bucket": centers[c.id].bucket.bucket}
                          for c in topology.centers})
pulumi.export("controlLoop", {"center": control_center, "roleArn": control.role.arn})
pulumi.export("edgeCount", len(topology.edges))
pulumi.export("recordCount", len(records))
