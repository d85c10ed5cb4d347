"""The example service's wire format, decoded and encoded as its Go code does.

Pure functions, no I/O: the query value of ``/ratelimit`` (``ratelimit_keys``, a JSON array of
strings), the body of ``/update_ratelimit_record`` (Go's ``json.Unmarshal`` into a struct with
``int`` fields) and the answer (Go's ``json.Marshal``: ``allow`` then ``description``, with
``<``, ``>``, ``&``, U+2028 and U+2029 escaped).

Go quirks kept on purpose (measured against the example): object keys match struct fields
case-insensitively (exact match preferred); a field given twice is decoded twice, and a wrong
type in either occurrence is an error; ``null`` leaves a field as it was; a ``null`` array
element keeps what that slot held (``""`` in a fresh list); a float, a quoted number or a number
outside int64 is an error; unknown fields are ignored; text after the top-level value is an
error; each invalid UTF-8 byte and each lone surrogate becomes U+FFFD; nesting up to 10,000
levels is accepted (see ``go_json``).
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import unquote_to_bytes

from tokenlimit.bucket.types import Usage, UsageReport
from tokenlimit.rules.gofields import INT64_MAX, INT64_MIN, FieldNames
from tokenlimit.service.go_json import (
    JsonNumber,
    JsonObject,
    JsonSyntaxError,
    go_string,
    load_go_json,
)

USAGE_FIELDS = ("ratelimit_keys", "prompt_tokens", "completion_tokens", "total_tokens")
_USAGE_FIELDS = FieldNames(USAGE_FIELDS)
_GO_HTML_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
                    "\u2028": "\\u2028", "\u2029": "\\u2029"}
_GO_HTML_RE = re.compile("[<>&\u2028\u2029]")


class DecodeError(ValueError):
    """The input is not what Go's ``json.Unmarshal`` would accept; the text says why."""


def _loads(data: bytes | str) -> Any:
    try:
        return load_go_json(data)
    except JsonSyntaxError as exc:
        raise DecodeError(f"not valid JSON: {exc}") from exc


def _fill_strings(value: Any, field: str, slots: list[str]) -> tuple[list[str], int]:
    """Go decoding a JSON array into a ``[]string`` whose backing array holds ``slots``:
    element i overwrites slot i, a ``null`` element keeps it (``""`` past the old end).
    Returns the slots (kept beyond the new length, as Go's backing array) and the length."""
    if not isinstance(value, list) or isinstance(value, JsonObject):
        raise DecodeError(f"{field}: cannot unmarshal {_kind(value)} into []string")
    filled = list(slots)
    for index, item in enumerate(value):
        if index == len(filled):
            filled.append("")
        if item is None:
            continue
        if isinstance(item, str) and not isinstance(item, JsonNumber):
            filled[index] = go_string(item)
        else:
            raise DecodeError(f"{field}: cannot unmarshal {_kind(item)} into string")
    if not value:
        return [], 0  # Go makes a new empty slice: the old slots are gone
    return filled, len(value)


def _kind(value: Any) -> str:
    if isinstance(value, JsonNumber):
        return "number"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, str):
        return "string"
    if isinstance(value, JsonObject):
        return "object"
    if isinstance(value, list):
        return "array"
    return "null"


def _go_int(value: Any, field: str) -> int:
    if isinstance(value, JsonNumber):
        shown = value if len(value) <= 40 else f"{value[:20]}...({len(value)} characters)"
        if not value.is_integer:
            raise DecodeError(f"{field}: cannot unmarshal number {shown} into int")
        number = int(value) if len(value) <= 20 else INT64_MAX + 1
        if INT64_MIN <= number <= INT64_MAX:
            return number
        raise DecodeError(f"{field}: number {shown} overflows int")
    raise DecodeError(f"{field}: cannot unmarshal {_kind(value)} into int")


def parse_keys_value(value: bytes | str | None) -> tuple[str, ...]:
    """The key list the example derives from the ``ratelimit_keys`` query value.

    Missing, empty, not JSON, or not an array of strings: the empty list (the example logs it
    and allows the request).

    >>> parse_keys_value(b'["regular-user","x"]')
    ('regular-user', 'x')
    >>> parse_keys_value(b'not json'), parse_keys_value(b'[1]'), parse_keys_value(None)
    ((), (), ())
    """
    try:
        return strict_keys_value(value)
    except DecodeError:
        return ()


def strict_keys_value(value: bytes | str | None) -> tuple[str, ...]:
    """Like ``parse_keys_value`` but ``DecodeError`` for anything that is not a key list."""
    if not value:
        return ()
    try:
        document = _loads(value)
        if document is None:
            return ()  # null into a slice leaves it as it was: empty
        slots, length = _fill_strings(document, "ratelimit_keys", [])
        return tuple(slots[:length])
    except DecodeError as exc:
        message = str(exc)
        if not message.startswith("ratelimit_keys"):
            message = f"ratelimit_keys: {message}"
        raise DecodeError(message) from exc


def query_value(query: bytes, name: str) -> bytes | None:
    """The first value of ``name`` in a raw query string, as Go's ``URL.Query().Get``, as bytes
    (Go keeps invalid UTF-8 until the JSON decoder replaces it, byte by byte).

    Pairs with a semicolon or a bad percent-escape are dropped (Go reports and skips them);
    ``+`` is a space. Everything after ``?`` is the query, a ``#`` included (Go's server does
    not cut a fragment from a request target).

    >>> query_value(b"a=1&ratelimit_keys=%5B%22u%22%5D", "ratelimit_keys")
    b'["u"]'
    """
    wanted = name.encode()
    for pair in query.split(b"&"):
        if not pair or b";" in pair:
            continue
        raw_key, _, raw_value = pair.partition(b"=")
        try:
            key = _unescape(raw_key)
            if key != wanted:
                continue
            return _unescape(raw_value)
        except ValueError:
            continue
    return None


_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")


def _unescape(raw: bytes) -> bytes:
    if _BAD_ESCAPE.search(raw):
        raise ValueError("invalid URL escape")
    return unquote_to_bytes(raw.replace(b"+", b" "))


# The body a plug-in (and the gateway) sends, in its usual form: the four fields in order, keys
# of printable ASCII without escapes, integers that fit int64. Go decodes it the plain way, so
# it is read with one regular expression instead of the Go-exact decoder (9 us -> 2.6 us a
# report); anything else takes the exact path. tests/service/test_protocol.py holds the two
# paths equal (property test).
_KEY = rb'"[ !#-\[\]-~]*"'
_INT = rb"(-?(?:0|[1-9][0-9]{0,17}))"
_PLAIN_REPORT = re.compile(
    rb'\{"ratelimit_keys": ?\[((?:' + _KEY + rb"(?:, ?" + _KEY + rb')*)?)\], ?"prompt_tokens": ?'
    + _INT + rb', ?"completion_tokens": ?' + _INT + rb', ?"total_tokens": ?' + _INT + rb"\}")
_KEY_TEXT = re.compile(rb'"([^"]*)"')


def parse_usage(body: bytes) -> UsageReport:
    """Decode an ``/update_ratelimit_record`` body as Go's ``json.Unmarshal`` into the struct.

    >>> parse_usage(b'{"ratelimit_keys":["u"],"completion_tokens":30,"other":1}')
    UsageReport(keys=('u',), usage=Usage(prompt_tokens=0, completion_tokens=30, total_tokens=0))
    >>> parse_usage(b'{"completion_tokens":1.5}')
    Traceback (most recent call last):
    ...
    tokenlimit.service.protocol.DecodeError: completion_tokens: cannot unmarshal number 1.5 into int
    """
    plain = _PLAIN_REPORT.fullmatch(body)
    if plain is not None:
        keys = tuple(k.decode("ascii") for k in _KEY_TEXT.findall(plain.group(1)))
        return UsageReport(keys, Usage(int(plain.group(2)), int(plain.group(3)),
                                       int(plain.group(4))))
    return parse_usage_exactly(body)


def parse_usage_exactly(body: bytes) -> UsageReport:
    """:func:`parse_usage` by the Go-exact decoder alone (every body takes this path but the
    plain form)."""
    document = _loads(body)
    if document is None:
        return UsageReport(())
    if not isinstance(document, JsonObject):
        raise DecodeError(f"cannot unmarshal {_kind(document)} into the usage object")
    error: DecodeError | None = None
    slots: list[str] = []
    length = 0
    numbers = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    for key, value in document:  # every occurrence of a field is decoded, in order
        field = _USAGE_FIELDS.field_for(key)
        if field is None or value is None:
            continue  # unknown fields are ignored; null leaves the field as it was
        try:
            if field == "ratelimit_keys":
                slots, length = _fill_strings(value, field, slots)
            else:
                numbers[field] = _go_int(value, field)
        except DecodeError as exc:
            error = error or exc  # Go reports the first type error after decoding the rest
    if error is not None:
        raise error
    return UsageReport(tuple(slots[:length]), Usage(**numbers))


def go_json_string(text: str) -> str:
    """A JSON string literal as Go's ``json.Marshal`` writes it.

    >>> go_json_string("a<b")
    '"a\\\\u003cb"'
    """
    encoded = json.dumps(go_string(text), ensure_ascii=False)
    return _GO_HTML_RE.sub(lambda m: _GO_HTML_ESCAPES[m.group(0)], encoded)


ALLOW_BODY = b'{"allow":true,"description":"ok"}'


def decision_body(allow: bool, description: str) -> bytes:
    """The ``/ratelimit`` answer body, byte for byte as the example writes it."""
    if allow and description == "ok":
        return ALLOW_BODY
    flag = "true" if allow else "false"
    return f'{{"allow":{flag},"description":{go_json_string(description)}}}'.encode()


def error_body(message: str) -> bytes:
    """A JSON error body (beyond the example: strict-input answers)."""
    return json.dumps({"error": message}, ensure_ascii=False).encode()
