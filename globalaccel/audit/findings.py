"""The audit's typed results: per-country results, what-if scenarios, the report (findings: globalaccel.findings)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from globalaccel.findings import Finding


@dataclass
class CountryResult:
    country: str
    rule: str
    mode: str
    center: str | None
    answers: list[str]
    status: str  # served | fail_closed | no_path | not_locatable | not_logged
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
    rules: dict[str, Any] = field(default_factory=dict)  # the rule set judged against: hash, rules with sources and review dates

    def to_json(self) -> dict[str, Any]:
        return {
            "stack": self.stack, "source": self.source, "countries": self.countries, "table_hash": self.table_hash,
            "compliant": not self.violations,
            "summary": {"served": sum(r.status == "served" for r in self.results),
                        "fail_closed": sum(r.status == "fail_closed" for r in self.results),
                        "not_locatable": sum(r.status == "not_locatable" for r in self.results)},
            "results": [asdict(r) for r in self.results], "scenarios": [asdict(s) for s in self.scenarios],
            "violations": [asdict(v) for v in self.violations], "data_stores": self.data_stores, "decision_log": self.decision_log,
            "notes": self.notes, "rules_hash": self.rules.get("hash"), "rules": self.rules,
        }
