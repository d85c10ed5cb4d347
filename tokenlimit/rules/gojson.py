"""A JSON reader that keeps positions and the literal text of numbers.

Python's ``json`` forgets where values stand and turns ``60.0`` into a float silently; the Go
service refuses it. This reader follows RFC 8259 (as Go's ``encoding/json`` does) and returns
``Node`` trees; a syntax error raises ``RuleError`` at the exact line and column.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from tokenlimit.errors import RuleError
from tokenlimit.rules.model import Location
from tokenlimit.rules.nodes import Node

# Maps an offset in the JSON text to (line, column), both 1-based, in the enclosing file.
Locator = Callable[[int], tuple[int, int]]

_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_WS = " \t\n\r"
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_MAX_DEPTH = 500


def text_locator(text: str) -> Locator:
    """Locate offsets in ``text`` itself."""
    starts = [0]
    starts.extend(i + 1 for i, ch in enumerate(text) if ch == "\n")

    def locate(offset: int) -> tuple[int, int]:
        lo, hi = 0, len(starts) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if starts[mid] <= offset:
                lo = mid
            else:
                hi = mid - 1
        return lo + 1, offset - starts[lo] + 1

    return locate


def parse_json(text: str, path: str, locate: Locator | None = None) -> Node:
    """Parse one JSON document into a ``Node``; ``RuleError`` (located) when it is not JSON.

    >>> parse_json('[{"max_tokens": 60.5}]', "<x>").items()[0].pairs()[0][1].value
    '60.5'
    """
    return _Parser(text, path, locate or text_locator(text)).document()


class _Parser:
    def __init__(self, text: str, path: str, locate: Locator) -> None:
        self.text = text
        self.path = path
        self.locate = locate
        self.pos = 0

    def where(self, offset: int) -> Location:
        line, column = self.locate(offset)
        return Location(self.path, line, column)

    def fail(self, message: str, offset: int | None = None) -> RuleError:
        where = self.where(self.pos if offset is None else offset)
        return RuleError(f"invalid JSON: {message}", path=self.path, line=where.line,
                         column=where.column)

    def skip_ws(self) -> None:
        text, pos = self.text, self.pos
        while pos < len(text) and text[pos] in _WS:
            pos += 1
        self.pos = pos

    def document(self) -> Node:
        self.skip_ws()
        if self.pos >= len(self.text):
            raise self.fail("the text is empty")
        node = self.value(0)
        self.skip_ws()
        if self.pos < len(self.text):
            raise self.fail(f"unexpected {self.text[self.pos]!r} after the top-level value")
        return node

    def value(self, depth: int) -> Node:
        if depth > _MAX_DEPTH:
            raise self.fail("nested too deeply")
        self.skip_ws()
        if self.pos >= len(self.text):
            raise self.fail("unexpected end of input")
        ch = self.text[self.pos]
        start = self.pos
        if ch == "{":
            return self.obj(depth)
        if ch == "[":
            return self.array(depth)
        if ch == '"':
            return Node("string", self.string(), self.where(start))
        for word, kind, value in (("true", "bool", True), ("false", "bool", False),
                                  ("null", "null", None)):
            if self.text.startswith(word, self.pos):
                self.pos += len(word)
                return Node(kind, value, self.where(start))  # type: ignore[arg-type]
        match = _NUMBER.match(self.text, self.pos)
        if match:
            self.pos = match.end()
            return Node("number", match.group(), self.where(start))
        raise self.fail(f"unexpected {ch!r}")

    def obj(self, depth: int) -> Node:
        start = self.pos
        self.pos += 1
        pairs: list[tuple[Node, Node]] = []
        self.skip_ws()
        if self.text.startswith("}", self.pos):
            self.pos += 1
            return Node("object", (), self.where(start))
        while True:
            self.skip_ws()
            if not self.text.startswith('"', self.pos):
                raise self.fail("expected a quoted field name")
            key_start = self.pos
            key = Node("string", self.string(), self.where(key_start))
            self.skip_ws()
            if not self.text.startswith(":", self.pos):
                raise self.fail("expected ':' after a field name")
            self.pos += 1
            pairs.append((key, self.value(depth + 1)))
            self.skip_ws()
            if self.text.startswith(",", self.pos):
                self.pos += 1
                continue
            if self.text.startswith("}", self.pos):
                self.pos += 1
                return Node("object", tuple(pairs), self.where(start))
            raise self.fail("expected ',' or '}' in an object")

    def array(self, depth: int) -> Node:
        start = self.pos
        self.pos += 1
        items: list[Node] = []
        self.skip_ws()
        if self.text.startswith("]", self.pos):
            self.pos += 1
            return Node("array", (), self.where(start))
        while True:
            items.append(self.value(depth + 1))
            self.skip_ws()
            if self.text.startswith(",", self.pos):
                self.pos += 1
                continue
            if self.text.startswith("]", self.pos):
                self.pos += 1
                return Node("array", tuple(items), self.where(start))
            raise self.fail("expected ',' or ']' in an array")

    def string(self) -> str:
        text = self.text
        self.pos += 1
        out: list[str] = []
        while True:
            if self.pos >= len(text):
                raise self.fail("unterminated string")
            ch = text[self.pos]
            if ch == '"':
                self.pos += 1
                return "".join(out)
            if ch == "\\":
                esc = text[self.pos + 1: self.pos + 2]
                if esc in _ESCAPES:
                    out.append(_ESCAPES[esc])
                    self.pos += 2
                elif esc == "u":
                    digits = text[self.pos + 2: self.pos + 6]
                    if len(digits) != 4 or not all(c in "0123456789abcdefABCDEF" for c in digits):
                        raise self.fail("invalid \\u escape")
                    out.append(chr(int(digits, 16)))
                    self.pos += 6
                else:
                    raise self.fail(f"invalid escape '\\{esc}'")
            elif ch < " ":
                raise self.fail("control character in a string")
            else:
                out.append(ch)
                self.pos += 1
