"""Record <-> Route 53 ResourceRecordSet (the API's shape), both ways, every routing policy the zone may hold."""

from __future__ import annotations

from typing import Any

from globalaccel.dns.records import Cidr, Geo, Record, fqdn


def to_route53(record: Record, zone_id: str) -> dict[str, Any]:
    rrset: dict[str, Any] = {"Name": record.name, "Type": record.type}
    if record.set_id is not None:
        rrset["SetIdentifier"] = record.set_id
    if record.weight is not None:
        rrset["Weight"] = record.weight
    if record.geo is not None:
        geo: dict[str, str] = {}
        if record.geo.continent:
            geo["ContinentCode"] = record.geo.continent
        elif record.geo.country:
            geo["CountryCode"] = record.geo.country
            if record.geo.subdivision:
                geo["SubdivisionCode"] = record.geo.subdivision
        else:
            geo["CountryCode"] = "*"
        rrset["GeoLocation"] = geo
    if record.alias is not None:
        rrset["AliasTarget"] = {"HostedZoneId": zone_id, "DNSName": record.alias, "EvaluateTargetHealth": record.evaluate_target_health}
    else:
        rrset["TTL"] = record.ttl
        rrset["ResourceRecords"] = [{"Value": v} for v in record.values]
    if record.health_check is not None:
        rrset["HealthCheckId"] = record.health_check
    if record.failover is not None:
        rrset["Failover"] = record.failover
    if record.multivalue:
        rrset["MultiValueAnswer"] = True
    if record.region is not None:
        rrset["Region"] = record.region
    if record.cidr is not None:
        rrset["CidrRoutingConfig"] = {"CollectionId": record.cidr.collection, "LocationName": record.cidr.location}
    return rrset


def from_route53(rrset: dict[str, Any]) -> Record:
    geo = None
    if "GeoLocation" in rrset:
        g = rrset["GeoLocation"]
        country = g.get("CountryCode")
        geo = Geo(continent=g.get("ContinentCode"), country=None if country == "*" else country, subdivision=g.get("SubdivisionCode"))
    alias = rrset.get("AliasTarget")
    return Record(
        name=fqdn(rrset["Name"]),
        type=rrset["Type"],
        values=tuple(v["Value"] for v in rrset.get("ResourceRecords", [])) if alias is None else (),
        ttl=None if alias is not None else int(rrset["TTL"]),
        set_id=rrset.get("SetIdentifier"),
        weight=int(rrset["Weight"]) if "Weight" in rrset else None,
        geo=geo,
        alias=fqdn(alias["DNSName"]) if alias is not None else None,
        health_check=rrset.get("HealthCheckId"),
        evaluate_target_health=bool(alias.get("EvaluateTargetHealth", False)) if alias is not None else False,
        failover=rrset.get("Failover"),
        multivalue=bool(rrset.get("MultiValueAnswer", False)),
        region=rrset.get("Region"),
        cidr=Cidr(rrset["CidrRoutingConfig"]["CollectionId"], rrset["CidrRoutingConfig"]["LocationName"])
        if "CidrRoutingConfig" in rrset else None,
    )
