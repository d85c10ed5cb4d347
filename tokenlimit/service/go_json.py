"""JSON text read as Go's ``encoding/json`` reads it, before any struct is filled.

Pure functions, no I/O. ``load_go_json`` returns plain Python values except that objects are
``JsonObject`` (every key/value pair, in order, duplicates kept: Go decodes each occurrence)
and numbers are ``JsonNumber`` (the literal text: Go decides int or error per field).

What differs from ``json.loads`` and why:
- each invalid UTF-8 byte becomes its own U+FFFD (Go's ``utf8.DecodeRune`` steps one byte),
  where Python replaces a maximal invalid subpart once; unpaired surrogate escapes too;
- nesting up to 10,000 levels is valid (Go's ``maxNestingDepth``); Python's recursive scanner
  stops near 1,000, so deeper text goes through a small iterative parser here;
- numbers keep their text, so a number with thousands of digits costs nothing and never meets
  Python's limit on int conversion.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Callable
from typing import Any

MAX_DEPTH = 10_000  # Go's encoding/json scanner refuses one level more
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")
_WHITESPACE = re.compile(r"[ \t\n\r]*")
# json's own string scanner (C), the one json.loads uses; typeshed does not list it.
scanstring: Callable[[str, int, bool], tuple[str, int]] = (
    json.decoder.scanstring)  # type: ignore[attr-defined]


class JsonSyntaxError(ValueError):
    """Not JSON at all (Go's ``SyntaxError``), or nested deeper than Go accepts."""


class JsonNumber(str):
    """A number literal, as written; ``is_integer`` tells whether Go's ``ParseInt`` may take it."""

    @property
    def is_integer(self) -> bool:
        """No fraction and no exponent."""
        return not any(c in self for c in ".eE")


class JsonObject(list[tuple[str, Any]]):
    """An object's pairs in document order, duplicates kept."""


def _replace_each_byte(exc: UnicodeError) -> tuple[str, int]:
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    return "\ufffd", exc.start + 1  # resume at the very next byte, as Go does


codecs.register_error("tokenlimit-go-replace", _replace_each_byte)


def go_text(data: bytes) -> str:
    """``data`` as Go strings hold it once decoded: each invalid UTF-8 byte is one U+FFFD.

    >>> go_text(b"user-\\xe2\\x82")
    'user-\\ufffd\\ufffd'
    """
    return data.decode("utf-8", "tokenlimit-go-replace")


def go_string(text: str) -> str:
    """``text`` with each lone surrogate (from a ``\\ud800`` escape) replaced by U+FFFD."""
    return _LONE_SURROGATE.sub("\ufffd", text)


def _reject_constant(name: str) -> Any:
    raise JsonSyntaxError(f"invalid character {name[0]!r} looking for beginning of value")


def load_go_json(data: bytes | str) -> Any:
    """Parse ``data`` as Go would; ``JsonSyntaxError`` where Go's scanner stops.

    >>> load_go_json(b'{"a":1,"a":[true,null]}')
    [('a', '1'), ('a', [True, None])]
    """
    text = go_text(data) if isinstance(data, bytes) else data
    try:
        return json.loads(text, parse_float=JsonNumber, parse_int=JsonNumber,
                          parse_constant=_reject_constant, object_pairs_hook=JsonObject)
    except json.JSONDecodeError as exc:
        raise JsonSyntaxError(f"{exc.msg} (line {exc.lineno}, column {exc.colno})") from exc
    except RecursionError:
        return _load_deep(text)


def _load_deep(text: str) -> Any:
    """The same result as ``load_go_json`` for text nested too deep for Python's scanner."""
    stack: list[tuple[list[Any] | JsonObject, str | None]] = []  # container, pending key
    pos = _WHITESPACE.match(text, 0).end()  # type: ignore[union-attr]
    value: Any = None
    while True:
        # a value starts at pos
        char = text[pos:pos + 1]
        if char in ("[", "{"):
            if len(stack) >= MAX_DEPTH:
                raise JsonSyntaxError("exceeded max depth")
            container: list[Any] | JsonObject = [] if char == "[" else JsonObject()
            pos = _WHITESPACE.match(text, pos + 1).end()  # type: ignore[union-attr]
            closer = "]" if char == "[" else "}"
            if text[pos:pos + 1] == closer:
                value, pos = container, pos + 1
            else:
                key = None
                if char == "{":
                    key, pos = _key(text, pos)
                stack.append((container, key))
                continue
        elif char == '"':
            value, pos = _string(text, pos)
        elif (match := _NUMBER.match(text, pos)) is not None and char in "-0123456789":
            value, pos = JsonNumber(match.group()), match.end()
        elif text.startswith("true", pos):
            value, pos = True, pos + 4
        elif text.startswith("false", pos):
            value, pos = False, pos + 5
        elif text.startswith("null", pos):
            value, pos = None, pos + 4
        else:
            raise JsonSyntaxError(f"invalid character at offset {pos}")
        # a value ended at pos: attach it, then close every container that ends here
        while True:
            pos = _WHITESPACE.match(text, pos).end()  # type: ignore[union-attr]
            if not stack:
                if pos != len(text):
                    raise JsonSyntaxError(f"invalid character after top-level value at {pos}")
                return value
            container, key = stack[-1]
            if key is None:
                container.append(value)
            else:
                container.append((key, value))
            char = text[pos:pos + 1]
            is_object = isinstance(container, JsonObject)
            if char == ",":
                pos = _WHITESPACE.match(text, pos + 1).end()  # type: ignore[union-attr]
                if is_object:
                    key, pos = _key(text, pos)
                    stack[-1] = (container, key)
                break
            if char != ("}" if is_object else "]"):
                raise JsonSyntaxError(f"invalid character at offset {pos}")
            stack.pop()
            value, pos = container, pos + 1


def _string(text: str, pos: int) -> tuple[str, int]:
    try:
        found: tuple[str, int] = scanstring(text, pos + 1, True)
    except json.JSONDecodeError as exc:
        raise JsonSyntaxError(exc.msg) from exc
    return found


def _key(text: str, pos: int) -> tuple[str, int]:
    if text[pos:pos + 1] != '"':
        raise JsonSyntaxError(f"expected an object key at offset {pos}")
    key, pos = _string(text, pos)
    pos = _WHITESPACE.match(text, pos).end()  # type: ignore[union-attr]
    if text[pos:pos + 1] != ":":
        raise JsonSyntaxError(f"expected ':' at offset {pos}")
    return key, _WHITESPACE.match(text, pos + 1).end()  # type: ignore[union-attr]
