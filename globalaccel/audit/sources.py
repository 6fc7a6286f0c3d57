"""Live answers per country, by source: a Route 53 zone evaluated with Route 53's semantics, or real
ECS queries to the embedded server or PowerDNS from a representative network of each country."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable

import iptocc

from globalaccel.dns.records import Record
from globalaccel.dns.route53_sim import Client, Route53Simulator
from globalaccel.dns.route53_validate import ROUTE53_UNSUPPORTED_COUNTRIES
from globalaccel.findings import Finding
from globalaccel.topology import CONTINENTS, Topology

# ---- where clients are --------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def representative_networks() -> dict[str, str]:
    """One IPv4 /24 per country, from the /16 most solidly inside it: of 16 /24s sampled across each
    /16, the one where most map to the country (a long-held block, which other geo databases, such as
    PowerDNS's, agree on). Countries with no such /16 fall back to any /24 of theirs; countries with no
    IPv4 space of their own are absent."""
    best: dict[str, tuple[int, str]] = {}
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
        if n > best.get(code, (0, ""))[0]:
            best[code] = (n, f"{a}.{b}.{first[(a, b, code)]}.0/24")
    found = {code: network for code, (_, network) in best.items()}
    for a in range(1, 224):
        addresses = [f"{a}.{b}.{c}.0" for b in range(256) for c in range(256)]
        for address, code in zip(addresses, iptocc.country_code(addresses), strict=True):
            if code and code not in found:
                found[code] = f"{address}/24"
    return found


# ---- answers per country --------------------------------------------------------------------------------

AnswerSource = Callable[[str], set[str] | None]  # country -> addresses answered (None: cannot be asked)


def route53_answers(records: Iterable[Record], topology: Topology) -> tuple[AnswerSource, list[Finding]]:
    """Evaluate a zone's records with Route 53's semantics, every health check failing. Every country is
    resolved here, so the findings returned are complete (fail-open paths included)."""
    records = list(records)
    failing = {r.health_check for r in records if r.health_check}
    sim = Route53Simulator(records, failing_checks=failing)
    # Every answer Route 53 could give: every record of every routing policy, A and AAAA, and the country
    # placed on any continent (Route 53's own continent for a country may differ from ours, and a record
    # listing it under another continent must not escape the audit).
    possible = Route53Simulator(records, failing_checks=failing, every_possible=True)
    findings: list[Finding] = []
    for r in records:
        in_tree = r.name == topology_service(topology) or r.name.endswith(".geo." + topology_zone(topology))
        if r.geo is not None and r.geo.is_default and in_tree:
            findings.append(Finding("fail_open_fallback", r.name, f"default ('*') geolocation record {r.set_id!r} answers any "
                                    f"unmatched client, whatever its residency rule"))
    answers: dict[str, set[str] | None] = {}
    for country in sorted(topology.countries):
        if country in ROUTE53_UNSUPPORTED_COUNTRIES:
            answers[country] = None  # Route 53 cannot place a client there: nothing to verify, said as such
            continue
        res = sim.resolve(topology.service_name, Client(country, topology.countries[country].continent))
        if res.failed_open:
            findings.append(Finding("fail_open_fallback", country, "with every health check failing Route 53 answers anyway: "
                                    + " -> ".join(res.path)))
        seen: set[str] = set()
        for continent in CONTINENTS:
            for rtype in ("A", "AAAA"):
                seen |= set(possible.resolve(topology.service_name, Client(country, continent), rtype).addresses)
        answers[country] = seen
    return (lambda country: answers.get(country)), findings


def topology_service(topology: Topology) -> str:
    return topology.service_name.rstrip(".") + "."


def topology_zone(topology: Topology) -> str:
    return topology.zone.rstrip(".") + "."


def ecs_answers(server: str, port: int, topology: Topology) -> AnswerSource:
    """Real DNS queries carrying each country's representative network as EDNS Client Subnet."""
    import dns.edns
    import dns.message
    import dns.query

    networks = representative_networks()

    def answer(country: str) -> set[str] | None:
        network = networks.get(country)
        if network is None:
            return None
        address, prefix = network.split("/")
        query = dns.message.make_query(topology.service_name, "A", use_edns=0, options=[dns.edns.ECSOption(address, int(prefix))])
        response = dns.query.udp(query, server, port=port, timeout=3)
        return {rr.address for rrset in response.answer for rr in rrset if rrset.rdtype == dns.rdatatype.A}

    return answer


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
        network = representative_networks().get(code)
        if network is None:
            answers[code] = None
            continue
        txt = [b"".join(rr.strings).decode() for rrset in ask(geo_probe, "TXT", network).answer for rr in rrset]
        where = (txt[0] if txt else "").upper()
        placed[code] = where if where in topology.countries else ""
        response = ask(topology.service_name, "A", network)
        answers[code] = {rr.address for rrset in response.answer for rr in rrset if rrset.rdtype == dns.rdatatype.A}
    return answers, placed


