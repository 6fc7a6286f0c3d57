"""Compliance audit of a live Route 53 zone (moto, extended with the CIDR collections it lacks by tests/moto_cidr.py):
the zone the loop publishes audits clean; each tampering, with records or with the collection, is found. Apart
from tests/test_audit.py so that the test runner can spread the two files over its workers."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from globalaccel.audit.sources import country_networks
from tests.services import moto_server
from tests.test_audit import audit, synced_zone
from tests.test_dns_route53 import PROD, prod_cells


def test_route53_zone_audits_clean_then_each_tampering_is_found() -> None:
    with moto_server() as url:  # its own server: the audit finds the zone by name
        client, zone = synced_zone(url)
        code, report, err = audit("--stack", "prod", "--source", "route53", "--endpoint-url", url, "--what-if")
        assert code == 0 and report["violations"] == [], (err, report.get("violations"))
        # 1. An out-of-region answer: Germany (strict: eu-central-1, us-east-1) given a Singapore edge's address
        #    for ap-southeast-1 (the address names the center the edge forwards to).
        stranger = next(e for e in PROD.edges if e.country == "SG")
        # 3. An edge where the EEA rule forbids it on the path (never_transit): a Belarusian edge's address for
        #    eu-central-1. (The catalog places no edge in Russia: nobody may be served there.)
        belarusian = next(e for e in PROD.edges if e.country == "BY")
        seeded = (("DE-stranger", stranger.address_for("ap-southeast-1")), ("DE-belarusian", belarusian.address_for("eu-central-1")))
        for set_id, value in seeded:
            client.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": [{"Action": "CREATE", "ResourceRecordSet": {
                "Name": f"de.cc.{PROD.zone}", "Type": "A", "SetIdentifier": set_id, "Weight": 255, "TTL": 60,
                "ResourceRecords": [{"Value": value}]}}]})
        # 2. A fallback that fails open: a default geolocation record where the continents are (the service name
        #    routes by network; its default leads to world.geo, the country tree).
        client.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": [{"Action": "CREATE", "ResourceRecordSet": {
            "Name": f"world.geo.{PROD.zone}", "Type": "A", "SetIdentifier": "anyone", "GeoLocation": {"CountryCode": "*"}, "TTL": 60,
            "ResourceRecords": [{"Value": stranger.address_for("ap-southeast-1")}]}}]})
        code, report, _ = audit("--stack", "prod", "--source", "route53", "--endpoint-url", url)
    assert code == 1
    found = {(v["kind"], v["subject"]) for v in report["violations"]}
    assert ("out_of_region_answer", "DE") in found
    assert any(kind == "fail_open_fallback" for kind, _ in found)
    assert any(v["kind"] == "out_of_region_answer" and stranger.id in v["evidence"] and "ap-southeast-1" in v["evidence"]
               for v in report["violations"])
    assert any(v["kind"] == "edge_jurisdiction" and v["subject"] == "DE" and "BY" in v["evidence"] for v in report["violations"])


def test_route53_cidr_tampering_is_found() -> None:
    """The collection and the IP-based records are live state too (moto + tests/moto_cidr.py, storage only):
    1. a block of China's address space slipped into a US cell's location: Chinese clients there would get
       that cell's chain, and China's rule serves nobody;
    2. a location named like a Nigerian cell's but for case, holding a Saudi block, its record leading to that
       cell's chain;
    3. the default location's record pointed at a Nigerian cell's chain instead of the country tree: every
       client outside the blocks, Germany's too, would get it."""
    with moto_server() as url:
        client, zone = synced_zone(url)
        code, report, err = audit("--stack", "prod", "--source", "route53", "--endpoint-url", url)
        assert code == 0 and report["violations"] == [], (err, report.get("violations"))
        (collection,) = client.list_cidr_collections()["CidrCollections"]
        us_cell = next(c for c in prod_cells().cells if c.startswith("us-"))
        cn_block = country_networks()["CN"][0]
        client.change_cidr_collection(Id=collection["Id"], Changes=[{"LocationName": us_cell, "Action": "PUT", "CidrList": [cn_block]}])
        code, report, _ = audit("--stack", "prod", "--source", "route53", "--endpoint-url", url)
        assert code == 1
        assert {v["subject"] for v in report["violations"]} == {"CN"}, report["violations"]
        assert ("record_drift", f"{us_cell}._cidr.{PROD.zone}. CIDR") in {(d["kind"], d["subject"]) for d in report["drift"]}
        client.change_cidr_collection(Id=collection["Id"], Changes=[{"LocationName": us_cell, "Action": "DELETE_IF_EXISTS",
                                                                      "CidrList": [cn_block]}])
        # 3. A location whose name differs from a real one only in case (Route 53's names are case-sensitive),
        #    holding a Saudi block, and a record naming it that leads to the Nigerian cell's chain.
        ng_cell = next(c for c in prod_cells().cells if c.startswith("ng-"))
        twin, sa_block = ng_cell.upper(), country_networks()["SA"][0]
        client.change_cidr_collection(Id=collection["Id"], Changes=[{"LocationName": twin, "Action": "PUT", "CidrList": [sa_block]}])
        twin_record = {"Name": PROD.service_name, "Type": "A", "SetIdentifier": "twin",
                       "CidrRoutingConfig": {"CollectionId": collection["Id"], "LocationName": twin},
                       "AliasTarget": {"HostedZoneId": zone.split("/")[-1], "DNSName": f"{ng_cell}.cell.{PROD.zone}.",
                                       "EvaluateTargetHealth": False}}
        client.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": [{"Action": "CREATE",
                                                                                        "ResourceRecordSet": twin_record}]})
        code, report, _ = audit("--stack", "prod", "--source", "route53", "--endpoint-url", url)
        assert code == 1
        assert "SA" in {v["subject"] for v in report["violations"]}, report["violations"]
        assert any(d["kind"] == "record_drift" and d["subject"].startswith(f"{ng_cell}.") and "._cidr." in d["subject"]
                   and d["subject"] != f"{ng_cell}._cidr.{PROD.zone}. CIDR" for d in report["drift"]), report["drift"]
        client.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": [{"Action": "DELETE", "ResourceRecordSet": next(
            r for page in client.get_paginator("list_resource_record_sets").paginate(HostedZoneId=zone)
            for r in page["ResourceRecordSets"] if r.get("SetIdentifier") == "twin")}]})
        client.change_cidr_collection(Id=collection["Id"], Changes=[{"LocationName": twin, "Action": "DELETE_IF_EXISTS",
                                                                      "CidrList": [sa_block]}])
        # 4. The default location's record pointed at the Nigerian cell's chain.
        default = next(r for page in client.get_paginator("list_resource_record_sets").paginate(HostedZoneId=zone)
                       for r in page["ResourceRecordSets"] if r.get("SetIdentifier") == "cidr-default")
        default["AliasTarget"]["DNSName"] = f"{ng_cell}.cell.{PROD.zone}."
        client.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": [{"Action": "UPSERT", "ResourceRecordSet": default}]})
        code, report, _ = audit("--stack", "prod", "--source", "route53", "--endpoint-url", url)
    assert code == 1
    assert ("out_of_region_answer", "DE") in {(v["kind"], v["subject"]) for v in report["violations"]}


def test_route53_lost_service_is_drift_and_coverage_decides_whether_it_may_say_compliant(tmp_path: Path) -> None:
    """A deleted country record: France (served by the table) gets nothing. That is lost service, reported
    as drift with its own word, never "fail_closed"; no answer left the allowed set, so residency holds.
    Route 53 cannot place clients in BV, CX, EH, HM: they are not verified, and an auditor who requires
    every last client verified gets NOT VERIFIED (exit 3), never COMPLIANT."""
    out = tmp_path / "report"
    with moto_server() as url:
        client, zone = synced_zone(url)
        pages = client.get_paginator("list_resource_record_sets").paginate(HostedZoneId=zone)
        alias = next(r for page in pages for r in page["ResourceRecordSets"] if r.get("SetIdentifier") == "EU-FR")
        client.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": [{"Action": "DELETE", "ResourceRecordSet": alias}]})
        # And one of Germany's leaf records edited in place: a TTL of an hour, a different weight.
        pages = client.get_paginator("list_resource_record_sets").paginate(HostedZoneId=zone)
        leaf = next(r for page in pages for r in page["ResourceRecordSets"]
                    if r["Name"].split(".")[0] in ("de", "de-eu-central-1") and "Weight" in r)
        client.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": [
            {"Action": "UPSERT", "ResourceRecordSet": {**leaf, "TTL": 3600, "Weight": 7}}]})
        code, report, err = audit("--stack", "prod", "--source", "route53", "--endpoint-url", url, "--out", str(out))
        strict, strict_report, _ = audit("--stack", "prod", "--source", "route53", "--endpoint-url", url, "--min-coverage", "1.0")
    assert code == 0 and report["verdict"] == "COMPLIANT", (err, report.get("violations"))
    fr = next(r for r in report["results"] if r["country"] == "FR")
    assert fr["status"] == "lost_service"
    drift = {(d["kind"], d["subject"]): d["evidence"] for d in report["drift"]}
    assert ("lost_service", "FR") in drift and ("record_drift", f"eu.geo.{PROD.zone}. A EU-FR") in drift
    edited = drift[("record_drift", f"{leaf['Name']} A {leaf['SetIdentifier']}")]
    assert "ttl 3600 weight 7" in edited and "ttl 60" in edited
    assert len(drift) == 3  # nothing else differs from the table
    assert "the table computed from the stack's files" in " ".join(report["notes"])
    assert set(report["coverage"]["unverified"]) == {"BV", "CX", "EH", "HM"}
    assert strict == 3 and strict_report["verdict"] == "NOT VERIFIED"
    provenance = report["provenance"]
    assert provenance["rules_hash"] == PROD.residency.rules_hash and "residency.yaml" in provenance["input_sha256"]
    # The map draws where answers went: every country is on it, France marked as lost service, Russia
    # hatched (its rule refuses service), Germany filled with the colour of the center its answers reach.
    svg = (out / "map.svg").read_text()
    marks = re.findall(r'data-country="([A-Z]{2})"', svg)
    assert sorted(marks) == sorted(PROD.countries)
    fr = re.search(r'<[^<>]*stroke="([^"]+)"[^<>]*data-country="FR"', svg)
    assert fr is not None and fr.group(1) == "#ff7f0e"
    assert re.search(r'fill="url\(#closed\)"[^<>]*data-country="RU"', svg)
    assert re.search(r'data-country="DE"><title>DE: answers go to eu-central-1 \(may fail over to: us-east-1\)</title>', svg)
    body = {k: v for k, v in report.items() if k != "report_sha256"}
    assert hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest() == report["report_sha256"]
