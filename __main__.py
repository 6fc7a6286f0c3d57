"""The Pulumi program (`pulumi up`). Thin: stack config -> Topology -> components -> exports.

The stack's files are read through globalaccel.topology, the same loader the control loop and the
auditor use, so a bad catalog fails here with the file, line and field before any resource exists.
"""

from __future__ import annotations

from pathlib import Path

import pulumi

from globalaccel.topology import load_stack

topology = load_stack(pulumi.get_stack(), Path(__file__).resolve().parent / "stacks")

pulumi.export("serviceName", topology.service_name)
pulumi.export("zone", topology.zone)
pulumi.export("centers", {c.id: {"region": c.region, "address": c.address} for c in topology.centers})
pulumi.export("edgeCount", len(topology.edges))
pulumi.export("countryCount", len(topology.countries))
