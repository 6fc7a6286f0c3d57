"""Compliance audit: prove from live state where every country's traffic and data go.

What is checked, each against globalaccel.residency (the one implementation of the rules):
- answers: per country, the addresses a client there is given, from the source (the compiled plan,
  Route 53 through boto3, PowerDNS through its API, or the embedded server through real ECS queries);
  every answered edge must be one the routing table gives that country, whose center its rule allows,
  and a country the table fails closed must get nothing. Route 53 zones are read whole (not only our
  records) and evaluated with Route 53's semantics with every health check failing, so a fallback
  record that would fail open is found.
- what-if: every single and double center failure, and "all edges of country X down" for every strict
  country: every answer stays compliant or the country fails closed. Who loses service is reported.
- data stores: S3 buckets (region, residency tags, replication targets, public access, encryption,
  versioning) and Kubernetes volumes/stateful workloads from manifests.
- decision log: the hash chain end to end, and that no logged route ever broke residency.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import iptocc

from globalaccel.dns.records import Record
from globalaccel.dns.route53_compile import compile_route53
from globalaccel.dns.route53_sim import Client, Route53Simulator
from globalaccel.plan import compute_plan
from globalaccel.probe.decisionlog import verify_chain
from globalaccel.residency import Mode
from globalaccel.routing import Health, RoutingTable
from globalaccel.topology import Topology


@dataclass(frozen=True)
class Finding:
    kind: str  # out_of_region_answer | answer_not_in_table | fail_closed_violated | fail_open_fallback | bucket_* | k8s_* | log_*
    subject: str  # country code, bucket, resource or log line
    evidence: str


@dataclass
class CountryResult:
    country: str
    rule: str
    mode: str
    center: str | None
    answers: list[str]
    status: str  # served | fail_closed | not_locatable
    allowed_centers: list[str]


@dataclass
class Scenario:
    name: str
    down_centers: list[str] = field(default_factory=list)
    down_edges_of: str | None = None
    countries_losing_service: list[str] = field(default_factory=list)
    violations: int = 0


@dataclass
class AuditReport:
    stack: str
    source: str
    countries: int
    results: list[CountryResult]
    scenarios: list[Scenario]
    violations: list[Finding]
    data_stores: list[dict[str, Any]]
    decision_log: dict[str, Any] | None
    table_hash: str
    notes: list[str] = field(default_factory=list)  # information for the reader, not violations

    def to_json(self) -> dict[str, Any]:
        return {
            "stack": self.stack, "source": self.source, "countries": self.countries, "table_hash": self.table_hash,
            "compliant": not self.violations,
            "summary": {"served": sum(r.status == "served" for r in self.results),
                        "fail_closed": sum(r.status == "fail_closed" for r in self.results),
                        "not_locatable": sum(r.status == "not_locatable" for r in self.results)},
            "results": [asdict(r) for r in self.results], "scenarios": [asdict(s) for s in self.scenarios],
            "violations": [asdict(v) for v in self.violations], "data_stores": self.data_stores, "decision_log": self.decision_log,
            "notes": self.notes,
        }


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
    findings: list[Finding] = []
    for r in records:
        in_tree = r.name == topology_service(topology) or r.name.endswith(".geo." + topology_zone(topology))
        if r.geo is not None and r.geo.is_default and in_tree:
            findings.append(Finding("fail_open_fallback", r.name, f"default ('*') geolocation record {r.set_id!r} answers any "
                                    f"unmatched client, whatever its residency rule"))
    answers: dict[str, set[str] | None] = {}
    for country in sorted(topology.countries):
        res = sim.resolve(topology.service_name, Client(country, topology.countries[country].continent))
        if res.failed_open:
            findings.append(Finding("fail_open_fallback", country, "with every health check failing Route 53 answers anyway: "
                                    + " -> ".join(res.path)))
        answers[country] = set(res.addresses)
    return (lambda country: answers.get(country, set())), findings


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


# ---- the checks ------------------------------------------------------------------------------------------

Expected = Mapping[str, tuple[str | None, set[str]]]  # country -> (center, edge addresses) per the routing table


def expected_from_table(table: RoutingTable, topology: Topology) -> dict[str, tuple[str | None, set[str]]]:
    out: dict[str, tuple[str | None, set[str]]] = {}
    for code in topology.countries:
        route = table.country_route(code)
        out[code] = (route.center, {a.address for a in route.answers}) if route is not None else (None, set())
    return out


def expected_from_log(path: Path, topology: Topology) -> dict[str, tuple[str | None, set[str]]]:
    """The live table, replayed from the decision log (each entry holds the routes that changed)."""
    entries, _ = verify_chain(path)
    routes: dict[str, Any] = {}
    for entry in entries:
        routes.update(entry.get("routes") or {})
    edges = topology.edge_by_id
    return {code: (routes[code]["center"], {edges[e].address for e in routes[code]["edges"] if e in edges}) if code in routes
            else (None, set()) for code in topology.countries}


def check_answers(topology: Topology, expected: Expected, answer: AnswerSource) -> tuple[list[CountryResult], list[Finding]]:
    edge_by_address = {e.address: e for e in topology.edges}
    results: list[CountryResult] = []
    findings: list[Finding] = []
    for code in sorted(topology.countries):
        rule = topology.residency.rule_for(code)
        center, addresses = expected.get(code, (None, set()))
        got = answer(code)
        allowed = list(topology.residency.permitted_centers(code, topology.center_ids))
        if got is None:
            results.append(CountryResult(code, rule.name, rule.mode.value, center, [], "not_locatable", allowed))
            continue
        status = "served" if got else "fail_closed"
        results.append(CountryResult(code, rule.name, rule.mode.value, center, sorted(got), status, allowed))
        if center is not None and not topology.residency.allows(code, center):
            findings.append(Finding("out_of_region_answer", code, f"table routes {code} to {center}, which rule {rule.name!r} forbids"))
        if center is None and got:
            findings.append(Finding("fail_closed_violated", code, f"{code} must get no answer (rule {rule.name!r}) but got {sorted(got)}"))
            continue
        stray = got - addresses
        if stray:
            names = [edge_by_address[a].id if a in edge_by_address else a for a in sorted(stray)]
            kind = "out_of_region_answer" if rule.mode is Mode.STRICT else "answer_not_in_table"
            findings.append(Finding(kind, code, f"answered {names}, which the routing table does not give {code} "
                                    f"(its center {center}; allowed {allowed})"))
    return results, findings


def what_if(topology: Topology, include_edge_scenarios: bool = True) -> tuple[list[Scenario], list[Finding]]:
    """Every single and double center failure, and all edges of each strict country down: each table
    is compiled to Route 53 records and every country resolved with every health check failing."""
    scenarios: list[Scenario] = []
    findings: list[Finding] = []
    all_edges = frozenset(e.id for e in topology.edges)
    cases: list[tuple[str, frozenset[str], frozenset[str], str | None]] = []
    for n in (1, 2):
        for down in itertools.combinations(topology.center_ids, n):
            cases.append((f"centers down: {', '.join(down)}", all_edges, frozenset(topology.center_ids) - set(down), None))
    if include_edge_scenarios:
        for code in topology.residency.strict_countries(topology.countries):
            mine = frozenset(e.id for e in topology.edges if e.country == code)
            if mine:
                cases.append((f"all edges of {code} down", all_edges - mine, frozenset(topology.center_ids), code))
    baseline, _ = compute_plan(topology)
    served_before = {c for c in topology.countries if (r := baseline.country_route(c)) is not None and r.center is not None}
    for name, edges, centers, country in cases:
        table, _ = compute_plan(topology, Health(edges, centers))
        answer, fallbacks = route53_answers(compile_route53(topology, table), topology)
        results, problems = check_answers(topology, expected_from_table(table, topology), answer)
        problems += fallbacks
        for p in problems:
            findings.append(Finding(p.kind, p.subject, f"[{name}] {p.evidence}"))
        losing = sorted(r.country for r in results if r.status == "fail_closed" and r.country in served_before)
        down_centers = sorted(set(topology.center_ids) - centers)
        scenarios.append(Scenario(name, down_centers, country, losing, len(problems)))
    return scenarios, findings


def check_buckets(s3: Any, topology: Topology) -> tuple[list[dict[str, Any]], list[Finding]]:
    """Every bucket tagged as a globalaccel data store: in its center's region, replicated only to
    regions of centers allowed for every country it may hold, not public, encrypted, versioned."""
    region_center = {c.region: c.id for c in topology.centers}
    stores: list[dict[str, Any]] = []
    findings: list[Finding] = []
    for bucket in s3.list_buckets().get("Buckets", []):
        name = bucket["Name"]
        try:
            tags = {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=name).get("TagSet", [])}
        except s3.exceptions.ClientError:
            tags = {}
        center = tags.get("globalaccel:center")
        if center is None:
            continue  # not one of ours
        region = s3.get_bucket_location(Bucket=name).get("LocationConstraint") or "us-east-1"
        record: dict[str, Any] = {"bucket": name, "center": center, "region": region, "tags": tags, "problems": []}

        def bad(kind: str, evidence: str, record: dict[str, Any] = record, name: str = name) -> None:
            record["problems"].append(kind)
            findings.append(Finding(kind, name, evidence))

        home = topology.center_by_id.get(center)
        if home is None:
            bad("bucket_unknown_center", f"tagged for center {center!r}, not in the stack")
            stores.append(record)
            continue
        if region != home.region:
            bad("bucket_wrong_region", f"in {region}, but its center {center} is in {home.region}")
        if tags.get("globalaccel:residency-zone") != home.region:
            bad("bucket_untagged", f"residency-zone tag is {tags.get('globalaccel:residency-zone')!r}, expected {home.region!r}")
        holders = [c for c in topology.countries if topology.residency.allows(c, center)]
        try:
            rules = s3.get_bucket_replication(Bucket=name)["ReplicationConfiguration"]["Rules"]
        except s3.exceptions.ClientError:
            rules = []
        for rule in rules:
            target = rule.get("Destination", {}).get("Bucket", "").split(":")[-1]
            try:
                target_region = s3.get_bucket_location(Bucket=target).get("LocationConstraint") or "us-east-1"
            except s3.exceptions.ClientError:
                target_region = "unknown"
            target_center = region_center.get(target_region)
            refused = [c for c in holders if target_center is None or not topology.residency.allows(c, target_center)]
            if refused:
                bad("bucket_replication_out_of_region", f"replicates to {target} in {target_region}; countries whose data it may hold "
                    f"but whose rules forbid that region: {refused[:12]}{'...' if len(refused) > 12 else ''}")
        try:
            block = s3.get_public_access_block(Bucket=name)["PublicAccessBlockConfiguration"]
            if not all(block.get(k) for k in ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")):
                bad("bucket_public", f"public access block incomplete: {block}")
        except s3.exceptions.ClientError:
            bad("bucket_public", "no public access block")
        try:
            s3.get_bucket_encryption(Bucket=name)
        except s3.exceptions.ClientError:
            bad("bucket_unencrypted", "no default encryption")
        if s3.get_bucket_versioning(Bucket=name).get("Status") != "Enabled":
            bad("bucket_unversioned", "versioning is not enabled")
        stores.append(record)
    return stores, findings


REGION_KEY = "topology.kubernetes.io/region"


def allowed_regions(spec: Any, kind: str) -> set[str] | None:
    """The regions a PersistentVolume or a StatefulSet's pods can be placed in, from its *required*
    placement only (preferred affinity is a wish, not a constraint). None = unconstrained.
    nodeSelectorTerms are alternatives: a single term without a region constraint frees it."""
    if not isinstance(spec, dict):
        return None
    if kind == "PersistentVolume":
        terms = ((spec.get("nodeAffinity") or {}).get("required") or {}).get("nodeSelectorTerms")
        selector: dict[str, Any] = {}
    else:
        pod = ((spec.get("template") or {}).get("spec")) or {}
        selector = pod.get("nodeSelector") or {}
        terms = (((pod.get("affinity") or {}).get("nodeAffinity") or {})
                 .get("requiredDuringSchedulingIgnoredDuringExecution") or {}).get("nodeSelectorTerms")
    from_terms: set[str] | None = None
    if terms:
        from_terms = set()
        for term in terms:
            pinned = [set(e.get("values", [])) for e in term.get("matchExpressions", []) or []
                      if e.get("key") == REGION_KEY and e.get("operator") == "In"]
            if not pinned:
                from_terms = None  # this alternative allows any region
                break
            from_terms |= set.intersection(*pinned)
    from_selector = {str(selector[REGION_KEY])} if REGION_KEY in selector else None
    if from_terms is None:
        return from_selector
    return from_terms if from_selector is None else from_terms & from_selector


def check_manifests(folder: Path, topology: Topology) -> tuple[list[dict[str, Any]], list[Finding]]:
    """PersistentVolumes and StatefulSets from rendered manifests: each must name its center and be
    pinned to that center's region, and to no other."""
    import yaml

    stores: list[dict[str, Any]] = []
    findings: list[Finding] = []
    for path in sorted(folder.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not isinstance(doc, dict) or doc.get("kind") not in ("PersistentVolume", "StatefulSet"):
                continue
            meta = doc.get("metadata", {}) or {}
            center = (meta.get("labels", {}) or {}).get("globalaccel/center")
            name = f"{doc['kind']}/{meta.get('name')}"
            home = topology.center_by_id.get(center or "")
            allowed = allowed_regions(doc.get("spec", {}), doc["kind"])
            regions = sorted(allowed) if allowed is not None else []
            stores.append({"resource": name, "file": str(path), "center": center, "region": ", ".join(regions) or "-"})
            if home is None:
                findings.append(Finding("k8s_unplaced", name, f"{path.name}: no globalaccel/center label naming a center of the stack"))
            elif allowed is None:
                findings.append(Finding("k8s_unplaced", name, f"{path.name}: not required to stay in a region ({REGION_KEY})"))
            elif regions != [home.region]:
                findings.append(Finding("k8s_wrong_region", name,
                                        f"{path.name}: pinned to {regions}, its center {center} is in {home.region}"))
    return stores, findings


def check_decision_log(path: Path, topology: Topology) -> tuple[dict[str, Any], list[Finding]]:
    entries, problems = verify_chain(path)
    findings = [Finding("log_tampered", f"{path.name}:{p.line}", p.message) for p in problems]
    for number, entry in enumerate(entries, start=1):
        for cell, route in (entry.get("routes") or {}).items():
            center = route.get("center")
            country = route.get("country", cell)
            if center is not None and country in topology.countries and not topology.residency.allows(country, center):
                findings.append(Finding("log_residency", f"{path.name} entry {number}",
                                        f"generation {entry.get('generation')} routed {country} to {center}"))
    return {"path": str(path), "entries": len(entries), "chain_intact": not problems}, findings


def summarise_centers(results: Iterable[CountryResult]) -> Mapping[str, int]:
    out: dict[str, int] = {}
    for r in results:
        out[r.center or "(none)"] = out.get(r.center or "(none)", 0) + 1
    return out
