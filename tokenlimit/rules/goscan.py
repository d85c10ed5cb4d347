"""The scanning half of Go 1.22's regexp parser: the main loop, groups, flags and repeats.

Positions are indexes into the pattern (Go slices its string; the error texts are the same
slices). Patterns here are always valid text: Go's ``invalid UTF-8`` cannot arise, because a
rule's regex comes from JSON, which Go has already decoded to valid UTF-8.
"""

from __future__ import annotations

from tokenlimit.rules.gocharclass import (
    ParserState,
    isalnum,
    parse_class,
    parse_escape,
    parse_perl_class_escape,
    parse_unicode_class,
)
from tokenlimit.rules.gotree import (
    ANY_CHAR,
    ANY_CHAR_NOT_NL,
    BEGIN_LINE,
    BEGIN_TEXT,
    CHAR_CLASS,
    DOT_NL,
    END_LINE,
    END_TEXT,
    ERR_INVALID_ESCAPE,
    ERR_INVALID_NAMED_CAPTURE,
    ERR_INVALID_PERL_OP,
    ERR_INVALID_REPEAT_SIZE,
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
    WAS_DOLLAR,
    WORD_BOUNDARY,
    GoRegexError,
)

_ALL_FLAGS = 0xFFFF


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
            t = parse_class(p, t)
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
        found = parse_unicode_class(p, t, [])
        if found is not None:
            re.rune, rest = found
            p.push(re)
            return rest
    perl = parse_perl_class_escape(p, t, [])
    if perl is not None:
        re.rune, rest = perl
        p.push(re)
        return rest
    p.reuse(re)
    r, t = parse_escape(s, t)
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
        if not name or not all(c == "_" or isalnum(c) for c in name):
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


