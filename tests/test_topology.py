"""Loading the shipped stacks, and every kind of bad input named by file, line and field."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from globalaccel.errors import ConfigError
from globalaccel.topology import load_stack
from tests.conftest import STACKS


def test_prod_stack_has_the_promised_world() -> None:
    topo = load_stack("prod", STACKS)
    assert [c.id for c in topo.centers] == ["us-east-1", "eu-central-1", "me-central-1", "ap-southeast-1"]
    assert len(topo.edges) >= 3000
    assert len({e.country for e in topo.edges}) >= 190
    assert len(topo.countries) == 250  # every assigned ISO 3166-1 alpha-2 code, and Kosovo (XK)
    assert len({e.address for e in topo.edges}) == len(topo.edges)
    assert all(e.address.startswith("198.1") for e in topo.edges)  # RFC 2544 placeholders
    assert topo.service_name == "edge.accel.example.net"


def test_dev_stack_is_small() -> None:
    topo = load_stack("dev", STACKS)
    assert len(topo.centers) == 4
    assert 30 <= len(topo.edges) <= 50


def _replace_line(path: Path, pattern: str, replacement: str) -> int:
    """Replace the first line matching `pattern`; return its 1-based line number."""
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        if re.search(pattern, line):
            lines[i] = replacement
            path.write_text("\n".join(lines) + "\n")
            return i + 1
    raise AssertionError(f"{pattern!r} not found in {path}")


def _error(stacks: Path, stack: str = "dev") -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_stack(stack, stacks)
    return info.value


def _catalog_rows(catalog: Path) -> tuple[list[str], int]:
    """The catalog's lines and the index of its first data row (after comments and the header)."""
    lines = catalog.read_text().splitlines()
    return lines, next(i for i, line in enumerate(lines) if line.startswith("id,")) + 1


def _set_field(catalog: Path, row: int, column: str, value: str) -> int:
    """Set one field of data row `row` (0-based); returns that row's 1-based line number."""
    lines, first = _catalog_rows(catalog)
    header = lines[first - 1].split(",")
    fields = lines[first + row].split(",")
    fields[header.index(column)] = value
    lines[first + row] = ",".join(fields)
    catalog.write_text("\n".join(lines) + "\n")
    return first + row + 1


def test_duplicate_edge_id_names_row_and_field(stacks_copy: Path) -> None:
    catalog = stacks_copy / "catalog" / "edges-dev.csv"
    lines, first = _catalog_rows(catalog)
    first_id = lines[first].split(",")[0]
    line = _set_field(catalog, 2, "id", first_id)
    message = str(_error(stacks_copy))
    assert f"edges-dev.csv:{line}: id: duplicate edge id '{first_id}' (first on line {first + 1})" in message


def test_coordinate_out_of_range(stacks_copy: Path) -> None:
    line = _set_field(stacks_copy / "catalog" / "edges-dev.csv", 1, "lat", "91.5")
    assert f"edges-dev.csv:{line}: lat: out of range [-90, 90]: 91.5" in str(_error(stacks_copy))


def test_unknown_country_code_in_catalog(stacks_copy: Path) -> None:
    line = _set_field(stacks_copy / "catalog" / "edges-dev.csv", 4, "country", "QQ")
    assert f"edges-dev.csv:{line}: country: unknown country code 'QQ'" in str(_error(stacks_copy))


def test_edge_without_jurisdiction_bad_role_and_addresses(stacks_copy: Path) -> None:
    """Each problem of the whole-path model in the catalog is named with its line and field."""
    catalog = stacks_copy / "catalog" / "edges-dev.csv"
    no_country = _set_field(catalog, 0, "country", "")
    bad_role = _set_field(catalog, 1, "role", "caching")
    lines, first = _catalog_rows(catalog)
    missing_center = _set_field(catalog, 2, "addresses", " ".join(lines[first + 2].split(",")[-1].split()[:-1]))
    unknown_center = _set_field(catalog, 3, "addresses", lines[first + 3].split(",")[-1].replace("us-east-1=", "us-west-9="))
    reused = lines[first].split(",")[-1].split()[0].split("=")[1]
    duplicate = _set_field(catalog, 5, "addresses", lines[first + 5].split(",")[-1].rsplit(" ", 1)[0] + f" ap-southeast-1={reused}")
    message = str(_error(stacks_copy))
    assert f"edges-dev.csv:{no_country}: country: is empty: every edge needs its jurisdiction" in message
    assert f"edges-dev.csv:{bad_role}: role: must be transit or terminating; got 'caching'" in message
    assert f"edges-dev.csv:{missing_center}: addresses: no address for center ap-southeast-1" in message
    assert f"edges-dev.csv:{unknown_center}: addresses: 'us-west-9=" in message
    assert f"edges-dev.csv:{duplicate}: addresses: duplicate address {reused} (first on line {no_country})" in message


def test_rule_naming_unknown_center(stacks_copy: Path) -> None:
    line = _replace_line(stacks_copy / "residency.yaml", r"centers: \[me-central-1\]$", "    centers: [me-south-9]")
    message = str(_error(stacks_copy))
    assert re.search(rf"residency.yaml:{line}: rules\[\d+\]\.centers\[0\]: unknown center 'me-south-9'", message), message


def test_unknown_country_in_rule(stacks_copy: Path) -> None:
    line = _replace_line(stacks_copy / "residency.yaml", r"countries: \[RU\]", "    countries: [RU, XX]")
    assert re.search(rf"residency.yaml:{line}: rules\[\d+\]\.countries\[1\]: unknown country code 'XX'", str(_error(stacks_copy)))


def test_unquoted_norway_is_explained(stacks_copy: Path) -> None:
    unquoted = "                RO, SK, SI, ES, SE, IS, LI, NO, GF, GP, MQ, RE, YT, MF, AX]"
    _replace_line(stacks_copy / "residency.yaml", r'LI, "NO", GF, GP, MQ, RE, YT, MF, AX\]$', unquoted)
    assert "read as boolean False; quote country codes such as \"NO\"" in str(_error(stacks_copy))


def test_country_in_two_rules(stacks_copy: Path) -> None:
    _replace_line(stacks_copy / "residency.yaml", r"countries: \[KZ\]", "    countries: [KZ, RU]")
    assert "country RU already has rule 'russia-localisation'" in str(_error(stacks_copy))


def test_yaml_type_error_in_stack(stacks_copy: Path) -> None:
    line = _replace_line(stacks_copy / "Pulumi.dev.yaml", r"^\s+lat: 50.1109", "      lat: fifty")
    assert f"Pulumi.dev.yaml:{line}: config.global-accel:centers[1].lat: must be a number; got 'fifty'" in str(_error(stacks_copy))


def test_yaml_type_error_in_routing(stacks_copy: Path) -> None:
    line = _replace_line(stacks_copy / "Pulumi.dev.yaml", r"^\s+answers: 4", "    answers: four")
    assert f"Pulumi.dev.yaml:{line}: config.global-accel:routing.answers: must be an integer; got 'four'" in str(_error(stacks_copy))


def test_yaml_syntax_error(stacks_copy: Path) -> None:
    line = _replace_line(stacks_copy / "Pulumi.dev.yaml", r"^\s+answers: 4", "    answers: [4")
    message = str(_error(stacks_copy))
    assert "Pulumi.dev.yaml:" in message and "yaml: syntax error" in message
    found = int(re.search(r"Pulumi.dev.yaml:(\d+)", message).group(1))  # type: ignore[union-attr]
    assert line <= found <= line + 3


def test_unknown_field_is_rejected(stacks_copy: Path) -> None:
    line = _replace_line(stacks_copy / "Pulumi.dev.yaml", r"^\s+answers: 4", "    answerz: 4")
    assert f"Pulumi.dev.yaml:{line}: config.global-accel:routing.answerz: unknown field" in str(_error(stacks_copy))


def test_missing_stack_lists_available(tmp_path: Path) -> None:
    message = str(_error(STACKS, "staging"))
    assert "no such stack 'staging'" in message and "dev" in message and "prod" in message


def test_all_problems_reported_at_once(stacks_copy: Path) -> None:
    catalog = stacks_copy / "catalog" / "edges-dev.csv"
    lines = [_set_field(catalog, row, "lon", "200") for row in (0, 1, 2)]
    error = _error(stacks_copy)
    assert [p.line for p in error.problems] == lines
    assert all(p.field == "lon" for p in error.problems)


def test_bad_address_and_ragged_row(stacks_copy: Path) -> None:
    catalog = stacks_copy / "catalog" / "edges-dev.csv"
    line = _set_field(catalog, 1, "address", "300.1.1.1")
    assert f"edges-dev.csv:{line}: address: not an IP address: '300.1.1.1'" in str(_error(stacks_copy))
    lines, first = _catalog_rows(catalog)
    lines[first + 1] = "just,three,fields"
    catalog.write_text("\n".join(lines) + "\n")
    assert f"edges-dev.csv:{line}: row: expected 9 columns, found 3" in str(_error(stacks_copy))


def test_service_name_outside_zone(stacks_copy: Path) -> None:
    line = _replace_line(stacks_copy / "Pulumi.dev.yaml", r"serviceName:", "  global-accel:serviceName: edge.other.example.org")
    expected = f"Pulumi.dev.yaml:{line}: config.global-accel:serviceName: 'edge.other.example.org' is not inside the zone"
    assert expected in str(_error(stacks_copy))


def test_a_single_center_stack_is_refused(stacks_copy: Path) -> None:
    """A center's health comes from the other centers' probers: alone, it could never be judged up."""
    text = (stacks_copy / "Pulumi.dev.yaml").read_text()
    start = text.index("    - id: eu-central-1")
    end = text.index("  global-accel:routing:")
    (stacks_copy / "Pulumi.dev.yaml").write_text(text[:start] + text[end:].replace("  global-accel:routing:", "  global-accel:routing:", 1))
    text = (stacks_copy / "Pulumi.dev.yaml").read_text()
    assert text.count("- id:") == 1
    assert "must list at least two centers" in str(_error(stacks_copy))


def test_invented_country_codes_center_addresses_and_ipv6_answers_are_refused(stacks_copy: Path) -> None:
    """`UK` and `ZZ` are not ISO 3166-1 codes (Route 53 would reject a batch naming one); an edge may not
    answer on a center's address; answers are A records, so a client address must be IPv4."""
    countries = stacks_copy / "catalog" / "countries.csv"
    original = countries.read_text()
    countries.write_text(original + "UK,United Kingdom (typo),EU,51.5,-0.1,1000\nZZ,Nowhere,EU,0,0,1\n")
    message = str(_error(stacks_copy))
    assert re.search(r"countries.csv:\d+: code: not an ISO 3166-1 alpha-2 code: 'UK'", message), message
    assert re.search(r"countries.csv:\d+: code: not an ISO 3166-1 alpha-2 code: 'ZZ'", message), message
    countries.write_text(original)
    catalog = stacks_copy / "catalog" / "edges-dev.csv"
    probe = _set_field(catalog, 0, "address", "198.19.255.2")  # eu-central-1's address in Pulumi.dev.yaml
    lines, first = _catalog_rows(catalog)
    v6 = _set_field(catalog, 1, "addresses", lines[first + 1].split(",")[-1].rsplit(" ", 1)[0] + " ap-southeast-1=2001:db8::1")
    message = str(_error(stacks_copy))
    assert f"edges-dev.csv:{probe}: address: duplicate address 198.19.255.2 (it is center eu-central-1's address)" in message
    assert f"edges-dev.csv:{v6}: addresses: ap-southeast-1=2001:db8::1: client addresses are IPv4" in message


def test_two_centers_on_one_address_are_refused(stacks_copy: Path) -> None:
    line = _replace_line(stacks_copy / "Pulumi.dev.yaml", r"address: 198.19.255.4", "      address: 198.19.255.3")
    assert (f"Pulumi.dev.yaml:{line}: config.global-accel:centers[3].address: 198.19.255.3 is already center me-central-1's "
            "address") in str(_error(stacks_copy))


def test_route53_block_is_checked_with_its_line(stacks_copy: Path) -> None:
    """A collection name Route 53 would refuse, and a cell count beyond one name's records, are named before anything runs."""
    prod = stacks_copy / "Pulumi.prod.yaml"
    line = _replace_line(prod, r"^\s+cidrCells: 99", "    cidrCells: 99\n    collection: cells of prod")
    message = str(_error(stacks_copy, "prod"))
    assert f"Pulumi.prod.yaml:{line + 1}: config.global-accel:route53.collection: 'cells of prod' is not 1-64 of" in message
    _replace_line(prod, r"^\s+cidrCells: 99", "    cidrCells: 150")
    assert "config.global-accel:route53.cidrCells" in str(_error(stacks_copy, "prod"))


def test_steady_samples_beyond_the_latency_window_is_refused(stacks_copy: Path) -> None:
    """A median of more samples than a path keeps would be capped unseen (a reviewer loaded 64 over a window of 8)."""
    line = _replace_line(stacks_copy / "Pulumi.dev.yaml", r"^\s+consecutive: 3", "      consecutive: 3\n      steadySamples: 64")
    text = str(_error(stacks_copy))
    assert (f"Pulumi.dev.yaml:{line + 1}: config.global-accel:routing.hysteresis.steadySamples: must be at most latency.window (32)"
            in text), text
