"""The audit's typed results: per-country results, what-if scenarios, the report (findings: globalaccel.findings)."""

from __future__ import annotations

import hashlib
import json
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
    # served | fail_closed (the rule refuses: lawful) | lost_service (the table serves it, live state gives
    # nothing) | no_path | not_locatable (the source cannot place a client there: not verified) | not_logged
    status: str
    allowed_centers: list[str]
    asked: str = ""  # what was asked: the client network queried, or the zone resolution performed
    paths: list[str] = field(default_factory=list)  # each answer: address -> edge (jurisdiction, role) -> center


@dataclass
class Scenario:
    name: str
    down_centers: list[str] = field(default_factory=list)
    down_edges_of: str | None = None
    countries_losing_service: list[str] = field(default_factory=list)
    violations: int = 0
    moves: dict[str, str] = field(default_factory=dict)  # country -> "center before -> center after" (where traffic goes)
    # Before the controller reacts: the all-healthy zone with the down centers' health checks failing, as
    # Route 53 answers it (the failover chains alone). Country -> "center before -> center after".
    unattended: dict[str, str] = field(default_factory=dict)

    def moves_by_path(self) -> dict[str, list[str]]:
        """The moves grouped: "eu-central-1 -> us-east-1": [countries]."""
        out: dict[str, list[str]] = {}
        for country, move in sorted(self.moves.items()):
            out.setdefault(move, []).append(country)
        return dict(sorted(out.items()))


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
    drift: list[Finding] = field(default_factory=list)  # live state differs from the table, without a residency breach
    coverage: dict[str, Any] = field(default_factory=dict)  # what share of demand and which strict countries were verified
    provenance: dict[str, Any] = field(default_factory=dict)  # time, tool version, commit, input hashes
    scope: dict[str, Any] = field(default_factory=dict)  # what was examined, and what was not

    @property
    def verdict(self) -> str:
        """Residency answers the audit; coverage decides whether it may say so."""
        if self.violations:
            return VIOLATIONS
        if self.coverage and not self.coverage.get("sufficient", False):
            return NOT_VERIFIED
        return COMPLIANT

    def to_json(self) -> dict[str, Any]:
        body = {
            "stack": self.stack, "source": self.source, "countries": self.countries, "table_hash": self.table_hash,
            "verdict": self.verdict, "compliant": self.verdict == COMPLIANT,
            "summary": {status: sum(r.status == status for r in self.results) for status in STATUSES},
            "coverage": self.coverage, "provenance": self.provenance, "scope": self.scope,
            "results": [asdict(r) for r in self.results], "scenarios": [asdict(s) for s in self.scenarios],
            "violations": [asdict(v) for v in self.violations], "drift": [asdict(d) for d in self.drift],
            "data_stores": self.data_stores, "decision_log": self.decision_log,
            "notes": self.notes, "rules_hash": self.rules.get("hash"), "rules": self.rules,
        }
        # The report's own hash, over everything above in canonical JSON: a reader recomputes it to see
        # that nothing was edited after the audit wrote it.
        body["report_sha256"] = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
        return body


COMPLIANT, VIOLATIONS, NOT_VERIFIED = "COMPLIANT", "VIOLATIONS FOUND", "NOT VERIFIED"
STATUSES = ("served", "fail_closed", "lost_service", "no_path", "not_locatable", "not_logged")
# Findings that say live state differs from the table without any answer leaving the allowed set: reported
# as drift, never as a residency violation, and they do not fail the audit.
DRIFT_KINDS = frozenset({"answer_not_in_table", "lost_service", "record_drift", "cidr_location_unanswered"})
