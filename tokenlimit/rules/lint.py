"""The semantic linter: what the ASM service will really do with each rule.

``lint(loaded)`` returns the decode findings plus everything found here, sorted by rule and
severity. ``require_valid`` is what every command that runs rules calls: it refuses rules with
error findings (``RulesRejected``) and returns the rest of the findings for stderr.

A number that did not decode (wrong type, fraction, missing) is not checked again here: the
decode finding already says what the service does, and a second message about its zero value
would only repeat it. Rules that are not objects are left out of every later check.
"""

from __future__ import annotations

from tokenlimit.errors import RulesRejected
from tokenlimit.rules.coverage import analyse_regexes
from tokenlimit.rules.figures import duration, figures_of
from tokenlimit.rules.findings import Finding, Severity
from tokenlimit.rules.model import INT_FIELDS, REGEX_FIELD, Rule
from tokenlimit.rules.regex import compile_go_regex
from tokenlimit.rules.sources import LoadedRules

_SEVERITY_ORDER = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}
E, W, N = Severity.ERROR, Severity.WARNING, Severity.INFO

_NEGATIVE = {
    "max_tokens": "a new bucket starts at tokens_per_fill and can admit requests only until its "
    "first refill, which caps the balance at {v}; from then on every check is denied until the "
    "bucket expires",
    "tokens_per_fill": "a new bucket starts below zero and every refill lowers it further: every "
    "check for a key of this rule is denied, for good",
    "fill_interval_second": "the number of elapsed intervals is never positive, so the bucket "
    "never refills; it only restarts at tokens_per_fill when it expires",
    "redis_expired_seconds": "Redis deletes the keys as soon as they are written, the check "
    "script fails and every check for this rule answers 400 (then the plug-in's fail-open "
    "setting decides)",
}


def lint(loaded: LoadedRules) -> list[Finding]:
    """All findings for ``loaded``: decode findings first, then per-rule and cross-rule checks.

    >>> from tokenlimit.rules.sources import parse_rules_text
    >>> text = ('[{"rate_limit_key_regex": "^a$", "max_tokens": 10, "tokens_per_fill": 20,'
    ...         ' "fill_interval_second": 60, "redis_expired_seconds": 60}]')
    >>> [f.code for f in lint(parse_rules_text(text, "x.json"))]
    ['TL305', 'TL306', 'TL203', 'TL308']
    """
    findings = list(loaded.findings)
    not_objects = {f.rule_index for f in loaded.findings if f.code == "TL102"}
    undecoded = {(f.rule_index, f.field) for f in loaded.findings
                 if f.severity is Severity.ERROR and f.field is not None}
    analysable: list[Rule] = []
    for rule in loaded.rules:
        if rule.index in not_objects:
            continue
        bad = {name for index, name in undecoded if index == rule.index}
        regex_ok = REGEX_FIELD not in bad and _regex_finding(rule) is None
        if REGEX_FIELD not in bad and not regex_ok:
            findings.append(_regex_finding(rule))  # type: ignore[arg-type]
        if regex_ok:
            analysable.append(rule)
        found = _number_findings(rule, bad)
        findings.extend(found)
        figures = figures_of(rule)
        if figures is not None and not bad and not any(f.code == "TL110" for f in found):
            findings.append(Finding(
                "TL308", N, f"rule {rule.index}: {figures.summary()}",
                "Run `tokenlimit validate --key KEY` to see which rule a key takes.",
                rule.index, None, rule.location))
    if not loaded.rules and not any(f.code == "TL112" for f in loaded.findings):
        findings.append(Finding(
            "TL114", W, "the configuration is an empty array: the service starts with no rules "
            "and limits nothing", "Add rules, or remove the rate-limit plug-in.",
            None, None, loaded.location))
    findings.extend(analyse_regexes(analysable, loaded.location, loaded.key_templates))
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


def _regex_finding(rule: Rule) -> Finding | None:
    try:
        compile_go_regex(rule.regex)
    except ValueError as exc:
        return Finding(
            "TL107", E,
            f"regex {rule.regex!r} is refused by Go's regexp ({exc}): the service exits at "
            "start-up",
            "Go's regexp (RE2 syntax) has no lookaround, backreferences or possessive "
            "quantifiers, and refuses repeat counts above 1000 and nesting deeper than 1000.",
            rule.index, REGEX_FIELD, rule.location_of(REGEX_FIELD))
    return None


def _number_findings(rule: Rule, bad: set[str]) -> list[Finding]:
    found: list[Finding] = []
    i = rule.index

    def add(code: str, name: str, message: str, hint: str) -> None:
        severity = E if code.startswith("TL1") else W
        found.append(Finding(code, severity, message, hint, i, name, rule.location_of(name)))

    for name in INT_FIELDS:
        value = getattr(rule, name)
        if name not in bad and value < 0:
            add("TL110", name, f"{name} is negative ({value}): "
                + _NEGATIVE[name].format(v=value), f"Use a positive {name}.")
    if "fill_interval_second" not in bad and rule.fill_interval_second == 0:
        add("TL108", "fill_interval_second",
            "fill_interval_second is 0: the refill divides by zero in Lua, and the bucket jumps "
            "to max_tokens whenever the clock's second changes (no limit in practice)",
            "Set fill_interval_second to the refill period in seconds, e.g. 60.")
    if "redis_expired_seconds" not in bad and rule.redis_expired_seconds == 0:
        add("TL109", "redis_expired_seconds",
            "redis_expired_seconds is 0: Redis deletes the keys as soon as they are written, "
            "the check script fails and every check for this rule answers 400 (then the "
            "plug-in's fail-open setting decides)",
            "Set redis_expired_seconds to several fill intervals, e.g. 10 x "
            "fill_interval_second.")
    if bad & set(INT_FIELDS) or min(rule.fill_interval_second, rule.redis_expired_seconds) <= 0:
        return found  # the service fails or never refills: the warnings below would not hold
    found.extend(_bucket_warnings(rule))
    return found


def _bucket_warnings(rule: Rule) -> list[Finding]:
    i, cap, fill = rule.index, rule.max_tokens, rule.tokens_per_fill
    interval, ttl = rule.fill_interval_second, rule.redis_expired_seconds
    found: list[Finding] = []

    def add(code: str, name: str, message: str, hint: str) -> None:
        found.append(Finding(code, W, message, hint, i, name, rule.location_of(name)))

    if fill == 0:
        add("TL201", "tokens_per_fill",
            "tokens_per_fill is 0: a new bucket starts with 0 tokens and refills add nothing, "
            "so every check for a key of this rule is denied, for good",
            "Set tokens_per_fill to the tokens a key earns per fill interval.")
    if cap == 0 and fill > 0 and ttl >= interval:
        add("TL202", "max_tokens",
            f"max_tokens is 0: a new bucket starts at tokens_per_fill ({fill:,}) and can admit "
            "requests only until its first refill, which caps the balance at 0; from then on every "
            "check is denied until the bucket expires",
            "Set max_tokens to the largest burst a key may use (at least tokens_per_fill).")
    if fill > cap > 0 and ttl >= interval:
        add("TL203", "tokens_per_fill",
            f"tokens_per_fill ({fill:,}) is more than max_tokens ({cap:,}): a new or expired "
            f"bucket starts at {fill:,}, above the cap, but a refill never leaves more than "
            f"{cap:,} (it can even lower the balance): a drained key gets at most {cap:,} "
            f"tokens per interval, yet a key whose bucket expires starts again at {fill:,}",
            "Keep tokens_per_fill <= max_tokens.")
    if ttl < interval and fill > 0:
        add("TL204", "redis_expired_seconds",
            f"redis_expired_seconds ({ttl}) is shorter than fill_interval_second ({interval}): "
            "a bucket expires before its first refill is due, so it never refills; it restarts "
            f"at tokens_per_fill ({fill:,}) on the first check after it expired, debt forgiven: "
            f"a key gets up to {fill:,} tokens about every {duration(ttl)}, not every "
            f"{duration(interval)}",
            "Make redis_expired_seconds at least the time to refill from empty "
            "(a multiple of fill_interval_second).")
    elif fill > 0 and cap > 0:
        to_full = -(-cap // fill) * interval
        if ttl < to_full:
            idle_best = min(cap, ttl // interval * fill)
            add("TL205", "redis_expired_seconds",
                f"an emptied bucket left idle expires after {duration(ttl)}, before it could "
                f"refill to max_tokens ({cap:,} takes {duration(to_full)} from empty): a key "
                f"that pauses gets back at most {idle_best:,} tokens, or restarts at "
                f"{fill:,} (debt forgiven) once its bucket has expired",
                f"Set redis_expired_seconds to at least {to_full} (ceil(max_tokens / "
                "tokens_per_fill) x fill_interval_second).")
    return found
