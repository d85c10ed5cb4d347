"""Bytes and characters as Go's encoding/json reads them: exact findings for each case."""

from __future__ import annotations

from pathlib import Path

import pytest

from tokenlimit.errors import RuleError
from tokenlimit.rules import load_rules
from tokenlimit.rules.gojson import MAX_DEPTH, parse_json

RULE = (b'{"rate_limit_key_regex": %s, "max_tokens": 10, "tokens_per_fill": 5, '
        b'"fill_interval_second": 1, "redis_expired_seconds": 60}')


def _load(tmp_path: Path, data: bytes):  # type: ignore[no-untyped-def]
    path = tmp_path / "rules.json"
    path.write_bytes(data)
    return load_rules(path)


def test_invalid_utf8_in_a_regex_is_u_fffd_per_byte_with_a_tl115_warning(tmp_path: Path) -> None:
    loaded = _load(tmp_path, b"[" + RULE % b'"a\xff\xc3b"' + b"]")
    assert loaded.rules[0].regex == "a\ufffd\ufffdb"
    [finding] = [f for f in loaded.findings if f.code == "TL115"]
    assert (finding.severity.value, finding.rule_index, finding.field,
            finding.location.line, finding.location.column) == (  # type: ignore[union-attr]
        "warning", 0, "rate_limit_key_regex", 1, 27)
    assert finding.message == (
        "a JSON string holds 2 byte(s) that are not UTF-8 (ff c3): the service starts and "
        "reads each as U+FFFD, so it sees 'a\ufffd\ufffdb'")


def test_surrogate_escapes_decode_as_go_does(tmp_path: Path) -> None:
    loaded = _load(tmp_path, b"[" + RULE % b'"\\ud83d\\ude00|\\ud800|\\ude00\\ud83d"' + b"]")
    assert loaded.rules[0].regex == "\U0001f600|\ufffd|\ufffd\ufffd"
    [finding] = [f for f in loaded.findings if f.code == "TL115"]
    assert "3 unpaired surrogate escape(s)" in finding.message


def test_a_byte_order_mark_before_json_is_the_service_exiting(tmp_path: Path) -> None:
    with pytest.raises(RuleError) as caught:
        _load(tmp_path, b"\xef\xbb\xbf[]")
    assert str(caught.value) == (
        f"{tmp_path / 'rules.json'}:1:1: invalid JSON: invalid character 'ï' looking for "
        "beginning of value: a UTF-8 byte order mark (BOM) precedes the JSON, and the service "
        "exits at start-up")


def test_invalid_utf8_outside_strings_is_a_syntax_error(tmp_path: Path) -> None:
    with pytest.raises(RuleError, match=r":1:2: invalid JSON: unexpected '\\udcff'"):
        _load(tmp_path, b"[\xff]")


def test_nesting_up_to_go_s_limit_and_no_further() -> None:
    assert parse_json("[" * MAX_DEPTH + "]" * MAX_DEPTH, "<x>").kind == "array"
    with pytest.raises(RuleError, match="exceeded max depth"):
        parse_json("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), "<x>")
    inner = "[" * (MAX_DEPTH - 2) + "]" * (MAX_DEPTH - 2)
    assert parse_json('[{"x": ' + inner + "}]", "<x>").kind == "array"


def test_null_rule_and_non_object_rule_have_different_codes(tmp_path: Path) -> None:
    null_rule = [f for f in _load(tmp_path, b"[null]").findings if f.rule_index == 0]
    number_rule = [f for f in _load(tmp_path, b"[1]").findings if f.rule_index == 0]
    assert [(f.code, f.severity.value) for f in null_rule] == [("TL111", "error")]
    assert [(f.code, f.severity.value) for f in number_rule] == [("TL102", "error")]
    assert "the service starts" in null_rule[0].message
    assert "the service exits at start-up" in number_rule[0].message
