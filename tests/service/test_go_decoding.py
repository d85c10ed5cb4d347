"""Decoding as the ASM example's Go code decodes, case by case (facts measured against it)."""

from __future__ import annotations

import pytest

from tokenlimit.bucket.types import Usage, UsageReport
from tokenlimit.service.go_json import MAX_DEPTH, JsonSyntaxError, go_text, load_go_json
from tokenlimit.service.protocol import DecodeError, parse_keys_value, parse_usage


@pytest.mark.parametrize(("raw", "text"), [
    (b"regular-user-\xe2\x82", "regular-user-\ufffd\ufffd"),    # Python's "replace": one U+FFFD
    (b"\xed\xa0\x80", "\ufffd\ufffd\ufffd"),                    # an encoded surrogate
    (b"\xc0\x80", "\ufffd\ufffd"),                              # overlong
    (b"\xf4\x90\x80\x80", "\ufffd\ufffd\ufffd\ufffd"),          # beyond U+10FFFF
    (b"\xe2\x82\xac\xff", "\u20ac\ufffd"),
])
def test_each_invalid_byte_is_one_replacement_character(raw: bytes, text: str) -> None:
    assert go_text(raw) == text
    assert parse_keys_value(b'["' + raw + b'"]') == (text,)


def test_lone_surrogate_escapes_are_replaced_one_by_one() -> None:
    assert parse_keys_value(b'["\\ud800\\ud800\\udc00x"]') == ("\ufffd\U00010000x",)


@pytest.mark.parametrize("body", [
    b'{"completion_tokens":"x","completion_tokens":70,"ratelimit_keys":["u"]}',
    b'{"ratelimit_keys":5,"ratelimit_keys":["u"],"completion_tokens":70}',
    b'{"ratelimit_keys":["u",1],"ratelimit_keys":["u"],"completion_tokens":70}',
    b'{"Completion_Tokens":1.0,"completion_tokens":70,"ratelimit_keys":["u"]}',
])
def test_a_wrong_typed_first_occurrence_is_an_error(body: bytes) -> None:
    with pytest.raises(DecodeError):
        parse_usage(body)


def test_duplicates_of_the_right_type_take_the_last_value() -> None:
    body = b'{"ratelimit_keys":["a"],"completion_tokens":1,"ratelimit_keys":["b","c"],' \
           b'"completion_tokens":70}'
    assert parse_usage(body) == UsageReport(("b", "c"), Usage(0, 70, 0))


def test_a_null_element_keeps_what_the_slot_held_before() -> None:
    body = b'{"ratelimit_keys":["a","b","c"],"ratelimit_keys":[null,"x"]}'
    assert parse_usage(body).keys == ("a", "x")
    body = (b'{"ratelimit_keys":["a","b","c"],"ratelimit_keys":["x"],'
            b'"ratelimit_keys":[null,null,null,null]}')
    assert parse_usage(body).keys == ("x", "b", "c", "")
    body = b'{"ratelimit_keys":["a"],"ratelimit_keys":[],"ratelimit_keys":[null]}'
    assert parse_usage(body).keys == ("",)


@pytest.mark.parametrize(("name", "field"), [
    ("COMPLETION_TOKENS", "completion_tokens"),
    ("completion_to\u212aens", "completion_tokens"),   # Kelvin sign folds to k in Go
    ("ratel\u0130mit_keys", None),                     # dotted I folds to I, not to i: no match
    ("completion_toßens", None),
])
def test_field_names_fold_as_go_folds_them(name: str, field: str | None) -> None:
    if name == "ratel\u0130mit_keys":  # ToUpper(ToLower(U+0130)) is "I": it does match
        assert parse_usage(f'{{"{name}":["k"]}}'.encode()).keys == ("k",)
        return
    body = f'{{"{name}":7}}'.encode()
    expected = Usage(0, 7, 0) if field else Usage(0, 0, 0)
    assert parse_usage(body).usage == expected


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def test_nesting_up_to_ten_thousand_levels_is_accepted() -> None:
    body = (b'{"ignored":' + _nested(MAX_DEPTH - 1)
            + b',"completion_tokens":5,"ratelimit_keys":["u"]}')
    assert parse_usage(body) == UsageReport(("u",), Usage(0, 5, 0))
    value, depth = load_go_json(_nested(MAX_DEPTH)), 1
    while value:
        value, depth = value[0], depth + 1
    assert (value, depth) == ([], MAX_DEPTH)
    with pytest.raises(JsonSyntaxError, match="exceeded max depth"):
        load_go_json(_nested(MAX_DEPTH + 1))
    deep_object = b'{"a":' * 2000 + b"1" + b"}" * 2000
    assert load_go_json(deep_object)[0][0] == "a"
    with pytest.raises(DecodeError):
        parse_usage(b'{"x":' + _nested(3000)[:-1] + b"}")


@pytest.mark.parametrize("number", [b"9" * 5000, b"-" + b"9" * 5000, b"1" + b"0" * 4000 + b".5",
                                    b"9223372036854775808", b"1e400"])
def test_numbers_that_do_not_fit_an_int_are_type_errors(number: bytes) -> None:
    with pytest.raises(DecodeError, match="completion_tokens"):
        parse_usage(b'{"completion_tokens":' + number + b"}")
    assert parse_usage(b'{"ignored":' + number + b',"completion_tokens":3}').usage == Usage(0, 3, 0)
    assert parse_keys_value(b"[" + number + b"]") == ()


def test_int64_bounds_fit() -> None:
    body = b'{"completion_tokens":-9223372036854775808,"total_tokens":9223372036854775807}'
    assert parse_usage(body).usage == Usage(0, -(2**63), 2**63 - 1)
