"""One finding type for everything that checks state against the rules: `verify` (a table against
residency and health), the audit (live answers, data stores, the decision log), the policy pack
(resources a program registers) and the decision log's chain check.

Input errors are different (they name a file, line and field, and stop everything): those are
`globalaccel.errors.Problem`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Finding:
    kind: str  # what rule was broken: residency, out_of_region_answer, bucket_public, log_tampered, data-store-region ...
    subject: str  # what it was found on: a cell or country, a bucket, a resource, a log line
    evidence: str  # what was seen, in words an operator or auditor can check
    country: str | None = None  # the country whose rule it concerns, where there is one
