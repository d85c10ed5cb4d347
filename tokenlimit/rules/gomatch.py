"""Match keys exactly as Go 1.22's ``regexp.MatchString`` does, on Go's own parse tree.

Go's parser (``goparse``) decides what the pattern means: every character class is spelled out
from Go's Unicode 15.0 tables and case-folding orbits, so nothing is left to C++ RE2's own
(newer) tables. The tree is then written out as an RE2 pattern made only of explicit code-point
ranges, anchors and repetitions, which RE2 matches in linear time with the same answers
(an unanchored search that asks only whether a match exists, so leftmost-first and
leftmost-longest agree).

One construct means something else to RE2: ``\\B`` is tested between bytes in RE2 and between
characters in Go, so RE2 finds ``\\B`` inside a multi-byte character. For a pattern with
``\\B`` and a key that is not ASCII, the same tree is written for Python's ``re`` with
``re.ASCII``, whose ``\\b``/``\\B`` are Go's (ASCII word characters, tested between
characters). That path backtracks, so it is used only for that combination.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import re2

from tokenlimit.rules import goclass as cls
from tokenlimit.rules.gonfa import Program
from tokenlimit.rules.goparse import parse
from tokenlimit.rules.gotree import (
    ALTERNATE,
    ANY_CHAR,
    ANY_CHAR_NOT_NL,
    BEGIN_LINE,
    BEGIN_TEXT,
    CAPTURE,
    CHAR_CLASS,
    CONCAT,
    EMPTY_MATCH,
    END_LINE,
    END_TEXT,
    FOLD_CASE,
    LITERAL,
    NO_MATCH,
    NO_WORD_BOUNDARY,
    PLUS,
    QUEST,
    REPEAT,
    STAR,
    WORD_BOUNDARY,
    GoRegexp,
)

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # RE2 would otherwise print every refused pattern to stderr
# RE2's default budget (8 MiB, which also bounds its DFA cache) refuses patterns Go accepts,
# such as \pL{500}; those get 1 GiB, about 30 million instructions. A pattern Go accepts that
# is larger still for RE2 (a class is one instruction to Go but many UTF-8 byte ranges to
# RE2) is matched by the Pike VM (gonfa).
_LARGE = re2.Options()
_LARGE.log_errors = False
_LARGE.max_mem = 1 << 30
_SURROGATES = re.compile("[\ud800-\udfff]")
_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


def go_string(text: str) -> str:
    """``text`` as a Go string holds it: a lone surrogate (a byte that was not UTF-8) is U+FFFD."""
    return _SURROGATES.sub("\ufffd", text)


def _bytes_search(compiled: Any) -> Callable[[bytes], bool] | None:
    """A search of UTF-8 bytes straight through google-re2's RE2 object: the wrapper's
    ``search`` builds a match object and converts offsets, several microseconds a key, for a
    yes or no (``None`` when that object is not there: the wrapper's search is used)."""
    low = getattr(compiled, "_regexp", None)
    anchor = getattr(getattr(low, "Anchor", None), "UNANCHORED", None)
    if low is None or anchor is None or not hasattr(low, "Match"):
        return None
    match = low.Match

    def search(text: bytes) -> bool:
        return bool(match(anchor, text, 0, len(text))[0][0] >= 0)

    return search


def _literal_search(tree: GoRegexp) -> Callable[[str], bool] | None:
    """For a pattern that is an ASCII literal, maybe with ``^``/``$`` (Go's begin and end of
    text) or with ``.*`` on either side (which may match nothing), the same answer as a
    string test: ``rule-a.*`` matches a key exactly when ``rule-a`` is in it. ``None`` for
    any other pattern. Most rule regexes have this shape, and a string test is about 40
    times faster than RE2 for a key (``simulate`` matches every distinct key of a trace:
    millions on a log keyed by user). ASCII only: an ASCII character of a key is the same
    byte to Go, whatever else the key holds (a byte that is not UTF-8 is no ASCII byte)."""
    parts = list(tree.sub) if tree.op == CONCAT else [tree]
    stars = 0
    while parts and _any_run(parts[0]):
        parts.pop(0)
        stars += 1
    while parts and _any_run(parts[-1]):
        parts.pop()
        stars += 1
    begin = bool(parts) and parts[0].op == BEGIN_TEXT
    end = bool(parts) and parts[-1].op == END_TEXT
    core = parts[begin:len(parts) - end]
    if (stars and (begin or end)) or len(core) != 1:  # ^.*a: a on the first line only
        return None
    if (core[0].op != LITERAL or core[0].flags & FOLD_CASE
            or any(r > 0x7F for r in core[0].rune)):
        return None
    literal = "".join(map(chr, core[0].rune))
    if begin and end:
        return literal.__eq__
    if begin:
        return lambda key: key.startswith(literal)
    if end:
        return lambda key: key.endswith(literal)
    return lambda key: literal in key


def _any_run(node: GoRegexp) -> bool:
    """``.*`` (with or without ``s``, greedy or not): it may match nothing."""
    return node.op == STAR and node.sub[0].op in (ANY_CHAR, ANY_CHAR_NOT_NL)


class GoPattern:
    """A compiled rule regex that answers ``matches(key)`` as Go's ``MatchString``.

    >>> GoPattern(r"\\B").matches("aéa"), GoPattern(r"\\p{Han}").matches("\\U0002ebf0")
    (False, False)
    """

    __slots__ = ("_has_no_boundary", "_literal", "_nfa", "_re2", "_re2_search", "_re2_whole",
                 "_tree", "pattern")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        tree = parse(go_string(pattern))
        self._tree = tree
        self._has_no_boundary = _contains(tree, NO_WORD_BOUNDARY)
        self._literal = _literal_search(tree)
        self._nfa: Program | None = None
        self._re2: Any = _re2_or_none(_write(tree))
        self._re2_search = _bytes_search(self._re2)
        self._re2_whole: Any = None

    def _program(self) -> Program:
        if self._nfa is None:
            self._nfa = Program(self._tree)
        return self._nfa

    def _use_nfa(self, key: str) -> bool:
        return self._re2 is None or (self._has_no_boundary and not key.isascii())

    def matches(self, key: str) -> bool:
        """Whether the pattern matches anywhere in ``key`` (Go's ``MatchString``)."""
        if self._literal is not None:
            return self._literal(key)
        if key.isascii():  # the common case: no surrogate to replace, RE2 agrees with Go
            if self._re2_search is not None:
                return self._re2_search(key.encode())
            if self._re2 is not None:
                return self._re2.search(key) is not None
            return self._program().matches(key)
        key = go_string(key)
        if self._use_nfa(key):
            return self._program().matches(key)
        return self._re2.search(key) is not None

    def search(self, key: str) -> bool | None:
        """``True`` when the pattern matches anywhere in ``key``, else ``None``."""
        return True if self.matches(key) else None

    def fullmatch(self, key: str) -> bool | None:
        """``True`` when the pattern matches the whole of ``key``, else ``None``."""
        key = go_string(key)
        if self._use_nfa(key):
            anchored = GoRegexp(CONCAT)
            anchored.sub = [GoRegexp(BEGIN_TEXT), self._tree, GoRegexp(END_TEXT)]
            return True if Program(anchored).matches(key) else None
        if self._re2_whole is None:
            self._re2_whole = _re2_or_none(f"\\A(?:{_write(self._tree)})\\z")
        if self._re2_whole is None:
            self._re2 = None  # beyond RE2 whole: the Pike VM answers from now on
            return self.fullmatch(key)
        return True if self._re2_whole.search(key) is not None else None


def _re2_or_none(text: str) -> Any:
    """RE2 with its default budget, else 1 GiB, else ``None`` (the Pike VM takes over)."""
    for options in (_OPTIONS, _LARGE):
        try:
            return re2.compile(text, options)
        except re2.error:
            continue
    return None


def _contains(tree: GoRegexp, op: int) -> bool:
    todo = [tree]
    while todo:
        node = todo.pop()
        if node.op == op:
            return True
        todo.extend(node.sub)
    return False


def _rune(r: int) -> str:
    return chr(r) if chr(r) in _PLAIN else f"\\x{{{r:x}}}"


def _class(runes: list[int]) -> str:
    """A bracket expression for Go's range list, without surrogates (no key holds them)."""
    parts: list[str] = []
    for i in range(0, len(runes), 2):
        lo, hi = runes[i], runes[i + 1]
        for a, b in ((lo, min(hi, 0xD7FF)), (max(lo, 0xE000), hi)):
            if a > b:
                continue
            parts.append(_rune(a) if a == b else f"{_rune(a)}-{_rune(b)}")
    if not parts:
        return "[^\\x00-\\x{10ffff}]"
    return "[" + "".join(parts) + "]"


def _literal(node: GoRegexp) -> str:
    if not node.flags & FOLD_CASE:
        return "".join(_rune(r) for r in node.rune)
    out = []
    for r in node.rune:
        orbit = [r]
        f = cls.simple_fold(r)
        while f != r:
            orbit.append(f)
            f = cls.simple_fold(f)
        klass: list[int] = []
        for x in sorted(orbit):
            klass = cls.append_range(klass, x, x)
        out.append(_class(klass) if len(orbit) > 1 else _rune(r))
    return "".join(out)


_ATOMS = {
    ANY_CHAR_NOT_NL: "[^\\n]", ANY_CHAR: "(?s:.)", BEGIN_LINE: "(?m:^)", END_LINE: "(?m:$)",
    BEGIN_TEXT: "\\A", END_TEXT: "\\z", WORD_BOUNDARY: "\\b", NO_WORD_BOUNDARY: "\\B",
    EMPTY_MATCH: "(?:)",
}


def _write(tree: GoRegexp) -> str:
    """The tree as an RE2 pattern of explicit ranges, without recursion."""
    out: list[str] = []
    todo: list[GoRegexp | str] = [tree]
    while todo:
        item = todo.pop()
        if isinstance(item, str):
            out.append(item)
            continue
        op = item.op
        if op in _ATOMS:
            out.append(_ATOMS[op])
        elif op == NO_MATCH:
            out.append(_class([]))
        elif op == LITERAL:
            out.append(_literal(item))
        elif op == CHAR_CLASS:
            out.append(_class(item.rune))
        elif op == CAPTURE:
            todo += [")", item.sub[0]]
            out.append("(?:")
        elif op in (STAR, PLUS, QUEST, REPEAT):
            if op == REPEAT:
                high = "" if item.max == -1 else str(item.max)
                suffix = f"{{{item.min}}}" if item.max == item.min else f"{{{item.min},{high}}}"
            else:
                suffix = {STAR: "*", PLUS: "+", QUEST: "?"}[op]
            todo += [")" + suffix, item.sub[0]]
            out.append("(?:")
        elif op == CONCAT:
            for sub in reversed(item.sub):
                if sub.op == ALTERNATE:
                    todo += [")", sub, "(?:"]
                else:
                    todo.append(sub)
        elif op == ALTERNATE:
            for index, sub in enumerate(reversed(item.sub)):
                todo.append(sub)
                if index < len(item.sub) - 1:
                    todo.append("|")
        else:
            raise AssertionError(f"unknown op {op}")
    return "".join(out)
