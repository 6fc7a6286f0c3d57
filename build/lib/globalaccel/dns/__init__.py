"""DNS: render a RoutingTable into records per backend, plan minimal changes, apply them.

Shaped after ExternalDNS: a backend-neutral `Record`, a `Plan` that diffs desired against current
records the controller owns, and providers exposing `records()` and `apply(changes)`.
"""
