"""The example service's wire format, decoded and encoded as its Go code does.

Pure functions, no I/O: the query value of ``/ratelimit`` (``ratelimit_keys``, a JSON array of
strings), the body of ``/update_ratelimit_record`` (Go's ``json.Unmarshal`` into a struct with
``int`` fields) and the answer (Go's ``json.Marshal``: ``allow`` then ``description``, with
``<``, ``>``, ``&``, U+2028 and U+2029 escaped).

Go quirks kept on purpose: object keys match struct fields case-insensitively (exact match
preferred); ``null`` leaves a field as it was; a ``null`` array element is ``""``; a float, a
quoted number or a number outside int64 is an error; unknown fields are ignored; text after the
top-level value is an error; invalid UTF-8 and lone surrogates become U+FFFD.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import unquote_to_bytes

from tokenlimit.bucket.types import Usage, UsageReport
from tokenlimit.rules.gofields import INT64_MAX, INT64_MIN, FieldNames

USAGE_FIELDS = ("ratelimit_keys", "prompt_tokens", "completion_tokens", "total_tokens")
_USAGE_FIELDS = FieldNames(USAGE_FIELDS)
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_GO_HTML_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
                    "\u2028": "\\u2028", "\u2029": "\\u2029"}
_GO_HTML_RE = re.compile("[<>&\u2028\u2029]")


class DecodeError(ValueError):
    """The input is not what Go's ``json.Unmarshal`` would accept; the text says why."""


class _GoFloat(str):
    """A number literal with a fraction or exponent: Go refuses it for an ``int`` field."""


def _reject_constant(name: str) -> Any:
    raise DecodeError(f"invalid character {name[0]!r} looking for beginning of value")


def _syntax(exc: json.JSONDecodeError) -> str:
    return f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"


def _go_string(text: str) -> str:
    return _LONE_SURROGATE.sub("\ufffd", text)


def _loads(data: bytes | str) -> Any:
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    try:
        return json.loads(text, parse_float=_GoFloat, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise DecodeError(_syntax(exc)) from exc
    except RecursionError as exc:
        raise DecodeError("exceeded max depth") from exc


def _string_list(value: Any, field: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise DecodeError(f"{field}: cannot unmarshal {_kind(value)} into []string")
    keys: list[str] = []
    for item in value:
        if item is None:
            keys.append("")  # Go: null into a string is a no-op, leaving ""
        elif isinstance(item, str) and not isinstance(item, _GoFloat):
            keys.append(_go_string(item))
        else:
            raise DecodeError(f"{field}: cannot unmarshal {_kind(item)} into string")
    return tuple(keys)


def _kind(value: Any) -> str:
    if isinstance(value, _GoFloat):
        return "number"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def _go_int(value: Any, field: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        if INT64_MIN <= value <= INT64_MAX:
            return value
        raise DecodeError(f"{field}: number {value} overflows int")
    if isinstance(value, _GoFloat):
        raise DecodeError(f"{field}: cannot unmarshal number {value} into int")
    raise DecodeError(f"{field}: cannot unmarshal {_kind(value)} into int")


def parse_keys_value(value: str | None) -> tuple[str, ...]:
    """The key list the example derives from the ``ratelimit_keys`` query value.

    Missing, empty, not JSON, or not an array of strings: the empty list (the example logs it
    and allows the request).

    >>> parse_keys_value('["regular-user","x"]')
    ('regular-user', 'x')
    >>> parse_keys_value('not json'), parse_keys_value('[1]'), parse_keys_value(None)
    ((), (), ())
    """
    try:
        return strict_keys_value(value)
    except DecodeError:
        return ()


def strict_keys_value(value: str | None) -> tuple[str, ...]:
    """Like ``parse_keys_value`` but ``DecodeError`` for anything that is not a key list."""
    if not value:
        return ()
    try:
        return _string_list(_loads(value), "ratelimit_keys")
    except DecodeError as exc:
        message = str(exc)
        if not message.startswith("ratelimit_keys"):
            message = f"ratelimit_keys: {message}"
        raise DecodeError(message) from exc


def query_value(query: bytes, name: str) -> str | None:
    """The first value of ``name`` in a raw query string, as Go's ``URL.Query().Get``.

    Pairs with a semicolon or a bad percent-escape are dropped (Go reports and skips them);
    ``+`` is a space.

    >>> query_value(b"a=1&ratelimit_keys=%5B%22u%22%5D", "ratelimit_keys")
    '["u"]'
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
            return _unescape(raw_value).decode("utf-8", "replace")
        except ValueError:
            continue
    return None


_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")


def _unescape(raw: bytes) -> bytes:
    if _BAD_ESCAPE.search(raw):
        raise ValueError("invalid URL escape")
    return unquote_to_bytes(raw.replace(b"+", b" "))


def parse_usage(body: bytes) -> UsageReport:
    """Decode an ``/update_ratelimit_record`` body as Go's ``json.Unmarshal`` into the struct.

    >>> parse_usage(b'{"ratelimit_keys":["u"],"completion_tokens":30,"other":1}')
    UsageReport(keys=('u',), usage=Usage(prompt_tokens=0, completion_tokens=30, total_tokens=0))
    >>> parse_usage(b'{"completion_tokens":1.5}')
    Traceback (most recent call last):
    ...
    tokenlimit.service.protocol.DecodeError: completion_tokens: cannot unmarshal number 1.5 into int
    """
    pairs_seen: list[list[tuple[str, Any]]] = []

    def keep_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        pairs_seen.append(pairs)
        return dict(pairs)

    text = body.decode("utf-8", "replace")
    try:
        document = json.loads(text, parse_float=_GoFloat, parse_constant=_reject_constant,
                              object_pairs_hook=keep_pairs)
    except json.JSONDecodeError as exc:
        raise DecodeError(_syntax(exc)) from exc
    except RecursionError as exc:
        raise DecodeError("exceeded max depth") from exc
    if document is None:
        return UsageReport(())
    if not isinstance(document, dict):
        raise DecodeError(f"cannot unmarshal {_kind(document)} into the usage object")
    values: dict[str, Any] = {}
    for key, value in pairs_seen[-1]:  # the top-level object is completed last
        field = _USAGE_FIELDS.field_for(key)
        if field is None or value is None:
            continue  # unknown fields are ignored; null leaves the field as it was
        values[field] = value
    error: DecodeError | None = None
    keys: tuple[str, ...] = ()
    numbers = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    for field, value in values.items():
        try:
            if field == "ratelimit_keys":
                keys = _string_list(value, field)
            else:
                numbers[field] = _go_int(value, field)
        except DecodeError as exc:
            error = error or exc  # Go reports the first type error after decoding the rest
    if error is not None:
        raise error
    return UsageReport(keys, Usage(**numbers))


def go_json_string(text: str) -> str:
    """A JSON string literal as Go's ``json.Marshal`` writes it.

    >>> go_json_string("a<b")
    '"a\\\\u003cb"'
    """
    encoded = json.dumps(_go_string(text), ensure_ascii=False)
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
