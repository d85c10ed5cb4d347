"""The scanning half of Go 1.22's regexp parser: the main loop, escapes, classes, flags, repeats.

Positions are indexes into the pattern (Go slices its string; the error texts are the same
slices). Patterns here are always valid text: Go's ``invalid UTF-8`` cannot arise, because a
rule's regex comes from JSON, which Go has already decoded to valid UTF-8.
"""

from __future__ import annotations

from typing import Protocol

from tokenlimit.rules import goclass as cls
from tokenlimit.rules.gotree import (
    ANY_CHAR,
    ANY_CHAR_NOT_NL,
    BEGIN_LINE,
    BEGIN_TEXT,
    CHAR_CLASS,
    CLASS_NL,
    DOT_NL,
    END_LINE,
    END_TEXT,
    ERR_INVALID_CHAR_RANGE,
    ERR_INVALID_ESCAPE,
    ERR_INVALID_NAMED_CAPTURE,
    ERR_INVALID_PERL_OP,
    ERR_INVALID_REPEAT_SIZE,
    ERR_MISSING_BRACKET,
    ERR_TRAILING_BACKSLASH,
    FOLD_CASE,
    LEFT_PAREN,
    NO_WORD_BOUNDARY,
    NON_GREEDY,
    ONE_LINE,
    PERL_X,
    PLUS,
    QUEST,
    REPEAT,
    STAR,
    UNICODE_GROUPS,
    WAS_DOLLAR,
    WORD_BOUNDARY,
    GoRegexError,
    GoRegexp,
)

_ALL_FLAGS = 0xFFFF


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


def _isalnum(c: str) -> bool:
    return "0" <= c <= "9" or "A" <= c <= "Z" or "a" <= c <= "z"


def _unhex(c: str) -> int:
    return int(c, 16) if len(c) == 1 and c in "0123456789abcdefABCDEF" else -1


def scan(p: ParserState) -> None:
    """Go's main ``parse`` loop (everything before the final concat/alternate)."""
    s = p.s
    t = 0
    last_repeat = -1
    while t < len(s):
        repeat = -1
        c = s[t]
        if c == "(":
            if p.flags & PERL_X and t + 1 < len(s) and s[t + 1] == "?":
                t = _parse_perl_flags(p, t)
            else:
                p.num_cap += 1
                p.op(LEFT_PAREN).cap = p.num_cap
                t += 1
        elif c == "|":
            p.parse_vertical_bar()
            t += 1
        elif c == ")":
            p.parse_right_paren()
            t += 1
        elif c == "^":
            p.op(BEGIN_TEXT if p.flags & ONE_LINE else BEGIN_LINE)
            t += 1
        elif c == "$":
            if p.flags & ONE_LINE:
                p.op(END_TEXT).flags |= WAS_DOLLAR
            else:
                p.op(END_LINE)
            t += 1
        elif c == ".":
            p.op(ANY_CHAR if p.flags & DOT_NL else ANY_CHAR_NOT_NL)
            t += 1
        elif c == "[":
            t = _parse_class(p, t)
        elif c in "*+?":
            op = {"*": STAR, "+": PLUS, "?": QUEST}[c]
            after = p.repeat(op, 0, 0, t, t + 1, last_repeat)
            repeat = t
            t = after
        elif c == "{":
            parsed = _parse_repeat(s, t)
            if parsed is None:
                p.literal(ord("{"))
                t += 1
            else:
                lo, hi, after = parsed
                if lo < 0 or lo > 1000 or hi > 1000 or (hi >= 0 and lo > hi):
                    raise GoRegexError(ERR_INVALID_REPEAT_SIZE, s[t:after])
                after = p.repeat(REPEAT, lo, hi, t, after, last_repeat)
                repeat = t
                t = after
        elif c == "\\":
            t = _backslash(p, t)
        else:
            p.literal(ord(c))
            t += 1
        last_repeat = repeat


def _backslash(p: ParserState, t: int) -> int:
    s = p.s
    if p.flags & PERL_X and t + 1 < len(s):
        nxt = s[t + 1]
        simple = {"A": BEGIN_TEXT, "b": WORD_BOUNDARY, "B": NO_WORD_BOUNDARY, "z": END_TEXT}
        if nxt in simple:
            p.op(simple[nxt])
            return t + 2
        if nxt == "C":
            raise GoRegexError(ERR_INVALID_ESCAPE, s[t:t + 2])
        if nxt == "Q":
            end = s.find("\\E", t + 2)
            lit = s[t + 2:] if end < 0 else s[t + 2:end]
            for ch in lit:
                p.literal(ord(ch))
            return len(s) if end < 0 else end + 2
    re = p.new_regexp(CHAR_CLASS)
    re.flags = p.flags
    if t + 1 < len(s) and s[t + 1] in "pP":
        found = _parse_unicode_class(p, t, [])
        if found is not None:
            re.rune, rest = found
            p.push(re)
            return rest
    perl = _parse_perl_class_escape(p, t, [])
    if perl is not None:
        re.rune, rest = perl
        p.push(re)
        return rest
    p.reuse(re)
    r, t = _parse_escape(s, t)
    p.literal(r)
    return t


def _parse_repeat(s: str, t: int) -> tuple[int, int, int] | None:
    """``{n}``, ``{n,}``, ``{n,m}`` at ``t``: (min, max, end) or ``None`` for a literal ``{``."""
    t += 1
    got = _parse_int(s, t)
    if got is None:
        return None
    lo, t = got
    if t >= len(s):
        return None
    if s[t] != ",":
        hi = lo
    else:
        t += 1
        if t >= len(s):
            return None
        if s[t] == "}":
            hi = -1
        else:
            got = _parse_int(s, t)
            if got is None:
                return None
            hi, t = got
            if hi < 0:
                lo = -1
    if t >= len(s) or s[t] != "}":
        return None
    return lo, hi, t + 1


def _parse_int(s: str, t: int) -> tuple[int, int] | None:
    if t >= len(s) or not "0" <= s[t] <= "9":
        return None
    if t + 1 < len(s) and s[t] == "0" and "0" <= s[t + 1] <= "9":
        return None
    start = t
    while t < len(s) and "0" <= s[t] <= "9":
        t += 1
    n = 0
    for ch in s[start:t]:
        if n >= 100_000_000:  # Go stops at this point: ten or more digits are -1, invalid
            n = -1
            break
        n = n * 10 + ord(ch) - 48
    return n, t


def _parse_perl_flags(p: ParserState, start: int) -> int:
    s = p.s
    t = start
    starts_with_p = len(s) - t > 4 and s[t + 2] == "P" and s[t + 3] == "<"
    starts_with_name = len(s) - t > 3 and s[t + 2] == "<"
    if starts_with_p or starts_with_name:
        expr_start = t + (4 if starts_with_p else 3)
        end = s.find(">", t)
        if end < 0:
            raise GoRegexError(ERR_INVALID_NAMED_CAPTURE, s[start:])
        name = s[expr_start:end]
        if not name or not all(c == "_" or _isalnum(c) for c in name):
            raise GoRegexError(ERR_INVALID_NAMED_CAPTURE, s[t:end + 1])
        p.num_cap += 1
        re = p.op(LEFT_PAREN)
        re.cap = p.num_cap
        re.name = name
        return end + 1
    t += 2
    flags = p.flags
    sign = 1
    saw_flag = False
    while t < len(s):
        c = s[t]
        t += 1
        if c == "i":
            flags |= FOLD_CASE
            saw_flag = True
        elif c == "m":
            flags &= ~ONE_LINE & _ALL_FLAGS
            saw_flag = True
        elif c == "s":
            flags |= DOT_NL
            saw_flag = True
        elif c == "U":
            flags |= NON_GREEDY
            saw_flag = True
        elif c == "-":
            if sign < 0:
                break
            sign = -1
            flags = ~flags & _ALL_FLAGS
            saw_flag = False
        elif c in ":)":
            if sign < 0:
                if not saw_flag:
                    break
                flags = ~flags & _ALL_FLAGS
            if c == ":":
                p.op(LEFT_PAREN)
            p.flags = flags
            return t
        else:
            break
    raise GoRegexError(ERR_INVALID_PERL_OP, s[start:t])


def _parse_escape(s: str, t: int) -> tuple[int, int]:
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
    elif ord(c) < 0x80 and not _isalnum(c):
        return ord(c), t
    raise GoRegexError(ERR_INVALID_ESCAPE, s[start:t])


def _append_group(p: ParserState, r: list[int], group: tuple[int, list[int]]) -> list[int]:
    sign, runes = group
    if not p.flags & FOLD_CASE:
        return cls.append_negated_class(r, runes) if sign < 0 else cls.append_class(r, runes)
    tmp = cls.clean_class(cls.append_folded_class([], runes))
    return cls.append_negated_class(r, tmp) if sign < 0 else cls.append_class(r, tmp)


def _parse_perl_class_escape(p: ParserState, t: int,
                             r: list[int]) -> tuple[list[int], int] | None:
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


def _parse_unicode_class(p: ParserState, t: int, r: list[int]) -> tuple[list[int], int] | None:
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
        return _parse_escape(s, t)
    return ord(s[t]), t + 1


def _parse_class(p: ParserState, start: int) -> int:
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
        found = _parse_unicode_class(p, t, klass)
        if found is None:
            found = _parse_perl_class_escape(p, t, klass)
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
