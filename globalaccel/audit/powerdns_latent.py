"""What a live PowerDNS zone may answer, not only what it answers now.

A country's LUA record holds its whole failover chain; which path PowerDNS answers depends on the health
it sees at the moment of the query. Asking with ECS tests the path answered now; an unlawful path further
down a chain (or behind a hand-written condition) would only show once a center fails. So every address
written in a country's record is judged as a path for that country, and the dispatch record at the
service name may name no country's record by hand (the compiler writes `c..'.cc.<zone>'` and `none`
only). A country of several cells leads to its cells' records (`<cell>.cc.<zone>`, judged as paths for the
cell's country), and its own record may name no other country's cell. Route 53's audit does the same by
resolving every answer its tree can give.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from globalaccel.dns.powerdns import LuaValidationError, PowerDnsLayout, lua_code
from globalaccel.dns.records import Record
from globalaccel.findings import Finding
from globalaccel.topology import Topology

_QUOTED = re.compile(r"'([^']*)'")


def _literals(record: Record) -> list[str]:
    """The quoted literals of a LUA record's code, or a plain record's values."""
    if record.type != "LUA":
        return list(record.values)
    out: list[str] = []
    for content in record.values:
        try:
            out += _QUOTED.findall(lua_code(content)[1])
        except LuaValidationError:
            out.append(content)
    return out


def latent_paths(topology: Topology, records: Iterable[Record], layout: PowerDnsLayout,
                 health_addresses: Iterable[str]) -> list[Finding]:
    health = {str(ipaddress.ip_address(a)) for a in health_addresses}
    paths, residency = topology.path_by_address, topology.residency
    suffix = "." + layout.countries
    parent = layout.countries.rstrip(".")
    cell_country = {c.id: c.country for c in topology.cells}
    out: list[Finding] = []
    for record in records:
        if record.name == layout.service:
            named = [x for x in _literals(record) if x.endswith(layout.countries.rstrip(".")) and x != layout.nowhere.rstrip(".")
                     and not x.startswith(".")]
            for name in named:
                out.append(Finding("dispatch_tampered", "dispatch", f"the service name's record names {name} by hand: the "
                                   "compiler only writes a client's own country's name or none"))
            continue
        if not record.name.endswith(suffix):
            continue
        label = record.name[: -len(suffix)]
        # A country's own record (`de`), or a cell's (`de-2950159`, judged for the cell's country).
        code = label.upper() if len(label) == 2 else cell_country.get(label, "none")
        if record.name == layout.nowhere:
            code = "none"
        literals = _literals(record)
        for literal in literals:
            if literal == "." + parent:
                continue  # the suffix the nearest-cell snippet appends to the cell it picks
            target = literal[: -len(parent) - 1] if literal.endswith("." + parent) else literal
            if (target in cell_country and cell_country[target] != code) or (literal.endswith("." + parent) and target not in cell_country
                                                                          and literal != layout.nowhere.rstrip(".")):
                out.append(Finding("dispatch_tampered", record.name, f"{record.name} names {literal}, which is not a cell of {code}: "
                                   "the compiler only sends a country's clients to its own cells", code))
        for literal in literals:
            try:
                address = str(ipaddress.ip_address(literal))
            except ValueError:
                continue  # the health URL, a name: not an answer
            if address in health:
                continue
            if code == "none" or code not in topology.countries:
                out.append(Finding("latent_out_of_region_answer", record.name, f"{address} in {record.type} record {record.name}, which "
                                   "answers clients served nowhere (or not located): they must get no address"))
                continue
            path = paths.get(address)
            if path is None:
                out.append(Finding("latent_out_of_region_answer", code, f"{address} in {record.name} is no edge's address for any center",
                                   code))
                continue
            edge, center = path
            why = residency.path_violation(code, edge.country, edge.role, center)
            if why is not None:
                out.append(Finding("latent_out_of_region_answer", code, f"{record.name} may answer {address} -> {edge.id} -> {center} "
                                   f"(under some health state): {why}", code))
    return out
