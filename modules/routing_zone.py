"""RoutingZone: the hosted zone the controller owns, and its delegation from a parent zone."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from globalaccel.dns.records import RECORD_TTL


@dataclass
class RoutingZoneArgs:
    zone: str
    stack: str
    parent_zone_id: str | None = None  # delegate from this zone when given
    protect: bool = True  # destroying the zone would change its name servers: every resolver would lose it
    allowed_account_ids: list[str] | None = None
    cidr_collection: str | None = None  # the CIDR collection the loop fills when the zone routes cells by network


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
        # Negative caching lasts min(SOA TTL, SOA MINIMUM) (RFC 2308); Route 53's default SOA (900 s, 86400 s)
        # would keep a withdrawn or returning answer's absence cached for 15 minutes against 60 s records.
        aws.route53.Record(f"{name}-soa", zone_id=self.zone.zone_id, name=args.zone, type="SOA", ttl=RECORD_TTL, allow_overwrite=True,
                           records=[self.zone.primary_name_server.apply(
                               lambda ns: f"{ns}. awsdns-hostmaster.amazon.com. 1 7200 900 1209600 {RECORD_TTL}")], opts=child)
        # The collection's content is the loop's (globalaccel.dns.route53_cells: derived from the network database);
        # Pulumi only makes it exist, so that the loop's role needs no right to create or list collections.
        self.cidr_collection = (aws.route53.CidrCollection(f"{name}-cells", name=args.cidr_collection, opts=child)
                                if args.cidr_collection else None)
        if args.parent_zone_id:
            aws.route53.Record(f"{name}-delegation", zone_id=args.parent_zone_id, name=args.zone, type="NS", ttl=172800,
                               records=self.zone.name_servers, opts=child)
        self.register_outputs({"zone_id": self.zone.zone_id, "name_servers": self.zone.name_servers,
                               "cidr_collection_id": self.cidr_collection.id if self.cidr_collection else None})
