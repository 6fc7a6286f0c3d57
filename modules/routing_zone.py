"""RoutingZone: the hosted zone the controller owns, and its delegation from a parent zone."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws


@dataclass
class RoutingZoneArgs:
    zone: str
    stack: str
    parent_zone_id: str | None = None  # delegate from this zone when given
    protect: bool = True  # destroying the zone would change its name servers: every resolver would lose it
    allowed_account_ids: list[str] | None = None


class RoutingZone(pulumi.ComponentResource):
    def __init__(self, name: str, args: RoutingZoneArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("globalaccel:index:RoutingZone", name, None, opts)
        provider = aws.Provider(f"{name}-aws", region="us-east-1", allowed_account_ids=args.allowed_account_ids,
                                opts=pulumi.ResourceOptions(parent=self))  # Route 53 is global; its API lives in us-east-1
        self.provider = provider  # global services (IAM) go through it too
        child = pulumi.ResourceOptions(parent=self, provider=provider)
        # 1,640 prod records against a 10,000-record quota: one zone, no shards (the compiler's tree keeps
        # every name under 100 records of one type).
        # An existing zone is adopted with `pulumi import aws:route53/zone:Zone routing-zone <ZONE_ID>` (README).
        self.zone = aws.route53.Zone(f"{name}-zone", name=args.zone, comment=f"globalaccel {args.stack}: owned by the control loop",
                                     force_destroy=False, tags={"globalaccel:stack": args.stack},
                                     opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(protect=args.protect)))
        if args.parent_zone_id:
            aws.route53.Record(f"{name}-delegation", zone_id=args.parent_zone_id, name=args.zone, type="NS", ttl=172800,
                               records=self.zone.name_servers, opts=child)
        self.register_outputs({"zone_id": self.zone.zone_id, "name_servers": self.zone.name_servers})
