"""Live answers per country, by source: a Route 53 zone evaluated with Route 53's semantics, or real
ECS queries to the embedded server or PowerDNS from a representative network of each country."""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable, Iterable

import iptocc

from globalaccel.country_grid import ipv4_country_grid
from globalaccel.dns.records import CIDR_TYPE, Record
from globalaccel.dns.route53_cells import collection_name, location_label, pseudo_label
from globalaccel.dns.route53_sim import AliasChainTooDeep, Client, Route53Simulator
from globalaccel.dns.route53_validate import ROUTE53_UNSUPPORTED_COUNTRIES
from globalaccel.findings import Finding
from globalaccel.topology import Topology

# ---- where clients are --------------------------------------------------------------------------------

NETWORKS_PER_COUNTRY = 8  # a country answered differently in one of its networks is caught if it is sampled


@functools.lru_cache(maxsize=1)
def country_networks() -> dict[str, list[str]]:
    """Up to NETWORKS_PER_COUNTRY IPv4 /24s per country, each from a different /16 inside it, most solid
    first (of 16 /24s sampled across a /16, how many map to the country): blocks other geo databases,
    such as PowerDNS's, agree on. Countries with no such /16 fall back to any /24 of theirs; countries
    with no IPv4 space of their own are absent."""
    ranked: dict[str, list[tuple[int, str]]] = {}
    samples = [(a, b, c) for a in range(1, 224) for b in range(256) for c in range(8, 256, 16)]
    codes = iptocc.country_code([f"{a}.{b}.{c}.1" for a, b, c in samples])
    count: dict[tuple[int, int, str], int] = {}
    first: dict[tuple[int, int, str], int] = {}
    for (a, b, c), code in zip(samples, codes, strict=True):
        if code:
            key = (a, b, code)
            count[key] = count.get(key, 0) + 1
            first.setdefault(key, c)
    for (a, b, code), n in count.items():
        ranked.setdefault(code, []).append((-n, f"{a}.{b}.{first[(a, b, code)]}.0/24"))
    found = {code: [net for _, net in sorted(nets)[:NETWORKS_PER_COUNTRY]] for code, nets in ranked.items()}
    for a in range(1, 224):
        addresses = [f"{a}.{b}.{c}.0" for b in range(256) for c in range(256)]
        for address, code in zip(addresses, iptocc.country_code(addresses), strict=True):
            if code and code not in found:
                found[code] = [f"{address}/24"]
    return found


def representative_networks() -> dict[str, str]:
    """The most solid /24 of each country (the first of country_networks)."""
    return {code: nets[0] for code, nets in country_networks().items()}


# ---- answers per country --------------------------------------------------------------------------------

AnswerSource = Callable[[str], set[str] | None]  # country -> addresses answered (None: cannot be asked)


def block_countries(block: str) -> frozenset[str]:
    """Every country the country dataset places anywhere in a CIDR block: for IPv4 each /24 of it (the grid), for
    IPv6 its ends and across it (globalaccel.locate.v6_probes). A block whose text is not a network holds anyone."""
    try:
        network = ipaddress.ip_network(block)
    except ValueError:
        return frozenset({"*"})
    first, last = int(network.network_address), int(network.broadcast_address)
    if network.version == 4:
        grid, codes = ipv4_country_grid()
        return frozenset(c for i in {int(x) for x in grid[first >> 8:(last >> 8) + 1]} for c in codes[i] if c)
    from globalaccel.locate import v6_probes

    found = iptocc.country_code([str(ipaddress.IPv6Address(x)) for x in v6_probes(first, last)])
    return frozenset(str(c) for c in found if c)


def location_countries(records: Iterable[Record], topology: Topology) -> dict[tuple[str, str], frozenset[str]]:
    """(the stack's collection, location label: route53_cells.location_label) -> the countries whose clients its
    live blocks may hold (the country dataset's placement; where it says "anyone", every country of the stack)."""
    collection = collection_name(topology)
    out: dict[tuple[str, str], frozenset[str]] = {}
    for r in records:
        if r.type != CIDR_TYPE:
            continue
        held = frozenset().union(*(block_countries(b) for b in r.values)) if r.values else frozenset()
        out[(collection, pseudo_label(r.name))] = frozenset(topology.countries) if "*" in held else held
    return out


def route53_answers(records: Iterable[Record], topology: Topology) -> tuple[AnswerSource, list[Finding]]:
    """Evaluate a zone's records with Route 53's semantics, every health check failing. Every country is
    resolved here, so the findings returned are complete (fail-open paths included)."""
    records = list(records)
    failing = {r.health_check for r in records if r.health_check}
    # The collection's live blocks decide which countries' clients each location's record may answer; locations
    # are matched without case (the pseudo-records' names are DNS names).
    held = location_countries(records, topology)
    records = [r for r in records if r.type != CIDR_TYPE]
    cidr_countries = {(r.cidr.collection, r.cidr.location): held[(r.cidr.collection, location_label(r.cidr.location))]
                      for r in records if r.cidr is not None and (r.cidr.collection, location_label(r.cidr.location)) in held}
    findings: list[Finding] = []
    for r in records:
        if r.cidr is not None and not r.cidr.is_default and (r.cidr.collection, r.cidr.location) not in cidr_countries:
            findings.append(Finding("cidr_location_unknown", f"{r.name} {r.set_id}", f"IP-based record names location "
                                    f"{r.cidr.location!r} of collection {r.cidr.collection!r}, whose blocks were not read (not the "
                                    "stack's collection, or no such location): judged as answering any client"))
    answered = {(r.cidr.collection, location_label(r.cidr.location)) for r in records if r.cidr is not None}
    for key in sorted(set(held) - answered):
        findings.append(Finding("cidr_location_unanswered", key[1], f"location {key[1]!r} of collection {key[0]!r} holds blocks "
                                "but no IP-based record names it: Route 53 documents no answer for its clients"))
    sim = Route53Simulator(records, failing_checks=failing, cidr_countries=cidr_countries)
    # Every answer Route 53 could give: every record of every routing policy, A and AAAA, and the country
    # placed on any continent (Route 53's own continent for a country may differ from ours, and a record
    # listing it under another continent must not escape the audit).
    possible = Route53Simulator(records, failing_checks=failing, every_possible=True, cidr_countries=cidr_countries)
    for r in records:
        in_tree = r.name == topology_service(topology) or r.name.endswith(".geo." + topology_zone(topology))
        if r.geo is not None and r.geo.is_default and in_tree:
            findings.append(Finding("fail_open_fallback", r.name, f"default ('*') geolocation record {r.set_id!r} answers any "
                                    f"unmatched client, whatever its residency rule"))
    rtypes = ("A", "AAAA") if any(r.type == "AAAA" for r in records) else ("A",)
    placements = _continents_naming(records, topology_service(topology))
    answers: dict[str, set[str] | None] = {}
    for country in sorted(topology.countries):
        if country in ROUTE53_UNSUPPORTED_COUNTRIES:
            answers[country] = None  # Route 53 cannot place a client there: nothing to verify, said as such
            continue
        try:
            sim.resolve(topology.service_name, Client(country, topology.countries[country].continent))  # chains must resolve
            seen: set[str] = set()
            continents = {topology.countries[country].continent}
            continents |= {c for c, named in placements.items() if country in named or "*" in named}
            for continent in sorted(continents):
                for rtype in rtypes:
                    seen |= set(possible.resolve(topology.service_name, Client(country, continent), rtype).addresses)
        except AliasChainTooDeep as exc:
            findings.append(Finding("unresolvable_answer", country, f"the zone cannot be resolved for {country}: {exc}", country))
            answers[country] = None
            continue
        # A fail-open is not a finding by itself: the failover chains fail open by design, to the primary,
        # inside the allowed set. Where it could lead out of the set, `seen` (every possible answer) holds
        # that path and the path checks name it.
        answers[country] = seen
    return (lambda country: answers.get(country)), findings


def route53_current(records: Iterable[Record], topology: Topology, failing: Iterable[str] = ()) -> dict[str, set[str]]:
    """What Route 53 answers each country now, with the health checks in `failing` failing (compiled
    records name a center in place of a check id): one answer per country, not every possible one."""
    sim = Route53Simulator(list(records), failing_checks=failing)
    return {code: set(sim.resolve(topology.service_name, Client(code, country.continent)).addresses)
            for code, country in topology.countries.items() if code not in ROUTE53_UNSUPPORTED_COUNTRIES}


def _continents_naming(records: list[Record], service: str) -> dict[str, set[str]]:
    """Continent -> the countries its branch of the tree has a record for ('*' for a default record):
    a client of a country is resolved on every continent whose branch could answer it, not only on the
    continent our data puts it on (Route 53's own placement may differ)."""
    by_name: dict[str, list[Record]] = {}
    for r in records:
        by_name.setdefault(r.name, []).append(r)
    out: dict[str, set[str]] = {}
    # The continent records sit at the service name, or (routing by network: route53_cells) wherever its IP-based
    # records lead.
    roots = [service, *sorted({r.alias for r in by_name.get(service, []) if r.cidr is not None and r.alias})]
    for r in (r for root in roots for r in by_name.get(root, [])):
        if r.geo is None or not r.geo.continent:
            continue
        named: set[str] = set()
        pending, seen = [r.alias] if r.alias else [], set()
        while pending:
            name = pending.pop()
            if name in seen:
                continue
            seen.add(name)
            for child in by_name.get(name, []):
                if child.geo is not None:
                    named.add(child.geo.country or ("*" if child.geo.is_default else child.geo.continent or "*"))
                if child.alias and child.geo is None:
                    pending.append(child.alias)
        out.setdefault(r.geo.continent, set()).update(named)
    return out


def topology_service(topology: Topology) -> str:
    return topology.service_name.rstrip(".") + "."


def topology_zone(topology: Topology) -> str:
    return topology.zone.rstrip(".") + "."


def ecs_answers(server: str, port: int, topology: Topology, networks: dict[str, list[str]] | None = None) -> AnswerSource:
    """Real DNS queries carrying each of a country's networks as EDNS Client Subnet (default: the country
    dataset's, `country_networks`)."""
    import dns.edns
    import dns.message
    import dns.query

    networks = networks if networks is not None else country_networks()

    def answer(country: str) -> set[str] | None:
        """Every sampled network of the country, A and AAAA: the union of what they are answered."""
        if country not in networks:
            return None
        seen: set[str] = set()
        for network in networks[country]:
            address, prefix = network.split("/")
            for rdtype in ("A", "AAAA"):
                query = dns.message.make_query(topology.service_name, rdtype, use_edns=0,
                                               options=[dns.edns.ECSOption(address, int(prefix))])
                response = dns.query.udp(query, server, port=port, timeout=3)
                seen |= {rr.address for rrset in response.answer for rr in rrset if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA)}
        return seen

    return answer


def cell_networks(topology: Topology, per_country: int = 16) -> dict[str, list[str]] | None:
    """With a network database (the stack's `cells.networks`): per country, networks the database places in
    its cells, the principal cell's first, then one per other cell (up to `per_country`), IPv6 among them.
    None without one: the country dataset's networks are what the server locates by."""
    if topology.client_networks is None:
        return None
    from globalaccel.locate import locator_for

    located = locator_for(topology)
    samples = located.sample_networks(1) if hasattr(located, "sample_networks") else {}
    by_cell: dict[str, list[str]] = {}
    for location, nets in samples.items():
        if location.cell is not None and len(location.countries) == 1:
            by_cell.setdefault(location.cell, []).extend(nets)
    out: dict[str, list[str]] = {}
    for code in topology.countries:
        principal = topology.principal_cell[code]
        ordered = [principal, *sorted(c.id for c in topology.cells if c.country == code and c.id != principal)]
        nets = [n for cid in ordered for n in by_cell.get(cid, [])[:1]][:per_country]
        if nets:
            out[code] = nets
    return out


def powerdns_ecs_answers(server: str, port: int, topology: Topology, geo_probe: str) -> tuple[dict[str, set[str] | None], dict[str, str]]:
    """For each country's representative network, ask PowerDNS with ECS which country it places the
    network in (the `countryCode()` probe record) and what it answers for the service name."""
    import dns.edns
    import dns.message
    import dns.query

    def ask(name: str, rdtype: str, network: str) -> dns.message.Message:
        address, prefix = network.split("/")
        query = dns.message.make_query(name, rdtype, use_edns=0, options=[dns.edns.ECSOption(address, int(prefix))])
        return dns.query.udp(query, server, port=port, timeout=3)

    answers: dict[str, set[str] | None] = {}
    placed: dict[str, str] = {}
    for code in sorted(topology.countries):
        networks = country_networks().get(code, [])
        if not networks:
            answers[code] = None
            continue
        # Each sampled network PowerDNS places in this country is asked; the others are not a test of it.
        seen: set[str] | None = None
        elsewhere = []
        for network in networks:
            txt = [b"".join(rr.strings).decode() for rrset in ask(geo_probe, "TXT", network).answer for rr in rrset]
            where = (txt[0] if txt else "").upper()
            if where != code:
                elsewhere.append(f"{network}:{where or '?'}")
                continue
            seen = seen or set()
            for rdtype in ("A", "AAAA"):
                response = ask(topology.service_name, rdtype, network)
                seen |= {rr.address for rrset in response.answer for rr in rrset if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA)}
        answers[code] = seen
        placed[code] = code if seen is not None else (elsewhere[0].split(":")[1] if elsewhere else "")
        placed[code] = placed[code] if placed[code] in topology.countries else ""
    return answers, placed


