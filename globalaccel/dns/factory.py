"""Open a DNS backend from settings: the one place the CLI, the control loop, the audit and the Pulumi
fleet resource get a backend from, with its zone found and its credentials read."""

from __future__ import annotations

import os
import uuid
from typing import TYPE_CHECKING, Any

from globalaccel.dns.backend import Backend, BackendError, OwnedZone
from globalaccel.dns.embedded import DnsResponder
from globalaccel.dns.records import RECORD_TTL, fqdn
from globalaccel.settings import BackendSettings
from globalaccel.topology import Topology

if TYPE_CHECKING:
    from globalaccel.dns.route53 import Route53Backend
    from globalaccel.dns.route53_compile import Route53Layout


def route53_client(endpoint_url: str | None) -> Any:
    import boto3
    from botocore.config import Config

    # botocore's retries off: the backend retries, budgets and counts every request itself.
    return boto3.client("route53", endpoint_url=endpoint_url, config=Config(retries={"total_max_attempts": 1}))


def find_zone(client: Any, zone: str, create: bool) -> str | None:
    """The id of the one hosted zone named `zone`. Route 53 allows several zones with one name; which of
    them the world resolves is decided by delegation, not by us, so several is an error naming them all.
    None when there is none and `create` is off."""
    name = fqdn(zone)
    found: list[str] = []
    kwargs: dict[str, Any] = {"DNSName": name}
    while True:
        page = client.list_hosted_zones_by_name(**kwargs)
        zones = page.get("HostedZones", [])
        found += [str(z["Id"]).split("/")[-1] for z in zones if fqdn(z["Name"]) == name]
        if not page.get("IsTruncated") or (zones and fqdn(zones[-1]["Name"]) != name):
            break
        kwargs = {"DNSName": page["NextDNSName"], "HostedZoneId": page["NextHostedZoneId"]}
    if len(found) > 1:
        raise BackendError(f"{len(found)} hosted zones are named {name}: {', '.join(found)}; name the one to use with --zone-id")
    if found:
        return found[0]
    if not create:
        return None
    return str(client.create_hosted_zone(Name=name, CallerReference=str(uuid.uuid4()))["HostedZone"]["Id"]).split("/")[-1]


def open_backend(topology: Topology, settings: BackendSettings, responder: DnsResponder | None = None,
                 dry_run: bool = False) -> OwnedZone:
    """The backend `settings.kind` names, wrapped in the ownership registry. A dry run never creates
    anything: a zone that does not exist yet reads as empty."""
    backend: Backend
    if settings.kind == "embedded":
        from globalaccel.dns.embedded_backend import EmbeddedBackend, empty_snapshot

        backend = EmbeddedBackend(topology, responder or DnsResponder(empty_snapshot(topology, "127.0.0.1")))
    elif settings.kind == "route53":
        from globalaccel.dns.route53_compile import layout_for

        route53 = open_route53(layout_for(topology), settings, dry_run)
        route53.topology = topology
        known = route53.health_checks
        unknown = sorted(set(known) - set(topology.center_ids))
        if unknown:
            raise BackendError(f"--health-check names center(s) {', '.join(unknown)}, not in stack {topology.stack}")
        missing = [c for c in topology.centers if c.id not in known]
        if missing:
            # Checks not named on the command line: the account's check that probes the center (what the Pulumi
            # program created), else, creating the zone for development, one made now.
            from globalaccel.dns.health_checks import discover_center_checks, ensure_center_checks

            try:
                route53.add_health_checks(discover_center_checks(route53.client, missing, topology.probe.port))
            except ValueError as exc:
                raise BackendError(str(exc)) from None
            missing = [c for c in missing if c.id not in route53.health_checks]
            if missing and settings.create_zone and not dry_run:
                route53.add_health_checks(ensure_center_checks(route53.client, topology.stack, missing, topology.probe.port))
        from globalaccel.dns.route53_cells import cidr_selection

        selection = cidr_selection(topology)
        if selection is not None:
            route53.cidr_collection = ((selection.collection, settings.cidr_collection) if settings.cidr_collection else
                                       find_collection(route53.client, selection.collection, settings.create_zone and not dry_run))
            if route53.cidr_collection is None and not dry_run:
                raise BackendError(f"no CIDR collection named {selection.collection} (stack route53.collection); pulumi up creates "
                                   "it, --create-zone creates it here, or set route53.cidrCells: 0 to route by geolocation alone")
            route53.cidr_selection = selection
        if not dry_run:
            route53.cap_negative_ttl(RECORD_TTL)
        return OwnedZone(route53)
    elif settings.kind == "powerdns":
        from globalaccel.dns.powerdns import PowerDnsBackend
        from globalaccel.dns.powerdns import layout_for as powerdns_layout

        key = os.environ.get(settings.api_key_env)
        if not settings.endpoint_url or not key:
            raise BackendError(f"the powerdns backend needs --endpoint-url (the PowerDNS API) and {settings.api_key_env} "
                               "in the environment")
        powerdns = PowerDnsBackend(settings.endpoint_url, key, powerdns_layout(topology), topology,
                                   health=settings.center_health_endpoints)
        if dry_run:
            powerdns.absent_ok = True
        else:
            powerdns.ensure_zone()
            powerdns.cap_negative_ttl(RECORD_TTL)
        backend = powerdns
    else:
        raise BackendError(f"unknown DNS backend {settings.kind!r}; expected embedded, route53 or powerdns")
    return OwnedZone(backend)


def find_collection(client: Any, name: str, create: bool) -> tuple[str, str] | None:
    """(name, id) of the account's CIDR collection named `name`; created when missing and `create`."""
    from botocore.exceptions import ClientError

    kwargs: dict[str, Any] = {}
    try:
        while True:
            page = client.list_cidr_collections(**kwargs)
            for collection in page.get("CidrCollections", []):
                if collection["Name"] == name:
                    return name, str(collection["Id"])
            if not page.get("NextToken"):
                break
            kwargs = {"NextToken": page["NextToken"]}
        if not create:
            return None
        made = client.create_cidr_collection(Name=name, CallerReference=str(uuid.uuid4()))
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        raise BackendError(f"CIDR collection {name}: the Route 53 API refused ({code}); IP-based routing needs it (stack "
                           "route53.cidrCells; 0 routes by geolocation alone, as an endpoint without the API, moto, requires)") from None
    return name, str(made["Collection"]["Id"])


def open_route53(layout: Route53Layout, settings: BackendSettings, dry_run: bool = False) -> Route53Backend:
    """A Route 53 backend for a zone layout alone: what the Pulumi fleet resource needs, whose records
    arrive compiled (it has no topology to render from)."""
    from globalaccel.dns.budget import ApiBudget
    from globalaccel.dns.route53 import Route53Backend

    client = route53_client(settings.endpoint_url)
    zone_id = settings.zone_id or find_zone(client, layout.zone, settings.create_zone and not dry_run)
    if zone_id is None and not dry_run:
        raise BackendError(f"no hosted zone {layout.zone}; pass --create-zone to create it (or --zone-id)")
    backend = Route53Backend(client, zone_id, layout, budget=ApiBudget.route53(requests_per_s=settings.requests_per_s,
                                                                              tokens_per_s=settings.tokens_per_s),
                             wait_insync=settings.wait_insync, health_checks=settings.health_check_ids)
    if not dry_run and backend.health_checks:
        backend.verify_health_checks()
    return backend
