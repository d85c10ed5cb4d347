"""Escapes and character classes of Go 1.22's regexp parser: ``[...]``, ``\\pN``, ``\\x{..}``.

Split from ``goscan`` (the main loop) to keep modules small; the same port of parse.go.
"""

from __future__ import annotations

from typing import Protocol

from tokenlimit.rules import goclass as cls
from tokenlimit.rules.gotree import (
    CHAR_CLASS,
    CLASS_NL,
    ERR_INVALID_CHAR_RANGE,
    ERR_INVALID_ESCAPE,
    ERR_MISSING_BRACKET,
    ERR_TRAILING_BACKSLASH,
    FOLD_CASE,
    PERL_X,
    UNICODE_GROUPS,
    GoRegexError,
    GoRegexp,
)


class ParserState(Protocol):
    s: str
    flags: int
    num_cap: int

    def new_regexp(self, op: int) -> GoRegexp: ...
    def reuse(self, re: GoRegexp) -> None: ...
    def push(self, re: GoRegexp) -> GoRegexp | None: ...
    def literal(self, r: int) -> None: ...
    def op(self, op: int) -> GoRegexp: ...
    def repeat(self, op: int, lo: int, hi: int, before: int, after: int,
               last_repeat: int) -> int: ...
    def parse_vertical_bar(self) -> None: ...
    def parse_right_paren(self) -> None: ...


def isalnum(c: str) -> bool:
    """ASCII letter or digit, as Go's parser tests it."""
    return "0" <= c <= "9" or "A" <= c <= "Z" or "a" <= c <= "z"


def _unhex(c: str) -> int:
    return int(c, 16) if len(c) == 1 and c in "0123456789abcdefABCDEF" else -1


def parse_escape(s: str, t: int) -> tuple[int, int]:
    """One escaped character at ``t`` (the backslash): (rune, end)."""
    start = t
    t += 1
    if t >= len(s):
        raise GoRegexError(ERR_TRAILING_BACKSLASH, "")
    c = s[t]
    t += 1
    if c in "1234567" and (t >= len(s) or not "0" <= s[t] <= "7"):
        pass  # a backreference: invalid
    elif c in "01234567":
        r = ord(c) - 48
        for _ in range(2):
            if t >= len(s) or not "0" <= s[t] <= "7":
                break
            r = r * 8 + ord(s[t]) - 48
            t += 1
        return r, t
    elif c == "x":
        if t < len(s):
            c = s[t]
            t += 1
            if c == "{":
                nhex = 0
                r = 0
                while True:
                    if t >= len(s):
                        break
                    c = s[t]
                    t += 1
                    if c == "}":
                        if nhex == 0:
                            break
                        return r, t
                    v = _unhex(c)
                    if v < 0:
                        break
                    r = r * 16 + v
                    if r > cls.MAX_RUNE:
                        break
                    nhex += 1
            else:
                x = _unhex(c)
                if t < len(s):
                    c = s[t]
                    t += 1
                else:
                    c = ""  # Go: nextRune("") fails only on bad UTF-8; empty reads as RuneError
                y = _unhex(c)
                if x >= 0 and y >= 0:
                    return x * 16 + y, t
    elif c in "afnrtv":
        return {"a": 7, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11}[c], t
    elif ord(c) < 0x80 and not isalnum(c):
        return ord(c), t
    raise GoRegexError(ERR_INVALID_ESCAPE, s[start:t])


def _append_group(p: ParserState, r: list[int], group: tuple[int, list[int]]) -> list[int]:
    sign, runes = group
    if not p.flags & FOLD_CASE:
        return cls.append_negated_class(r, runes) if sign < 0 else cls.append_class(r, runes)
    tmp = cls.clean_class(cls.append_folded_class([], runes))
    return cls.append_negated_class(r, tmp) if sign < 0 else cls.append_class(r, tmp)


def parse_perl_class_escape(p: ParserState, t: int,
                             r: list[int]) -> tuple[list[int], int] | None:
    """``\\d``, ``\\s``, ``\\w`` and their negations at ``t``: (class, end), or ``None``."""
    s = p.s
    if not p.flags & PERL_X or len(s) - t < 2 or s[t] != "\\":
        return None
    group = cls.PERL_GROUPS.get(s[t:t + 2])
    if group is None:
        return None
    return _append_group(p, r, group), t + 2


def _parse_named_class(p: ParserState, t: int, r: list[int]) -> tuple[list[int], int] | None:
    s = p.s
    if len(s) - t < 2 or s[t] != "[" or s[t + 1] != ":":
        return None
    i = s.find(":]", t + 2)
    if i < 0:
        return None
    name = s[t:i + 2]
    group = cls.POSIX_GROUPS.get(name)
    if group is None:
        raise GoRegexError(ERR_INVALID_CHAR_RANGE, name)
    return _append_group(p, r, group), i + 2


def parse_unicode_class(p: ParserState, t: int, r: list[int]) -> tuple[list[int], int] | None:
    """``\\pN``, ``\\p{Name}``, ``\\P{^Name}`` at ``t``: (class, end); ``None`` if not one."""
    s = p.s
    if not p.flags & UNICODE_GROUPS or len(s) - t < 2 or s[t] != "\\" or s[t + 1] not in "pP":
        return None
    sign = -1 if s[t + 1] == "P" else 1
    if t + 2 >= len(s):
        # Go reads the missing name as U+FFFD without failing: an unknown class.
        raise GoRegexError(ERR_INVALID_CHAR_RANGE, s[t:])
    if s[t + 2] != "{":
        seq_end = t + 3
        name = s[t + 2:seq_end]
    else:
        end = s.find("}", t)
        if end < 0:
            raise GoRegexError(ERR_INVALID_CHAR_RANGE, s[t:])
        seq_end = end + 1
        name = s[t + 3:end]
    if name.startswith("^"):
        sign = -sign
        name = name[1:]
    table, fold = cls.unicode_table(name)
    if table is None:
        raise GoRegexError(ERR_INVALID_CHAR_RANGE, s[t:seq_end])
    if not p.flags & FOLD_CASE or fold is None:
        out = cls.append_table(r, table) if sign > 0 else cls.append_negated_table(r, table)
        return out, seq_end
    tmp = cls.clean_class(cls.append_table(cls.append_table([], table), fold))
    out = cls.append_class(r, tmp) if sign > 0 else cls.append_negated_class(r, tmp)
    return out, seq_end


def _parse_class_char(s: str, t: int, whole: int) -> tuple[int, int]:
    if t >= len(s):
        raise GoRegexError(ERR_MISSING_BRACKET, s[whole:])
    if s[t] == "\\":
        return parse_escape(s, t)
    return ord(s[t]), t + 1


def parse_class(p: ParserState, start: int) -> int:
    """A bracket class ``[...]`` at ``start``: pushes it and returns the end."""
    s = p.s
    t = start + 1
    re = p.new_regexp(CHAR_CLASS)
    re.flags = p.flags
    sign = 1
    klass: list[int] = []
    if t < len(s) and s[t] == "^":
        sign = -1
        t += 1
        if not p.flags & CLASS_NL:
            klass += [10, 10]
    first = True
    while t >= len(s) or s[t] != "]" or first:
        if t < len(s) and s[t] == "-" and not p.flags & PERL_X and not first and (
                len(s) - t == 1 or s[t + 1] != "]"):
            raise GoRegexError(ERR_INVALID_CHAR_RANGE, s[t:t + 2])
        first = False
        if len(s) - t > 2 and s[t] == "[" and s[t + 1] == ":":
            named = _parse_named_class(p, t, klass)
            if named is not None:
                klass, t = named
                continue
        found = parse_unicode_class(p, t, klass)
        if found is None:
            found = parse_perl_class_escape(p, t, klass)
        if found is not None:
            klass, t = found
            continue
        range_start = t
        lo, t = _parse_class_char(s, t, start)
        hi = lo
        if len(s) - t >= 2 and s[t] == "-" and s[t + 1] != "]":
            t += 1
            hi, t = _parse_class_char(s, t, start)
            if hi < lo:
                raise GoRegexError(ERR_INVALID_CHAR_RANGE, s[range_start:t])
        if p.flags & FOLD_CASE:
            klass = cls.append_folded_range(klass, lo, hi)
        else:
            klass = cls.append_range(klass, lo, hi)
    t += 1
    klass = cls.clean_class(klass)
    if sign < 0:
        klass = cls.negate_class(klass)
    re.rune = klass
    p.push(re)
    return t
