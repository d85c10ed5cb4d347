"""RE2 (Go ``regexp``) syntax as a small tree of character sets, so regexes can be compared.

Only the part of the syntax that has a plain regular language is translated: literals,
classes (with Perl and POSIX classes), ``.``, groups, alternation, repetition, ``^``/``\\A``
and ``$``/``\\z``, ``\\Q...\\E`` and the ``s``, ``U`` and ``i`` flags (``i`` for ASCII
letters, whose case orbits RE2 extends only with the Kelvin sign for k and the long s for s).
Anything else (``\\b``, ``\\p{...}``, the multi-line flag, ``(?i)`` around non-ASCII letters,
``\\C``) raises ``Unsupported``: the linter then says the analysis was skipped for that rule,
it never guesses.

Characters are Unicode code points; a key never holds a surrogate (Go decodes an unpaired
``\\uD800`` in JSON to U+FFFD), so sets never contain them.
"""

from __future__ import annotations

from dataclasses import dataclass

Intervals = tuple[tuple[int, int], ...]
MAX_CHAR = 0x10FFFF
_SURROGATES = (0xD800, 0xDFFF)
UNIVERSE: Intervals = ((0, _SURROGATES[0] - 1), (_SURROGATES[1] + 1, MAX_CHAR))
MAX_REPEAT = 1000


class Unsupported(Exception):
    """The pattern uses syntax without a plain regular language here (or is not RE2)."""


@dataclass(frozen=True, slots=True)
class Chars:
    """One character from ``intervals`` (sorted, disjoint, inclusive)."""

    intervals: Intervals


@dataclass(frozen=True, slots=True)
class Concat:
    parts: tuple[Regex, ...]


@dataclass(frozen=True, slots=True)
class Alternation:
    options: tuple[Regex, ...]


@dataclass(frozen=True, slots=True)
class Repeat:
    """``body`` at least ``low`` and at most ``high`` times (``None``: unbounded)."""

    body: Regex
    low: int
    high: int | None


@dataclass(frozen=True, slots=True)
class Anchor:
    """``begin`` (``^``, ``\\A``) or ``end`` (``$``, ``\\z``) of the key."""

    which: str


Regex = Chars | Concat | Alternation | Repeat | Anchor
EMPTY = Concat(())


def normalize(pairs: list[tuple[int, int]]) -> Intervals:
    """Sort, merge and drop surrogates."""
    cut: list[tuple[int, int]] = []
    for lo, hi in pairs:
        if hi < _SURROGATES[0] or lo > _SURROGATES[1]:
            cut.append((lo, hi))
            continue
        if lo < _SURROGATES[0]:
            cut.append((lo, _SURROGATES[0] - 1))
        if hi > _SURROGATES[1]:
            cut.append((_SURROGATES[1] + 1, hi))
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(cut):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
        else:
            merged.append((lo, hi))
    return tuple(merged)


def negate(intervals: Intervals) -> Intervals:
    """Every key character not in ``intervals``."""
    out: list[tuple[int, int]] = []
    start = 0
    for lo, hi in intervals:
        if lo > start:
            out.append((start, lo - 1))
        start = hi + 1
    if start <= MAX_CHAR:
        out.append((start, MAX_CHAR))
    return normalize(out)


_FOLD_SPECIAL = {0x6B: (0x212A,), 0x4B: (0x212A,), 0x73: (0x17F,), 0x53: (0x17F,),
                 0x212A: (0x6B, 0x4B), 0x17F: (0x73, 0x53)}


def fold_case(intervals: Intervals) -> Intervals:
    """``intervals`` closed under RE2's case folding; ``Unsupported`` for non-ASCII letters.

    >>> fold_case(((ord("j"), ord("k")),))
    ((74, 75), (106, 107), (8490, 8490))
    """
    out = list(intervals)
    for lo, hi in intervals:
        for first, last, shift in ((65, 90, 32), (97, 122, -32)):
            low, high = max(lo, first), min(hi, last)
            if low <= high:
                out.append((low + shift, high + shift))
        out.extend((extra, extra) for code, extras in _FOLD_SPECIAL.items()
                   if lo <= code <= hi for extra in extras)
        low = max(lo, 128)
        if low > hi:
            continue
        if hi - low > 4096:
            raise Unsupported("(?i) over a wide non-ASCII range")
        for code in range(low, hi + 1):
            char = chr(code)
            if code not in _FOLD_SPECIAL and (char.lower() != char or char.upper() != char):
                raise Unsupported("(?i) with non-ASCII letters")
    return normalize(out)


def _ranges(text: str) -> list[tuple[int, int]]:
    return [(ord(text[i]), ord(text[i + 2])) for i in range(0, len(text), 3)]


_PERL = {
    "d": _ranges("0-9"),
    "s": [(9, 10), (12, 13), (32, 32)],
    "w": [*_ranges("0-9A-Za-z"), (95, 95)],
}
_POSIX = {
    "alnum": _ranges("0-9A-Za-z"), "alpha": _ranges("A-Za-z"), "ascii": [(0, 127)],
    "blank": [(9, 9), (32, 32)], "cntrl": [(0, 31), (127, 127)], "digit": _ranges("0-9"),
    "graph": [(33, 126)], "lower": _ranges("a-z"), "print": [(32, 126)],
    "punct": [(33, 47), (58, 64), (91, 96), (123, 126)], "space": [(9, 13), (32, 32)],
    "upper": _ranges("A-Z"), "word": _PERL["w"], "xdigit": _ranges("0-9A-Fa-f"),
}
_SIMPLE_ESCAPES = {"a": 7, "f": 12, "t": 9, "n": 10, "r": 13, "v": 11}


def parse_re2(pattern: str) -> Regex:
    """The tree of an RE2 pattern; ``Unsupported`` for syntax without a plain language.

    >>> parse_re2("a?$")
    Concat(parts=(Repeat(body=Chars(intervals=((97, 97),)), low=0, high=1), Anchor(which='end')))
    """
    parser = _Parser(pattern)
    tree = parser.alternation(0)
    if parser.pos != len(pattern):
        raise Unsupported(f"unexpected {pattern[parser.pos]!r}")
    return tree


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.dotall = False
        self.fold = False

    def folded(self, intervals: Intervals) -> Intervals:
        return fold_case(intervals) if self.fold else intervals

    def peek(self, ahead: int = 0) -> str:
        index = self.pos + ahead
        return self.text[index] if index < len(self.text) else ""

    def alternation(self, depth: int) -> Regex:
        if depth > 100:
            raise Unsupported("nested too deeply")
        options = [self.concat(depth)]
        while self.peek() == "|":
            self.pos += 1
            options.append(self.concat(depth))
        return options[0] if len(options) == 1 else Alternation(tuple(options))

    def concat(self, depth: int) -> Regex:
        parts: list[Regex] = []
        while self.peek() not in ("", "|", ")"):
            atom = self.atom(depth)
            if isinstance(atom, tuple):  # \Q...\E: a repetition applies to its last char
                if not atom:
                    continue
                parts.extend(atom[:-1])
                atom = atom[-1]
            if atom is None:
                continue
            parts.append(self.quantified(atom))
        return parts[0] if len(parts) == 1 else Concat(tuple(parts))

    def quantified(self, atom: Regex) -> Regex:
        repeated = False
        while True:
            ch = self.peek()
            if ch in ("*", "+", "?"):
                self.pos += 1
                bounds: tuple[int, int | None] = {"*": (0, None), "+": (1, None),
                                                  "?": (0, 1)}[ch]
            elif ch == "{" and (braces := self.repeat_bounds()) is not None:
                bounds = braces
            else:
                return atom
            if self.peek() == "?":
                self.pos += 1  # non-greedy: the same language
            if repeated:
                raise Unsupported("nested repetition operator")  # a** : Go refuses it
            repeated = True
            atom = Repeat(atom, bounds[0], bounds[1])

    def repeat_bounds(self) -> tuple[int, int | None] | None:
        # RE2 reads {n}, {n,} and {n,m}; any other brace is a literal character.
        end = self.text.find("}", self.pos)
        if end < 0:
            return None
        body = self.text[self.pos + 1:end]
        low_text, comma, high_text = body.partition(",")
        if not low_text.isdigit() or not low_text.isascii():
            return None
        if high_text and not (high_text.isdigit() and high_text.isascii()):
            return None
        low = int(low_text)
        high: int | None = low if not comma else (int(high_text) if high_text else None)
        if low > MAX_REPEAT or (high is not None and (high > MAX_REPEAT or high < low)):
            raise Unsupported("bad repetition count")
        self.pos = end + 1
        return low, high

    def atom(self, depth: int) -> Regex | tuple[Chars, ...] | None:
        ch = self.peek()
        self.pos += 1
        if ch == "(":
            return self.group(depth)
        if ch == "[":
            return Chars(self.char_class())
        if ch == ".":
            dot = UNIVERSE if self.dotall else negate(((10, 10),))
            return Chars(dot)
        if ch == "^":
            return Anchor("begin")
        if ch == "$":
            return Anchor("end")
        if ch == "\\":
            return self.escape()
        if ch in ("*", "+", "?"):
            raise Unsupported("missing argument to repetition operator")
        return Chars(self.folded(normalize([(ord(ch), ord(ch))])))

    def group(self, depth: int) -> Regex | None:
        saved = self.dotall, self.fold
        if self.peek() == "?":
            self.pos += 1
            if self.peek() == "P" or (self.peek() == "<" and self.peek(1) not in ("=", "!")):
                end = self.text.find(">", self.pos)
                if end < 0:
                    raise Unsupported("unterminated group name")
                self.pos = end + 1
            else:
                scoped = self.flags()
                if not scoped:
                    return None  # (?s) applies to the rest of the enclosing group
        body = self.alternation(depth + 1)
        if self.peek() != ")":
            raise Unsupported("missing )")
        self.pos += 1
        self.dotall, self.fold = saved
        return body

    def flags(self) -> bool:
        """Read ``s-U:`` or ``s)``; True when a scoped group ``(?flags:...)`` follows."""
        negated = False
        while True:
            ch = self.peek()
            self.pos += 1
            if ch == "s":
                self.dotall = not negated
            elif ch == "i":
                self.fold = not negated
            elif ch == "U":
                pass  # ungreedy: the same language
            elif ch == "-" and not negated:
                negated = True
            elif ch == ":":
                return True
            elif ch == ")":
                return False
            elif ch == "m":
                raise Unsupported(f"the (?{ch}) flag")
            else:
                raise Unsupported("bad flag syntax")

    def escape(self) -> Regex | tuple[Chars, ...]:
        ch = self.peek()
        self.pos += 1
        if ch == "A":
            return Anchor("begin")
        if ch == "z":
            return Anchor("end")
        if ch == "Q":
            end = self.text.find("\\E", self.pos)
            end = len(self.text) if end < 0 else end
            literal = self.text[self.pos:end]
            self.pos = min(end + 2, len(self.text))
            return tuple(Chars(self.folded(normalize([(ord(c), ord(c))]))) for c in literal)
        found = self.escape_chars(ch)
        return Chars(found if ch.lower() in _PERL else self.folded(found))

    def escape_chars(self, ch: str) -> Intervals:
        """The set an escape stands for, after the backslash and ``ch`` were read."""
        lower = ch.lower()
        if lower in _PERL and ch.isascii():
            base = self.folded(normalize(_PERL[lower]))
            return negate(base) if ch.isupper() else base
        if ch in _SIMPLE_ESCAPES:
            return ((_SIMPLE_ESCAPES[ch], _SIMPLE_ESCAPES[ch]),)
        if ch == "x":
            return self.hex_escape()
        if ch in "01234567" and ch:
            digits = ch
            while len(digits) < 3 and self.peek() and self.peek() in "01234567":
                digits += self.peek()
                self.pos += 1
            code = int(digits, 8)
            return normalize([(code, code)])
        if ch and not ch.isalnum() and ch.isascii():
            return ((ord(ch), ord(ch)),)
        raise Unsupported(f"the escape \\{ch}")

    def hex_escape(self) -> Intervals:
        if self.peek() == "{":
            end = self.text.find("}", self.pos)
            digits = self.text[self.pos + 1:end] if end > 0 else ""
            self.pos = end + 1
        else:
            digits = self.text[self.pos:self.pos + 2]
            self.pos += 2
        try:
            code = int(digits, 16)
        except ValueError as exc:
            raise Unsupported("bad \\x escape") from exc
        if not digits.isascii() or code > MAX_CHAR:
            raise Unsupported("bad \\x escape")
        return normalize([(code, code)])

    def char_class(self) -> Intervals:
        negated = self.peek() == "^"
        if negated:
            self.pos += 1
        pairs: list[tuple[int, int]] = []  # literal characters and ranges: folded below
        sets: list[tuple[int, int]] = []  # Perl and POSIX classes: folded when read
        first = True
        while True:
            ch = self.peek()
            if ch == "":
                raise Unsupported("missing ]")
            if ch == "]" and not first:
                self.pos += 1
                break
            first = False
            if ch == "[" and self.peek(1) == ":":
                sets.extend(self.posix_class())
                continue
            low = self.class_char()
            if low is None:
                continue
            if isinstance(low, tuple):
                sets.extend(low)
                continue
            if self.peek() == "-" and self.peek(1) not in ("]", ""):
                self.pos += 1
                high = self.class_char()
                if not isinstance(high, int) or high < low:
                    raise Unsupported("bad character class range")
                pairs.append((low, high))
            else:
                pairs.append((low, low))
        intervals = normalize([*self.folded(normalize(pairs)), *sets])
        return negate(intervals) if negated else intervals

    def class_char(self) -> int | Intervals | None:
        ch = self.peek()
        self.pos += 1
        if ch != "\\":
            return ord(ch)
        escaped = self.peek()
        self.pos += 1
        found = self.escape_chars(escaped)
        if escaped.lower() in _PERL:
            return found
        return found[0][0] if found else None

    def posix_class(self) -> list[tuple[int, int]]:
        end = self.text.find(":]", self.pos + 2)
        if end < 0:
            raise Unsupported("bad POSIX class")
        name = self.text[self.pos + 2:end]
        self.pos = end + 2
        negated = name.startswith("^")
        name = name.removeprefix("^")
        if name not in _POSIX:
            raise Unsupported(f"unknown POSIX class {name!r}")
        intervals = self.folded(normalize(_POSIX[name]))
        return list(negate(intervals) if negated else intervals)
