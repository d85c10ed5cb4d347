"""The example's wire format, decoded as Go decodes it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenlimit.bucket.types import Usage, UsageReport
from tokenlimit.service.protocol import (
    _PLAIN_REPORT,
    DecodeError,
    decision_body,
    parse_keys_value,
    parse_usage,
    parse_usage_exactly,
    query_value,
    strict_keys_value,
)


@pytest.mark.parametrize(("value", "keys"), [
    ('["a","b"]', ("a", "b")),
    ("[]", ()),
    ("null", ()),
    ("", ()),
    (None, ()),
    ('["a", 1]', ()),            # Go's Unmarshal fails: the example falls back to no keys
    ('"a"', ()),
    ('["a"] x', ()),             # text after the value
    ('["a", null]', ("a", "")),  # null into a string leaves ""
    ('["\\ud800"]', ("\ufffd",)),
    ("[NaN]", ()),
])
def test_key_list_as_the_example_reads_it(value: str | None, keys: tuple[str, ...]) -> None:
    assert parse_keys_value(value) == keys


def test_strict_key_list_says_what_is_wrong() -> None:
    with pytest.raises(DecodeError, match="cannot unmarshal number into string"):
        strict_keys_value('["a", 1]')


@pytest.mark.parametrize(("query", "value"), [
    (b"ratelimit_keys=%5B%22u%22%5D", b'["u"]'),
    (b"ratelimit_keys=a+b&ratelimit_keys=c", b"a b"),
    (b"x=1&ratelimit_keys=%zz&ratelimit_keys=ok", b"ok"),   # a bad escape drops the pair
    (b"ratelimit_keys=a;b&ratelimit_keys=c", b"c"),        # Go refuses semicolons
    (b"ratelimit_keys=%E2%82", b"\xe2\x82"),               # bytes kept for the JSON decoder
    (b"ratelimit_keys=[%22a%22]#x", b'["a"]#x'),            # Go keeps the "fragment"
    (b"other=1", None),
])
def test_query_value_follows_go(query: bytes, value: bytes | None) -> None:
    assert query_value(query, "ratelimit_keys") == value


def test_usage_body_decodes_like_go() -> None:
    body = (b'{"RateLimit_Keys":["u","v"],"completion_tokens":5,"completion_tokens":null,'
            b'"total_tokens":-3,"extra":{"x":[1.5]}}')
    assert parse_usage(body) == UsageReport(("u", "v"), Usage(0, 5, -3))
    assert parse_usage(b"null") == UsageReport(())
    assert parse_usage(b"{}") == UsageReport(())


@pytest.mark.parametrize(("body", "reason"), [
    (b"", "Expecting value"),
    (b"[]", "cannot unmarshal array"),
    (b'{"completion_tokens":"5"}', "cannot unmarshal string into int"),
    (b'{"completion_tokens":1e3}', "cannot unmarshal number 1e3 into int"),
    (b'{"completion_tokens":9223372036854775808}', "overflows int"),
    (b'{"ratelimit_keys":"u"}', "cannot unmarshal string into \\[\\]string"),
    (b'{"ratelimit_keys":[1]}', "cannot unmarshal number into string"),
    (b"{} {}", "Extra data"),
])
def test_usage_body_errors(body: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        parse_usage(body)


def test_answer_bodies_are_go_json() -> None:
    assert decision_body(True, "ok") == b'{"allow":true,"description":"ok"}'
    assert decision_body(False, "a<b>&\u2028é is being rate-limited") == (
        '{"allow":false,"description":"a\\u003cb\\u003e\\u0026\\u2028é is being rate-limited"}'
    ).encode()


def _outcome(parse: Any, body: bytes) -> object:
    try:
        return parse(body)
    except DecodeError as exc:
        return ("error", str(exc))


_KEY_CHARS = st.sampled_from(['a', 'Z', '0', '-', ' ', '"', '\\', '/', 'é', '\x7f', '\x1f', '~'])


@settings(max_examples=400, deadline=None)
@given(keys=st.lists(st.text(_KEY_CHARS, max_size=6), max_size=3),
       numbers=st.lists(st.integers(-(2**63) - 2, 2**63 + 2) | st.integers(-20, 20),
                        min_size=3, max_size=3),
       ascii_only=st.booleans(), compact=st.booleans(), data=st.data(),
       junk=st.sampled_from([b",", b'"', b" ", b"0", b"-", b"]", b"[", b"\\", b"\n", b"}"]))
def test_usage_body_plain_form_decodes_as_the_exact_decoder(
        keys: list[str], numbers: list[int], ascii_only: bool, compact: bool,
        data: st.DataObject, junk: bytes) -> None:
    # parse_usage reads the usual body with a regular expression: it must give what Go's
    # decoding (parse_usage_exactly) gives, for that form, its near misses and broken copies.
    value = {"ratelimit_keys": keys, "prompt_tokens": numbers[0],
             "completion_tokens": numbers[1], "total_tokens": numbers[2]}
    body = json.dumps(value, ensure_ascii=ascii_only,
                      separators=(",", ":") if compact else (", ", ": ")).encode()
    cut = data.draw(st.integers(0, len(body)))
    dropped = data.draw(st.integers(0, len(body) - 1))
    for variant in (body, body[:cut] + junk + body[cut:], body[:dropped] + body[dropped + 1:]):
        assert _outcome(parse_usage, variant) == _outcome(parse_usage_exactly, variant)


def test_usage_body_plain_form_is_read_by_the_fast_path() -> None:
    # The gateway's own report body takes the fast path (and it must be able to fail: a body
    # with an escape does not).
    plain = b'{"ratelimit_keys": ["bench-1", "a b"], "prompt_tokens": 5, ' \
            b'"completion_tokens": 60, "total_tokens": 65}'
    assert _PLAIN_REPORT.fullmatch(plain) is not None
    assert _PLAIN_REPORT.fullmatch(plain.replace(b"a b", b"a\\u0020b")) is None
    assert parse_usage(plain) == UsageReport(("bench-1", "a b"), Usage(5, 60, 65))


_PLAIN = (b'{"ratelimit_keys": ["a", "b"], "prompt_tokens": 5, "completion_tokens": 60, '
          b'"total_tokens": 65}')


@pytest.mark.parametrize("body", [
    _PLAIN,
    _PLAIN.replace(b": 5,", b": 05,"),  # a leading zero: not JSON
    _PLAIN.replace(b": 5,", b": -0,"),
    _PLAIN.replace(b": 5,", b": -,"),
    _PLAIN.replace(b": 5,", b": 9223372036854775807,"),  # int64's largest
    _PLAIN.replace(b": 5,", b": 9223372036854775808,"),  # one more: a type error in Go
    _PLAIN.replace(b": 5,", b": 5.0,"),
    _PLAIN.replace(b'"a", "b"', b'"a" "b"'),  # no comma
    _PLAIN.replace(b'"a", "b"', b'"a",]'),
    _PLAIN.replace(b'"a", "b"', b'"a\\"b"'),  # an escape
    _PLAIN.replace(b'"a", "b"', b'"\\u00e9"'),
    _PLAIN.replace(b'"a", "b"', b'"a\tb"'),  # a control character: not JSON
    _PLAIN.replace(b'"a", "b"', b'"\xff"'),  # not UTF-8: Go's replacement character
    _PLAIN.replace(b'"a", "b"', b""),
    _PLAIN + b" ",
    _PLAIN + b"x",
    b" " + _PLAIN,
    _PLAIN.replace(b'"total_tokens"', b'"Total_Tokens"'),  # Go matches field names any case
    _PLAIN.replace(b'"prompt_tokens": 5, ', b""),
])
def test_usage_body_near_the_plain_form_decodes_as_the_exact_decoder(body: bytes) -> None:
    assert _outcome(parse_usage, body) == _outcome(parse_usage_exactly, body)
