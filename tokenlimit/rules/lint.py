"""The semantic linter: what the ASM service will really do with each rule.

``lint(loaded)`` returns the decode findings plus everything found here, sorted by rule and
severity. ``require_valid`` is what every command that runs rules calls: it refuses rules with
error findings (``RulesRejected``) and returns the rest of the findings for stderr.
"""

from __future__ import annotations

from tokenlimit.errors import RulesRejected
from tokenlimit.rules.findings import Finding, Severity
from tokenlimit.rules.model import INT_FIELDS, Rule
from tokenlimit.rules.regex import compile_go_regex
from tokenlimit.rules.sources import LoadedRules

_SEVERITY_ORDER = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}


def lint(loaded: LoadedRules) -> list[Finding]:
    """All findings for ``loaded``: decode findings first, then per-rule checks."""
    findings = list(loaded.findings)
    for rule in loaded.rules:
        findings.extend(_rule_errors(rule))
    return sorted(findings, key=_order)


def _order(finding: Finding) -> tuple[int, int, str]:
    index = -1 if finding.rule_index is None else finding.rule_index
    return (index, _SEVERITY_ORDER[finding.severity], finding.code)


def require_valid(loaded: LoadedRules) -> list[Finding]:
    """Findings of rules fit to run; ``RulesRejected`` with the error findings otherwise."""
    findings = lint(loaded)
    errors = [f for f in findings if f.severity is Severity.ERROR]
    if errors:
        raise RulesRejected(errors)
    return findings


def _rule_errors(rule: Rule) -> list[Finding]:
    found: list[Finding] = []
    i = rule.index
    try:
        compile_go_regex(rule.regex)
    except ValueError as exc:
        found.append(Finding(
            "TL107", Severity.ERROR,
            f"regex {rule.regex!r} is not valid Go (RE2) syntax: {exc}; the service exits at "
            "start-up",
            "RE2 has no lookaround, backreferences or possessive quantifiers; rewrite the "
            "pattern without them.",
            i, "rate_limit_key_regex", rule.location_of("rate_limit_key_regex")))
    for name in INT_FIELDS:
        value = getattr(rule, name)
        if value < 0:
            found.append(Finding(
                "TL110", Severity.ERROR,
                f"{name} is negative ({value}): the bucket arithmetic goes wrong for every key "
                "of this rule",
                f"Use a positive {name}.", i, name, rule.location_of(name)))
    if rule.fill_interval_second == 0:
        found.append(Finding(
            "TL108", Severity.ERROR,
            "fill_interval_second is 0: the refill divides by zero in Lua, and the bucket jumps "
            "to max_tokens whenever the clock's second changes (no limit in practice)",
            "Set fill_interval_second to the refill period in seconds, e.g. 60.",
            i, "fill_interval_second", rule.location_of("fill_interval_second")))
    if rule.redis_expired_seconds == 0:
        found.append(Finding(
            "TL109", Severity.ERROR,
            "redis_expired_seconds is 0: Redis deletes the keys as soon as they are written, "
            "the check script fails and every check for this rule answers 400 (then the "
            "plug-in's fail-open setting decides)",
            "Set redis_expired_seconds to several fill intervals, e.g. 10 x "
            "fill_interval_second.",
            i, "redis_expired_seconds", rule.location_of("redis_expired_seconds")))
    return found
