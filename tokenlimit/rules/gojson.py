"""A JSON reader that keeps positions and the literal text of numbers.

Python's ``json`` forgets where values stand and turns ``60.0`` into a float silently; the Go
service refuses it. This reader follows RFC 8259 (as Go's ``encoding/json`` does) and returns
``Node`` trees; a syntax error raises ``RuleError`` at the exact line and column.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from tokenlimit.errors import RuleError
from tokenlimit.rules.model import Location
from tokenlimit.rules.nodes import Node

# Maps an offset in the JSON text to (line, column), both 1-based, in the enclosing file.
Locator = Callable[[int], tuple[int, int]]

_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_WS = " \t\n\r"
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
# Go's encoding/json scanner refuses a document nested deeper than this ("exceeded max depth").
MAX_DEPTH = 10_000
_BAD_BYTES = ("\udc80", "\udcff")  # how Python's surrogateescape carries undecodable bytes


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


@dataclass(frozen=True, slots=True)
class Replacement:
    """A JSON string holding invalid UTF-8: Go reads each bad byte as U+FFFD.

    ``bad_bytes`` are the bytes that were not UTF-8 (empty when only unpaired surrogate escapes
    such as ``\\ud800`` were replaced); ``value`` is the string as the service sees it.
    """

    location: Location
    bad_bytes: bytes
    escapes: int
    value: str


def parse_json(text: str, path: str, locate: Locator | None = None,
               replaced: list[Replacement] | None = None) -> Node:
    """Parse one JSON document into a ``Node``; ``RuleError`` (located) when it is not JSON.

    ``text`` may carry undecodable bytes as surrogate escapes (``bytes.decode("utf-8",
    "surrogateescape")``): inside strings each becomes U+FFFD, as Go's decoder reads them, and
    is listed in ``replaced``; anywhere else it is a syntax error, as in Go. Nesting is read
    without recursion, up to Go's limit of 10,000 levels.

    >>> parse_json('[{"max_tokens": 60.5}]', "<x>").items()[0].pairs()[0][1].value
    '60.5'
    >>> parse_json(r'"\\ud83d\\ude00 \\ud800"', "<x>").value == "\\U0001f600 \\ufffd"
    True
    """
    parser = _Parser(text, path, locate or text_locator(text))
    node = parser.document()
    if replaced is not None:
        replaced.extend(parser.replaced)
    return node


@dataclass(slots=True)
class _Open:
    """An array or object whose closing bracket is not read yet."""

    kind: str
    start: int
    items: list[Node] = field(default_factory=list)
    pairs: list[tuple[Node, Node]] = field(default_factory=list)
    key: Node | None = None


class _Parser:
    def __init__(self, text: str, path: str, locate: Locator) -> None:
        self.text = text
        self.path = path
        self.locate = locate
        self.pos = 0
        self.replaced: list[Replacement] = []

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
        if self.text[self.pos] == "\ufeff":
            raise self.fail("invalid character 'ï' looking for beginning of value: a UTF-8 "
                            "byte order mark (BOM) precedes the JSON, and the service exits at "
                            "start-up")
        node = self.value()
        self.skip_ws()
        if self.pos < len(self.text):
            raise self.fail(f"unexpected {self.text[self.pos]!r} after the top-level value")
        return node

    def value(self) -> Node:
        """One value, arrays and objects kept on an explicit stack (no recursion)."""
        stack: list[_Open] = []
        while True:
            node = self.opening(stack)
            if node is None:
                continue  # an array or object was opened: read its first member
            while True:
                if not stack:
                    return node
                top = stack[-1]
                if top.kind == "array":
                    top.items.append(node)
                else:
                    assert top.key is not None
                    top.pairs.append((top.key, node))
                self.skip_ws()
                if self.text.startswith(",", self.pos):
                    self.pos += 1
                    if top.kind == "object":
                        top.key = self.field_name()
                    break
                closer = "]" if top.kind == "array" else "}"
                if not self.text.startswith(closer, self.pos):
                    what = "an array" if top.kind == "array" else "an object"
                    raise self.fail(f"expected ',' or '{closer}' in {what}")
                self.pos += 1
                stack.pop()
                if top.kind == "array":
                    node = Node("array", tuple(top.items), self.where(top.start))
                else:
                    node = Node("object", tuple(top.pairs), self.where(top.start))

    def opening(self, stack: list[_Open]) -> Node | None:
        """A whole scalar or empty container, or ``None`` after opening a non-empty one."""
        self.skip_ws()
        if self.pos >= len(self.text):
            raise self.fail("unexpected end of input")
        ch = self.text[self.pos]
        start = self.pos
        if ch in "[{":
            if len(stack) >= MAX_DEPTH:
                raise self.fail(f"exceeded max depth: nested deeper than {MAX_DEPTH} levels "
                                "(Go's decoder refuses it and the service exits at start-up)")
            self.pos += 1
            self.skip_ws()
            closer = "]" if ch == "[" else "}"
            if self.text.startswith(closer, self.pos):
                self.pos += 1
                return Node("array" if ch == "[" else "object", (), self.where(start))
            opened = _Open("array" if ch == "[" else "object", start)
            if ch == "{":
                opened.key = self.field_name()
            stack.append(opened)
            return None
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

    def field_name(self) -> Node:
        """A quoted field name and its colon."""
        self.skip_ws()
        if not self.text.startswith('"', self.pos):
            raise self.fail("expected a quoted field name")
        key_start = self.pos
        key = Node("string", self.string(), self.where(key_start))
        self.skip_ws()
        if not self.text.startswith(":", self.pos):
            raise self.fail("expected ':' after a field name")
        self.pos += 1
        return key

    def string(self) -> str:
        text = self.text
        start = self.pos
        self.pos += 1
        out: list[str] = []
        bad = bytearray()
        escapes = 0
        while True:
            if self.pos >= len(text):
                raise self.fail("unterminated string")
            ch = text[self.pos]
            if ch == '"':
                self.pos += 1
                value = "".join(out)
                if bad or escapes:
                    self.replaced.append(Replacement(self.where(start), bytes(bad), escapes,
                                                     value))
                return value
            if ch == "\\":
                esc = text[self.pos + 1: self.pos + 2]
                if esc in _ESCAPES:
                    out.append(_ESCAPES[esc])
                    self.pos += 2
                elif esc == "u":
                    code = self.hex4(self.pos + 2)
                    self.pos += 6
                    if 0xD800 <= code <= 0xDFFF:
                        # Go joins a valid surrogate pair; any other half becomes U+FFFD.
                        low = self.hex4(self.pos + 2, strict=False) \
                            if text.startswith("\\u", self.pos) else -1
                        if code <= 0xDBFF and 0xDC00 <= low <= 0xDFFF:
                            code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                            self.pos += 6
                        else:
                            code = 0xFFFD
                            escapes += 1
                    out.append(chr(code))
                else:
                    raise self.fail(f"invalid escape '\\{esc}'")
            elif ch < " ":
                raise self.fail("control character in a string")
            elif "\ud800" <= ch <= "\udfff":
                # An undecodable byte (or a lone surrogate): Go's decoder writes U+FFFD.
                if _BAD_BYTES[0] <= ch <= _BAD_BYTES[1]:
                    bad.append(ord(ch) - 0xDC00)
                else:
                    escapes += 1
                out.append("\ufffd")
                self.pos += 1
            else:
                out.append(ch)
                self.pos += 1

    def hex4(self, offset: int, *, strict: bool = True) -> int:
        """The four hex digits of a ``\\u`` escape at ``offset`` (-1 if not, unless strict)."""
        digits = self.text[offset: offset + 4]
        if len(digits) == 4 and all(c in "0123456789abcdefABCDEF" for c in digits):
            return int(digits, 16)
        if strict:
            raise self.fail("invalid \\u escape")
        return -1
