"""Loaders: every source gives the same rules, with exact locations."""

from __future__ import annotations

import io
import json

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import SAMPLES
from tokenlimit.errors import RuleError
from tokenlimit.rules import Location, Rule, load_rules, parse_rules_text

EXAMPLE = (
    ("regular-user.*", 200, 50, 30, 300),
    ("subscriber.*", 1000, 100, 60, 600),
)


def _values(rules: tuple[Rule, ...]) -> tuple[tuple[object, ...], ...]:
    return tuple((r.regex, r.max_tokens, r.tokens_per_fill, r.fill_interval_second,
                  r.redis_expired_seconds) for r in rules)


@pytest.mark.parametrize("name", ["rules.json", "rules.yaml", "deployment.yaml"])
def test_samples_load_the_documentation_rules(name: str) -> None:
    loaded = load_rules(SAMPLES / name)
    assert _values(loaded.rules) == EXAMPLE
    assert loaded.findings == ()


def test_json_file_locations_are_exact() -> None:
    loaded = load_rules(SAMPLES / "rules.json")
    path = str(SAMPLES / "rules.json")
    assert loaded.rules[1].location == Location(path, 9, 3)
    assert loaded.rules[1].location_of("max_tokens") == Location(path, 14, 19)


def test_yaml_file_locations_are_exact() -> None:
    loaded = load_rules(SAMPLES / "rules.yaml")
    path = str(SAMPLES / "rules.yaml")
    assert loaded.rules[1].location_of("rate_limit_key_regex") == Location(path, 7, 25)


def test_manifest_block_scalar_maps_to_manifest_lines() -> None:
    loaded = load_rules(SAMPLES / "deployment.yaml")
    path = str(SAMPLES / "deployment.yaml")
    # "max_tokens": 1000 of the second rule stands on line 42, column 35 of the manifest.
    assert loaded.rules[1].location_of("max_tokens") == Location(path, 42, 35)


def test_env_stdin_and_raw_json_agree() -> None:
    text = (SAMPLES / "rules.json").read_text()
    from_env = load_rules(from_env=True, environ={"RATE_LIMIT_CONFIG": text})
    from_stdin = load_rules("-", stdin=io.StringIO(text))
    raw = load_rules(config_json=text)
    assert _values(from_env.rules) == _values(from_stdin.rules) == _values(raw.rules) == EXAMPLE
    assert from_env.rules[0].location == Location("<env:RATE_LIMIT_CONFIG>", 2, 3)


def test_missing_env_variable_is_a_located_error() -> None:
    with pytest.raises(RuleError, match="RATE_LIMIT_CONFIG is not set"):
        load_rules(from_env=True, environ={})


def test_configmap_reference_is_followed() -> None:
    text = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: limits}
data:
  rules: '[{"rate_limit_key_regex": "a", "max_tokens": 5, "tokens_per_fill": 1,
    "fill_interval_second": 1, "redis_expired_seconds": 10}]'
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: svc}
spec:
  template:
    spec:
      containers:
        - name: c
          env:
            - name: RATE_LIMIT_CONFIG
              valueFrom: {configMapKeyRef: {name: limits, key: rules}}
"""
    loaded = parse_rules_text(text, "m.yaml")
    assert _values(loaded.rules) == (("a", 5, 1, 1, 10),)


def test_not_an_array_is_a_located_rule_error() -> None:
    with pytest.raises(RuleError) as info:
        parse_rules_text('\n  {"rate_limit_key_regex": "a"}', "x.json", fmt="json")
    assert (info.value.path, info.value.line, info.value.column) == ("x.json", 2, 3)


def test_broken_json_names_line_and_column() -> None:
    with pytest.raises(RuleError) as info:
        parse_rules_text('[\n  {"max_tokens": 1,}\n]', "x.json", fmt="json")
    assert (info.value.line, info.value.column) == (2, 20)
    assert "expected a quoted field name" in str(info.value)


def test_manifest_without_config_is_an_error() -> None:
    with pytest.raises(RuleError, match="no RATE_LIMIT_CONFIG found"):
        parse_rules_text("kind: Service\nmetadata: {name: x}\n", "svc.yaml")


@settings(max_examples=150)
# NEL, U+2028 and U+2029 are left out: YAML counts them as line breaks, lines and columns
# here count only '\n' (as editors and GitHub do).
@given(regex=st.text(st.characters(codec="utf-8", exclude_categories=("Cs",),
                                   exclude_characters="\x85\u2028\u2029"), max_size=40),
       style=st.sampled_from(['"', "'", None]), width=st.integers(20, 120))
def test_rule_positions_inside_a_manifest_string_point_at_the_rule(
        regex: str, style: str | None, width: int) -> None:
    # However PyYAML quotes, escapes and folds the value, each rule's position in the
    # manifest is the '{' that opens it, and the max_tokens value its digit.
    rules = [{"rate_limit_key_regex": regex, "max_tokens": 7 + i, "tokens_per_fill": 1,
              "fill_interval_second": 1, "redis_expired_seconds": 10} for i in range(2)]
    value = json.dumps(rules, ensure_ascii=False)
    text = yaml.dump({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
                      "data": {"RATE_LIMIT_CONFIG": value}}, default_style=style, width=width,
                     allow_unicode=True, sort_keys=False)
    loaded = parse_rules_text(text, "c.yaml", fmt="yaml")
    lines = text.splitlines()
    for i, rule in enumerate(loaded.rules):
        assert rule.location is not None
        assert lines[rule.location.line - 1][rule.location.column - 1] == "{"
        where = rule.location_of("max_tokens")
        assert where is not None
        assert lines[where.line - 1][where.column - 1] == str(7 + i)
