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
from typing import Any

import re2

from tokenlimit.rules import goclass as cls
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
# RE2) is matched by Python's re.
_LARGE = re2.Options()
_LARGE.log_errors = False
_LARGE.max_mem = 1 << 30
_SURROGATES = re.compile("[\ud800-\udfff]")
_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


def go_string(text: str) -> str:
    """``text`` as a Go string holds it: a lone surrogate (a byte that was not UTF-8) is U+FFFD."""
    return _SURROGATES.sub("\ufffd", text)


class GoPattern:
    """A compiled rule regex that answers ``search(key)`` as Go's ``MatchString``.

    >>> GoPattern(r"\\B").matches("aéa"), GoPattern(r"\\p{Han}").matches("\\U0002ebf0")
    (False, False)
    """

    __slots__ = ("_engines", "_has_no_boundary", "_tree", "pattern")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        tree = parse(go_string(pattern))
        self._tree = tree
        self._has_no_boundary = _contains(tree, NO_WORD_BOUNDARY)
        # (dialect, whole key) -> compiled; RE2 first, Python's re only where RE2 differs
        self._engines: dict[tuple[str, bool], Any] = {}
        self._engine("re2", False)

    def _engine(self, dialect: str, whole: bool) -> Any:
        found = self._engines.get((dialect, whole))
        if found is not None:
            return found
        text = _write(self._tree, dialect)
        if whole:
            text = f"\\A(?:{text})" + ("\\z" if dialect == "re2" else "\\Z")
        if dialect == "re2":
            for options in (_OPTIONS, _LARGE):
                try:
                    found = re2.compile(text, options)
                    break
                except re2.error:
                    continue
            else:  # Go accepted it, but it is beyond RE2's largest budget
                found = self._engine("python", whole)
        else:
            found = re.compile(text, re.ASCII)
        self._engines[(dialect, whole)] = found
        return found

    def _run(self, key: str, whole: bool) -> Any:
        key = go_string(key)
        dialect = "python" if self._has_no_boundary and not key.isascii() else "re2"
        return self._engine(dialect, whole).search(key)

    def matches(self, key: str) -> bool:
        """Whether the pattern matches anywhere in ``key`` (Go's ``MatchString``)."""
        return self._run(key, False) is not None

    def search(self, key: str) -> Any:
        """A match object when the pattern matches anywhere in ``key``, else ``None``."""
        return self._run(key, False)

    def fullmatch(self, key: str) -> Any:
        """A match object when the pattern matches the whole of ``key``, else ``None``."""
        return self._run(key, True)


def _contains(tree: GoRegexp, op: int) -> bool:
    todo = [tree]
    while todo:
        node = todo.pop()
        if node.op == op:
            return True
        todo.extend(node.sub)
    return False


def _rune(r: int, dialect: str) -> str:
    if chr(r) in _PLAIN:
        return chr(r)
    return f"\\x{{{r:x}}}" if dialect == "re2" else f"\\U{r:08x}"


def _class(runes: list[int], dialect: str) -> str:
    """A bracket expression for Go's range list, without surrogates (no key holds them)."""
    parts: list[str] = []
    for i in range(0, len(runes), 2):
        lo, hi = runes[i], runes[i + 1]
        for a, b in ((lo, min(hi, 0xD7FF)), (max(lo, 0xE000), hi)):
            if a > b:
                continue
            parts.append(_rune(a, dialect) if a == b
                         else f"{_rune(a, dialect)}-{_rune(b, dialect)}")
    if not parts:
        return "[^\\x00-\\x{10ffff}]" if dialect == "re2" else "(?!)"
    return "[" + "".join(parts) + "]"


def _literal(node: GoRegexp, dialect: str) -> str:
    if not node.flags & FOLD_CASE:
        return "".join(_rune(r, dialect) for r in node.rune)
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
        out.append(_class(klass, dialect) if len(orbit) > 1 else _rune(r, dialect))
    return "".join(out)


_ATOMS = {
    ANY_CHAR_NOT_NL: ("[^\\n]", "[^\\n]"), ANY_CHAR: ("(?s:.)", "(?s:.)"),
    BEGIN_LINE: ("(?m:^)", "(?m:^)"), END_LINE: ("(?m:$)", "(?m:$)"),
    BEGIN_TEXT: ("\\A", "\\A"), END_TEXT: ("\\z", "\\Z"),
    WORD_BOUNDARY: ("\\b", "\\b"), NO_WORD_BOUNDARY: ("\\B", "\\B"),
    EMPTY_MATCH: ("(?:)", "(?:)"),
}


def _write(tree: GoRegexp, dialect: str) -> str:
    """The tree as a pattern for ``dialect`` (``re2`` or ``python``), without recursion."""
    out: list[str] = []
    todo: list[GoRegexp | str] = [tree]
    python = dialect == "python"
    while todo:
        item = todo.pop()
        if isinstance(item, str):
            out.append(item)
            continue
        op = item.op
        if op in _ATOMS:
            out.append(_ATOMS[op][python])
        elif op == NO_MATCH:
            out.append(_class([], dialect))
        elif op == LITERAL:
            out.append(_literal(item, dialect))
        elif op == CHAR_CLASS:
            out.append(_class(item.rune, dialect))
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
