"""Where the loop publishes a routing table: the embedded server, Route 53 or PowerDNS."""

from __future__ import annotations

from typing import Any, Protocol

from globalaccel.dns.embedded import DnsResponder, snapshot_from_table
from globalaccel.routing import RoutingTable
from globalaccel.topology import Topology


class TableSink(Protocol):
    name: str

    def publish(self, table: RoutingTable) -> dict[str, Any]:
        """Make DNS answer per `table`. Returns counts (requests, changes); raises on failure."""
        ...

    def budget(self) -> dict[str, float]:
        ...


class EmbeddedSink:
    name = "embedded"

    def __init__(self, topology: Topology, responder: DnsResponder) -> None:
        self.topology = topology
        self.responder = responder

    def publish(self, table: RoutingTable) -> dict[str, Any]:
        self.responder.swap(snapshot_from_table(self.topology, table, ns_address=self.responder.snapshot.ns_address))
        return {"requests": 0, "changes": 1}

    def budget(self) -> dict[str, float]:
        return {"requests": float("inf")}  # no API in between: unlimited


class Route53Sink:
    name = "route53"

    def __init__(self, topology: Topology, provider: Any) -> None:
        self.topology = topology
        self.provider = provider

    def publish(self, table: RoutingTable) -> dict[str, Any]:
        from globalaccel.dns.route53 import sync
        from globalaccel.dns.route53_compile import compile_route53
        from globalaccel.dns.route53_validate import validate_records

        desired = compile_route53(self.topology, table)
        validate_records(desired, self.provider.layout.zone, self.topology.countries)
        report = sync(self.provider, desired)
        if not report.converged:
            raise RuntimeError(f"Route 53 sync did not converge after {report.rounds} rounds")
        return {"requests": report.stats.requests, "changes": sum(report.planned.values())}

    def budget(self) -> dict[str, float]:
        b = self.provider.budget
        return {"requests": b.requests.remaining(), "change_tokens": b.change_tokens.remaining()}


class PowerDnsSink:
    name = "powerdns"

    def __init__(self, topology: Topology, provider: Any) -> None:
        self.topology = topology
        self.provider = provider

    def publish(self, table: RoutingTable) -> dict[str, Any]:
        from globalaccel.dns.plan import plan
        from globalaccel.dns.powerdns import compile_powerdns

        current = self.provider.records()
        self.provider.check_owner(current)
        changes = plan(current, compile_powerdns(self.topology, table), self.provider.layout.owns)
        return {"requests": self.provider.apply(changes), "changes": len(changes)}

    def budget(self) -> dict[str, float]:
        return {}
