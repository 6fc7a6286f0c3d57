"""The Pulumi program (`pulumi up`). Thin: stack config -> Topology -> components -> exports.

The stack's files are read through globalaccel.topology, the same loader the control loop and the
auditor use, so a bad catalog fails here with the file, line and field before any resource exists.
"""

from __future__ import annotations

from pathlib import Path

import pulumi

from globalaccel.answers import Answers
from globalaccel.dns.route53_compile import compile_route53
from globalaccel.dns.route53_validate import validate_records
from globalaccel.routing.summary import compute_table
from globalaccel.settings import CLUSTER_RESULTS_PORT
from globalaccel.topology import load_stack
from modules.center import CenterNode, CenterNodeArgs
from modules.control_plane import ControlPlane, ControlPlaneArgs
from modules.edge_fleet import EdgeFleet, EdgeFleetArgs
from modules.routing_zone import RoutingZone, RoutingZoneArgs

topology = load_stack(pulumi.get_stack(), Path(__file__).resolve().parent / "stacks")
config = pulumi.Config("global-accel")
image = config.get("image") or "ghcr.io/globalaccel/globalaccel:0.1.0"
control_center = config.get("controlCenter") or topology.centers[0].id
if control_center not in topology.center_by_id:
    raise ValueError(f"stacks/Pulumi.{topology.stack}.yaml: config.global-accel:controlCenter: unknown center {control_center!r}")

zone = RoutingZone("routing", RoutingZoneArgs(topology.zone, topology.stack, config.get("parentZoneId")))
prober_urls = {c.id: f"http://prober-{c.id}.{topology.zone}:{CLUSTER_RESULTS_PORT}" for c in topology.centers}
stacks_dir = Path(__file__).resolve().parent / "stacks"
stack_files = {str(Path(f).resolve().relative_to(stacks_dir)): Path(f).read_text(encoding="utf-8") for f in topology.source_files}
centers = {
    c.id: CenterNode(c.id, CenterNodeArgs(center=c, stack=topology.stack, image=image, kubeconfig=config.get_secret(f"kubeconfig-{c.id}"),
                                          peers={k: v for k, v in prober_urls.items() if k != c.id}, probe_port=topology.probe.port))
    for c in topology.centers
}
table, _ = compute_table(topology)
records = compile_route53(topology, Answers.from_table(table, topology))  # the fleet's sync adds the zone's ownership claim
validate_records(records, topology.zone.rstrip(".") + ".", topology.countries)
fleet = EdgeFleet("edges", EdgeFleetArgs(zone=topology.zone.rstrip(".") + ".", service=topology.service_name.rstrip(".") + ".",
                                         stack=topology.stack, zone_id=zone.zone.zone_id, records=records, edges=len(topology.edges)))
control = ControlPlane("control", ControlPlaneArgs(stack=topology.stack, zone_id=zone.zone.zone_id, control_center=control_center,
                                                   image=image, k8s_provider=centers[control_center].k8s,
                                                   peers={k: v for k, v in prober_urls.items() if k != control_center},
                                                   stack_files=stack_files,
                                                   oidc_provider_arn=config.get("oidcProviderArn")))

pulumi.export("serviceName", topology.service_name)
pulumi.export("zoneId", zone.zone.zone_id)
pulumi.export("nameServers", zone.zone.name_servers)
pulumi.export("centers", {c.id: {"region": c.region, "address": c.address, "bucket": centers[c.id].bucket.bucket}
                          for c in topology.centers})
pulumi.export("controlLoop", {"center": control_center, "roleArn": control.role.arn})
pulumi.export("edgeCount", len(topology.edges))
pulumi.export("recordCount", len(records))
