"""What Route 53 still loses against per-cell answers, in one run on prod's table: clients answered by country
alone (geolocation), with US states by geolocation subdivision, and with the cells Route 53 also answers by
network (IP-based routing: globalaccel.dns.route53_cells) at the stack's quotas and at raised ones.

    .venv/bin/python benchmarks/bench_route53_cells.py [--json]

Extra RTT: demand-weighted mean and p95, against each cell's own answer, physics estimate (as `plan` reports it).
The raised quotas are what an operator could ask AWS for (it documents no CIDR quota); 99 cells stays the
bound of one name's 100 records of one type.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from globalaccel.routing.summary import country_answers_extra_rtt, route53_summary, route_table  # noqa: E402
from globalaccel.topology import load_stack  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    prod = load_stack("prod")
    table = route_table(prod)
    by_country = country_answers_extra_rtt(prod, table)
    assert by_country is not None
    rows: dict[str, dict[str, object]] = {"geolocation only": {"cells_by_network": 0, **by_country}}
    cases = (("+ US states", 0, prod.route53.cidr_blocks), ("+ cells, quotas", prod.route53.cidr_cells, prod.route53.cidr_blocks),
             ("+ 10,000 blocks", prod.route53.cidr_cells, 10_000), ("+ 100,000 blocks", prod.route53.cidr_cells, 100_000))
    for label, cidr_cells, blocks in cases:
        raised = blocks != prod.route53.cidr_blocks
        stack = dataclasses.replace(prod, route53=dataclasses.replace(prod.route53, cidr_cells=cidr_cells, cidr_blocks=blocks,
                                                                      max_records=10**6 if raised else prod.route53.max_records))
        summary = route53_summary(stack, table)
        extra = summary["extra_rtt_ms"]
        rows[label] = {"cells_by_network": summary["cells_by_network"], "cidr_blocks": summary["cidr_blocks"],
                       "records": summary["records"], **extra}
    base = rows["geolocation only"]
    for row in rows.values():
        row["mean_over_geolocation"] = round(float(row["mean"]) / float(base["mean"]), 3)  # type: ignore[arg-type]
        row["p95_over_geolocation"] = round(float(row["p95"]) / float(base["p95"]), 3)  # type: ignore[arg-type]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'case':<18}{'cells':>6}{'blocks':>8}{'records':>9}{'mean ms':>9}{'p95 ms':>8}{'mean/geo':>10}{'p95/geo':>9}")
    for label, row in rows.items():
        print(f"{label:<18}{row['cells_by_network']:>6}{row.get('cidr_blocks', 0):>8}{row.get('records', ''):>9}{row['mean']:>9}"
              f"{row['p95']:>8}{row['mean_over_geolocation']:>10}{row['p95_over_geolocation']:>9}")


if __name__ == "__main__":
    main()
