"""Any text or JSON value gives rules or a located RuleError, never another exception, and
the linter and report run on whatever loads."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.rules.test_automata import KEYS, regexes
from tokenlimit.errors import RuleError
from tokenlimit.rules import RULE_FIELDS, LoadedRules, RuleMatcher, lint, parse_rules_text
from tokenlimit.rules.formats import format_github, format_json, format_sarif, validate_rules
from tokenlimit.rules.regex import compile_go_regex

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=12,
)
REGEX_TEXT = st.text(alphabet="ab-.^$*+?()[]{}|\\dwsQEpbz:,0123456789<=!iP", max_size=10)
field_values = (st.integers(min_value=-(2**70), max_value=2**70) | st.none() | st.booleans()
                | st.floats(allow_nan=False, allow_infinity=False) | REGEX_TEXT)
rule_objects = st.dictionaries(
    st.sampled_from([*RULE_FIELDS, "max_token", "MAX_TOKENS", "extra"]), field_values,
    max_size=7)


def _check(text: str, fmt: str) -> None:
    try:
        loaded = parse_rules_text(text, "in.txt", fmt=fmt)
    except RuleError as exc:
        assert exc.path == "in.txt"
        assert exc.line is None or exc.line >= 1
        assert exc.column is None or exc.column >= 1
        return
    assert isinstance(loaded, LoadedRules)
    report = validate_rules(loaded, ["k", ""])
    for finding in report.findings:
        assert finding.location is not None and finding.location.line >= 1
    format_json(report)
    format_sarif(report, "0")
    format_github(report)


@SETTINGS
@given(st.text(max_size=60), st.sampled_from(["json", "yaml", "auto"]))
def test_arbitrary_text_loads_or_fails_located(text: str, fmt: str) -> None:
    _check(text, fmt)


@SETTINGS
@given(json_values, st.sampled_from(["json", "yaml", "auto"]))
def test_arbitrary_json_values_load_or_fail_located(value: object, fmt: str) -> None:
    _check(json.dumps(value), fmt)


@SETTINGS
@given(st.lists(rule_objects | json_values, max_size=4))
def test_rule_shaped_documents_always_lint(rules: list[object]) -> None:
    _check(json.dumps(rules), "json")


@SETTINGS
@given(st.lists(REGEX_TEXT, min_size=1, max_size=4))
def test_any_regex_text_lints_without_crashing(patterns: list[str]) -> None:
    rules = [{"rate_limit_key_regex": p, "max_tokens": 10, "tokens_per_fill": 5,
              "fill_interval_second": 1, "redis_expired_seconds": 10} for p in patterns]
    _check(json.dumps(rules), "json")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(regexes(), min_size=1, max_size=4), st.lists(KEYS, min_size=1, max_size=25))
def test_shadowing_and_catch_all_verdicts_hold_for_every_key(patterns: list[str],
                                                             keys: list[str]) -> None:
    try:
        for pattern in patterns:
            compile_go_regex(pattern)
    except ValueError:
        assume(False)
    rules = [{"rate_limit_key_regex": p, "max_tokens": 10, "tokens_per_fill": 5,
              "fill_interval_second": 1, "redis_expired_seconds": 10} for p in patterns]
    loaded = parse_rules_text(json.dumps(rules), "r.json")
    findings = lint(loaded)
    never_applies = {f.rule_index for f in findings if f.code in ("TL301", "TL302")}
    skipped = any(f.code == "TL307" for f in findings)
    no_gap = not any(f.code == "TL305" for f in findings) and not skipped
    matcher = RuleMatcher(loaded.rules)
    for key in keys:
        taken = matcher.index_for(key)
        assert taken not in never_applies, key
        assert taken is not None or not no_gap, key
