"""The tree of Go 1.22's ``regexp/syntax``: ops, flags, limits, errors and the node type.

Shared by the parser (``goparse``, ``goscan``, ``goalt``) and the matcher (``gomatch``); the
numbers are Go's own, since alternation factoring compares ops by number.
"""

from __future__ import annotations

from tokenlimit.rules import goclass as cls

# Ops, numbered as Go numbers them (the order matters in alternation factoring).
NO_MATCH, EMPTY_MATCH, LITERAL, CHAR_CLASS, ANY_CHAR_NOT_NL, ANY_CHAR = 1, 2, 3, 4, 5, 6
BEGIN_LINE, END_LINE, BEGIN_TEXT, END_TEXT, WORD_BOUNDARY, NO_WORD_BOUNDARY = 7, 8, 9, 10, 11, 12
CAPTURE, STAR, PLUS, QUEST, REPEAT, CONCAT, ALTERNATE = 13, 14, 15, 16, 17, 18, 19
OP_PSEUDO = 128
LEFT_PAREN, VERTICAL_BAR = 128, 129

# Flags, as Go's syntax.Flags (a uint16).
FOLD_CASE, LITERAL_FLAG, CLASS_NL, DOT_NL, ONE_LINE, NON_GREEDY = 1, 2, 4, 8, 16, 32
PERL_X, UNICODE_GROUPS, WAS_DOLLAR = 64, 128, 256
PERL = CLASS_NL | ONE_LINE | PERL_X | UNICODE_GROUPS
_ALL_FLAGS = 0xFFFF

MAX_HEIGHT = 1000
MAX_SIZE = (128 << 20) // 40
MAX_RUNES = (128 << 20) // 4

ERR_INVALID_CHAR_RANGE = "invalid character class range"
ERR_INVALID_ESCAPE = "invalid escape sequence"
ERR_INVALID_NAMED_CAPTURE = "invalid named capture"
ERR_INVALID_PERL_OP = "invalid or unsupported Perl syntax"
ERR_INVALID_REPEAT_OP = "invalid nested repetition operator"
ERR_INVALID_REPEAT_SIZE = "invalid repeat count"
ERR_MISSING_BRACKET = "missing closing ]"
ERR_MISSING_PAREN = "missing closing )"
ERR_MISSING_REPEAT_ARGUMENT = "missing argument to repetition operator"
ERR_TRAILING_BACKSLASH = "trailing backslash at end of expression"
ERR_UNEXPECTED_PAREN = "unexpected )"
ERR_NESTING_DEPTH = "expression nests too deeply"
ERR_LARGE = "expression too large"


class GoRegexError(ValueError):
    """Go refuses the pattern; ``str()`` is Go's own message (``error parsing regexp: ...``)."""

    def __init__(self, code: str, expr: str) -> None:
        self.code = code
        self.expr = expr
        super().__init__(f"error parsing regexp: {code}: `{expr}`")


class LimitExceeded(Exception):
    """Go's panic(ErrLarge) / panic(ErrNestingDepth), turned into an error by ``parse``."""

    def __init__(self, code: str) -> None:
        self.code = code


class GoRegexp:
    """One node of Go's ``syntax.Regexp`` tree (identity matters: Go caches sizes by pointer)."""

    __slots__ = ("cap", "flags", "max", "min", "name", "op", "rune", "sub")

    def __init__(self, op: int = 0) -> None:
        self.op = op
        self.flags = 0
        self.sub: list[GoRegexp] = []
        self.rune: list[int] = []
        self.min = 0
        self.max = 0
        self.cap = 0
        self.name = ""

    def reset(self, op: int) -> None:
        self.__init__(op)  # type: ignore[misc]

    def equal(self, other: GoRegexp | None) -> bool:
        """Go's ``Regexp.Equal`` (iterative)."""
        pending: list[tuple[GoRegexp, GoRegexp | None]] = [(self, other)]
        while pending:
            x, y = pending.pop()
            if y is None or x.op != y.op:
                return False
            if x.op == END_TEXT and x.flags & WAS_DOLLAR != y.flags & WAS_DOLLAR:
                return False
            if x.op in (LITERAL, CHAR_CLASS) and x.rune != y.rune:
                return False
            if x.op in (ALTERNATE, CONCAT):
                if len(x.sub) != len(y.sub):
                    return False
                pending.extend(zip(x.sub, y.sub, strict=True))
            elif x.op in (STAR, PLUS, QUEST, REPEAT):
                if x.flags & NON_GREEDY != y.flags & NON_GREEDY:
                    return False
                if x.op == REPEAT and (x.min, x.max) != (y.min, y.max):
                    return False
                pending.append((x.sub[0], y.sub[0]))
            elif x.op == CAPTURE:
                if x.cap != y.cap or x.name != y.name:
                    return False
                pending.append((x.sub[0], y.sub[0]))
        return True


def is_char_class(re: GoRegexp) -> bool:
    """Whether ``re`` matches exactly one character (Go's ``isCharClass``)."""
    return (re.op == LITERAL and len(re.rune) == 1) or re.op in (CHAR_CLASS, ANY_CHAR_NOT_NL,
                                                                  ANY_CHAR)


def clean_alt(re: GoRegexp) -> None:
    """Clean a class joining an alternation; the classes of ``.`` and ``(?s).`` become dots."""
    if re.op == CHAR_CLASS:
        re.rune = cls.clean_class(re.rune)
        if re.rune == [0, cls.MAX_RUNE]:
            re.rune = []
            re.op = ANY_CHAR
        elif re.rune == [0, 9, 11, cls.MAX_RUNE]:
            re.rune = []
            re.op = ANY_CHAR_NOT_NL


def match_rune(re: GoRegexp, r: int) -> bool:
    """Whether the one-character expression ``re`` matches rune ``r``."""
    if re.op == LITERAL:
        return len(re.rune) == 1 and re.rune[0] == r
    if re.op == CHAR_CLASS:
        return any(re.rune[i] <= r <= re.rune[i + 1] for i in range(0, len(re.rune), 2))
    if re.op == ANY_CHAR_NOT_NL:
        return r != 10
    return re.op == ANY_CHAR


def merge_char_class(dst: GoRegexp, src: GoRegexp) -> None:
    """Merge the one-character ``src`` into ``dst`` (alternation of classes)."""
    if dst.op == ANY_CHAR_NOT_NL:
        if match_rune(src, 10):
            dst.op = ANY_CHAR
    elif dst.op == CHAR_CLASS:
        if src.op == LITERAL:
            dst.rune = cls.append_literal(dst.rune, src.rune[0], bool(src.flags & FOLD_CASE))
        else:
            dst.rune = cls.append_class(dst.rune, src.rune)
    elif dst.op == LITERAL:
        if src.rune[0] == dst.rune[0] and src.flags == dst.flags:
            return
        dst.op = CHAR_CLASS
        first = dst.rune[0]
        dst.rune = cls.append_literal([], first, bool(dst.flags & FOLD_CASE))
        dst.rune = cls.append_literal(dst.rune, src.rune[0], bool(src.flags & FOLD_CASE))
