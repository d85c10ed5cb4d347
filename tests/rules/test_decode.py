"""Go strictness: what json.Unmarshal into []RateLimitConfig accepts and refuses."""

from __future__ import annotations

import pytest

from tokenlimit.rules import Severity, lint, parse_rules_text

GOOD = ('"rate_limit_key_regex": "a", "max_tokens": 10, "tokens_per_fill": 5, '
        '"fill_interval_second": 1, "redis_expired_seconds": 10')


def _codes(text: str) -> list[tuple[str, str | None]]:
    """Errors and warnings (the infos every rule gets are tested in test_lint)."""
    found = lint(parse_rules_text(text, "x.json", fmt="json"))
    return [(f.code, f.field) for f in found if f.severity is not Severity.INFO]


@pytest.mark.parametrize("value,code", [
    ("60.5", "TL104"), ("1e3", "TL104"), ("10.0", "TL104"), ('"60"', "TL103"),
    ("true", "TL103"), ("9223372036854775808", "TL105"), ("[1]", "TL103"),
])
def test_non_int_values_are_errors(value: str, code: str) -> None:
    text = "[{" + GOOD.replace('"max_tokens": 10', f'"max_tokens": {value}') + "}]"
    assert _codes(text) == [(code, "max_tokens")]


def test_int64_bounds_are_accepted() -> None:
    text = "[{" + GOOD.replace('"max_tokens": 10', '"max_tokens": 9223372036854775807') + "}]"
    loaded = parse_rules_text(text, "x.json", fmt="json")
    assert loaded.rules[0].max_tokens == 2**63 - 1


def test_null_value_keeps_zero_and_null_config_means_no_rules() -> None:
    loaded = parse_rules_text("null", "x.json", fmt="json")
    assert loaded.rules == ()
    assert [f.code for f in loaded.findings] == ["TL112"]


def test_case_folded_and_duplicate_fields_follow_go() -> None:
    text = "[{" + GOOD + ', "MAX_TOKENS": 7}]'
    loaded = parse_rules_text(text, "x.json", fmt="json")
    assert loaded.rules[0].max_tokens == 7
    assert sorted(f.code for f in loaded.findings) == ["TL207", "TL208"]


def test_re2_refuses_what_python_accepts() -> None:
    text = "[{" + GOOD.replace('"a"', '"(?<=x)user"') + "}]"
    assert _codes(text) == [("TL107", "rate_limit_key_regex")]


def test_go_refuses_the_any_byte_escape_that_cpp_re2_accepts() -> None:
    text = "[{" + GOOD.replace('"a"', '"a\\\\Cb"') + "}]"
    assert _codes(text) == [("TL107", "rate_limit_key_regex")]
    literal = "[{" + GOOD.replace('"a"', '"\\\\Q\\\\C\\\\E"') + "}]"
    assert _codes(literal) == []
