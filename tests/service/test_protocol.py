"""The example's wire format, decoded as Go decodes it."""

from __future__ import annotations

import pytest

from tokenlimit.bucket.types import Usage, UsageReport
from tokenlimit.service.protocol import (
    DecodeError,
    decision_body,
    parse_keys_value,
    parse_usage,
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
