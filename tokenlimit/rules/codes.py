"""Every finding code the linter can emit: its severity and a one-line title.

The table is the single source for SARIF's ``tool.driver.rules`` and for the README; a test
checks that the linter emits no code missing from it and that the README lists them all.
"""

from __future__ import annotations

from dataclasses import dataclass

from tokenlimit.rules.findings import Severity

E, W, N = Severity.ERROR, Severity.WARNING, Severity.INFO


@dataclass(frozen=True, slots=True)
class Code:
    code: str
    severity: Severity
    title: str


CODES: tuple[Code, ...] = (
    Code("TL100", E, "the configuration cannot be read (syntax, not an array, no such file)"),
    Code("TL102", E, "a rule is not an object (the service exits at start-up)"),
    Code("TL103", E, "a field has the wrong JSON type"),
    Code("TL104", E, "a number is not an integer literal (60.5, 1e3)"),
    Code("TL105", E, "a number is beyond the 64-bit int range"),
    Code("TL106", E, "a field is missing (the service uses its zero value)"),
    Code("TL107", E, "Go's regexp refuses the regex (the service exits at start-up)"),
    Code("TL108", E, "fill_interval_second is 0 (division by zero in the refill)"),
    Code("TL109", E, "redis_expired_seconds is 0 (every check fails with 400)"),
    Code("TL110", E, "a number is negative"),
    Code("TL111", E, "a rule is null (the service starts; an all-zero rule matches every key)"),
    Code("TL112", W, "the configuration is null (no rules, nothing limited)"),
    Code("TL113", W, "several RATE_LIMIT_CONFIGs in one manifest (only the first is checked)"),
    Code("TL114", W, "the configuration is an empty array (nothing limited)"),
    Code("TL115", W, "invalid UTF-8 in a JSON string (the service reads each bad byte as U+FFFD)"),
    Code("TL201", W, "tokens_per_fill is 0: matching keys are limited for good"),
    Code("TL202", W, "max_tokens is 0: matching keys are limited after their first refill"),
    Code("TL203", W, "tokens_per_fill is more than max_tokens"),
    Code("TL204", W, "redis_expired_seconds < fill_interval_second: buckets never refill"),
    Code("TL205", W, "buckets expire before an emptied one has refilled to max_tokens"),
    Code("TL206", W, "unknown field (ignored by the service)"),
    Code("TL207", W, "a field appears twice in a rule (the last one wins)"),
    Code("TL208", N, "a field name differs in case (Go folds case)"),
    Code("TL301", W, "shadowed: earlier rules take every key this rule matches"),
    Code("TL302", W, "duplicate: an earlier rule matches exactly the same keys"),
    Code("TL303", N, "partial overlap with an earlier rule (example key)"),
    Code("TL304", N, "unanchored match: the regex also matches inside longer keys"),
    Code("TL305", N, "no catch-all: keys matching no rule are never limited"),
    Code("TL306", N, "keys from client-set headers must be set by a trusted layer"),
    Code("TL307", N, "regex analysis skipped (syntax beyond plain regular languages)"),
    Code("TL308", N, "derived figures: sustained rate, burst, refill time, lifetime"),
)
BY_CODE = {code.code: code for code in CODES}
