"""Go 1.22's ``regexp/syntax`` parser, ported line by line, so every accept/reject is Go's.

The service compiles each ``rate_limit_key_regex`` with Go's ``regexp.Compile`` (Perl flags).
C++ RE2 refuses and accepts different patterns (repeat counts of ten digits, nesting depth,
non-ASCII capture names, program size), so this module is Go's parser itself: the same stack
of partial expressions, the same literal merging and alternation factoring, the same size and
height limits computed on the same trees. ``GoRegexError`` carries Go's exact message.
The tree it returns is matched by ``tokenlimit.rules.gomatch``.

Go release followed: 1.22 (src/regexp/syntax/parse.go of go1.22.10). Recursive walks of Go
are written with explicit stacks here, since Python's default recursion limit is 1,000.
"""

from __future__ import annotations

from collections.abc import Callable

from tokenlimit.rules import goclass as cls
from tokenlimit.rules.goalt import Factoring
from tokenlimit.rules.goscan import scan
from tokenlimit.rules.gotree import (
    ALTERNATE,
    CAPTURE,
    CHAR_CLASS,
    CONCAT,
    EMPTY_MATCH,
    ERR_INVALID_REPEAT_OP,
    ERR_INVALID_REPEAT_SIZE,
    ERR_LARGE,
    ERR_MISSING_PAREN,
    ERR_MISSING_REPEAT_ARGUMENT,
    ERR_NESTING_DEPTH,
    ERR_UNEXPECTED_PAREN,
    FOLD_CASE,
    LEFT_PAREN,
    LITERAL,
    MAX_HEIGHT,
    MAX_RUNES,
    MAX_SIZE,
    NO_MATCH,
    NON_GREEDY,
    OP_PSEUDO,
    PERL,
    PERL_X,
    PLUS,
    QUEST,
    REPEAT,
    STAR,
    VERTICAL_BAR,
    GoRegexError,
    GoRegexp,
    LimitExceeded,
    clean_alt,
    is_char_class,
    merge_char_class,
)


def parse(pattern: str) -> GoRegexp:
    """Parse ``pattern`` as ``regexp.Compile`` does; ``GoRegexError`` with Go's message.

    >>> parse("a{1000000000}")
    Traceback (most recent call last):
    ...
    tokenlimit.rules.gotree.GoRegexError: error parsing regexp: invalid repeat count: `{1000000000}`
    """
    parser = _Parser(pattern)
    try:
        return parser.run()
    except LimitExceeded as exc:
        raise GoRegexError(exc.code, pattern) from None


class _Parser(Factoring):
    def __init__(self, pattern: str) -> None:
        self.s = pattern
        self.flags = PERL
        self.stack: list[GoRegexp] = []
        self.free: list[GoRegexp] = []
        self.num_cap = 0
        self.num_regexp = 0
        self.num_runes = 0
        self.repeats = 0
        self.height: dict[GoRegexp, int] | None = None
        self.size: dict[GoRegexp, int] | None = None

    # --- allocation and limits -------------------------------------------------------------

    def new_regexp(self, op: int) -> GoRegexp:
        if self.free:
            re = self.free.pop()
            re.reset(op)
        else:
            re = GoRegexp(op)
            self.num_regexp += 1
        return re

    def reuse(self, re: GoRegexp) -> None:
        if self.height is not None:
            self.height.pop(re, None)
        self.free.append(re)

    def check_limits(self, re: GoRegexp) -> None:
        if self.num_runes > MAX_RUNES:
            raise LimitExceeded(ERR_LARGE)
        self.check_size(re)
        self.check_height(re)

    def check_size(self, re: GoRegexp) -> None:
        if self.size is None:
            if self.repeats == 0:
                self.repeats = 1
            if re.op == REPEAT:
                n = re.max
                if n == -1:
                    n = re.min
                if n <= 0:
                    n = 1
                if n > MAX_SIZE // self.repeats:
                    self.repeats = MAX_SIZE
                else:
                    self.repeats *= n
            if self.num_regexp < MAX_SIZE // self.repeats:
                return
            self.size = {}
            for item in self.stack:
                self.check_size(item)
        if self._calc(re, self.size, _size_of) > MAX_SIZE:
            raise LimitExceeded(ERR_LARGE)

    def check_height(self, re: GoRegexp) -> None:
        if self.num_regexp < MAX_HEIGHT:
            return
        if self.height is None:
            self.height = {}
            for item in self.stack:
                self.check_height(item)
        if self._calc(re, self.height, _height_of) > MAX_HEIGHT:
            raise LimitExceeded(ERR_NESTING_DEPTH)

    @staticmethod
    def _calc(root: GoRegexp, known: dict[GoRegexp, int],
              combine: Callable[[GoRegexp, list[int]], int]) -> int:
        """Go's calcSize/calcHeight(root, force=true): children come from ``known`` if there."""
        todo: list[tuple[GoRegexp, bool]] = [(root, False)]
        while todo:
            node, expanded = todo.pop()
            if not expanded:
                todo.append((node, True))
                todo.extend((sub, False) for sub in node.sub if sub not in known)
                continue
            known[node] = combine(node, [known[sub] for sub in node.sub])
        return known[root]

    # --- the stack ---------------------------------------------------------------------------

    def push(self, re: GoRegexp) -> GoRegexp | None:
        self.num_runes += len(re.rune)
        r = re.rune
        if re.op == CHAR_CLASS and len(r) == 2 and r[0] == r[1]:
            if self.maybe_concat(r[0], self.flags & ~FOLD_CASE):
                return None
            re.op = LITERAL
            re.rune = r[:1]
            re.flags = self.flags & ~FOLD_CASE
        elif re.op == CHAR_CLASS and (
                (len(r) == 4 and r[0] == r[1] and r[2] == r[3]
                 and cls.simple_fold(r[0]) == r[2] and cls.simple_fold(r[2]) == r[0])
                or (len(r) == 2 and r[0] + 1 == r[1] and cls.simple_fold(r[0]) == r[1]
                    and cls.simple_fold(r[1]) == r[0])):
            if self.maybe_concat(r[0], self.flags | FOLD_CASE):
                return None
            re.op = LITERAL
            re.rune = r[:1]
            re.flags = self.flags | FOLD_CASE
        else:
            self.maybe_concat(-1, 0)
        self.stack.append(re)
        self.check_limits(re)
        return re

    def maybe_concat(self, r: int, flags: int) -> bool:
        n = len(self.stack)
        if n < 2:
            return False
        re1, re2 = self.stack[n - 1], self.stack[n - 2]
        if re1.op != LITERAL or re2.op != LITERAL or \
                re1.flags & FOLD_CASE != re2.flags & FOLD_CASE:
            return False
        re2.rune = re2.rune + re1.rune
        if r >= 0:
            re1.rune = [r]
            re1.flags = flags
            return True
        self.stack.pop()
        self.reuse(re1)
        return False

    def literal(self, r: int) -> None:
        re = self.new_regexp(LITERAL)
        re.flags = self.flags
        if self.flags & FOLD_CASE:
            r = _min_fold_rune(r)
        re.rune = [r]
        self.push(re)

    def op(self, op: int) -> GoRegexp:
        re = self.new_regexp(op)
        re.flags = self.flags
        pushed = self.push(re)
        assert pushed is not None
        return pushed

    def repeat(self, op: int, lo: int, hi: int, before: int, after: int,
               last_repeat: int) -> int:
        flags = self.flags
        if self.flags & PERL_X:
            if after < len(self.s) and self.s[after] == "?":
                after += 1
                flags ^= NON_GREEDY
            if last_repeat >= 0:
                raise GoRegexError(ERR_INVALID_REPEAT_OP, self.s[last_repeat:after])
        n = len(self.stack)
        if n == 0 or self.stack[n - 1].op >= OP_PSEUDO:
            raise GoRegexError(ERR_MISSING_REPEAT_ARGUMENT, self.s[before:after])
        sub = self.stack[n - 1]
        re = self.new_regexp(op)
        re.min, re.max, re.flags = lo, hi, flags
        re.sub = [sub]
        self.stack[n - 1] = re
        self.check_limits(re)
        if op == REPEAT and (lo >= 2 or hi >= 2) and not _repeat_is_valid(re, 1000):
            raise GoRegexError(ERR_INVALID_REPEAT_SIZE, self.s[before:after])
        return after

    def concat(self) -> GoRegexp | None:
        self.maybe_concat(-1, 0)
        i = len(self.stack)
        while i > 0 and self.stack[i - 1].op < OP_PSEUDO:
            i -= 1
        subs = self.stack[i:]
        del self.stack[i:]
        if not subs:
            return self.push(self.new_regexp(EMPTY_MATCH))
        return self.push(self.collapse(subs, CONCAT))

    def alternate(self) -> GoRegexp | None:
        i = len(self.stack)
        while i > 0 and self.stack[i - 1].op < OP_PSEUDO:
            i -= 1
        subs = self.stack[i:]
        del self.stack[i:]
        if subs:
            clean_alt(subs[-1])
        if not subs:
            return self.push(self.new_regexp(NO_MATCH))
        return self.push(self.collapse(subs, ALTERNATE))

    def swap_vertical_bar(self) -> bool:
        stack = self.stack
        n = len(stack)
        if n >= 3 and stack[n - 2].op == VERTICAL_BAR and is_char_class(stack[n - 1]) \
                and is_char_class(stack[n - 3]):
            re1, re3 = stack[n - 1], stack[n - 3]
            if re1.op > re3.op:
                re1, re3 = re3, re1
                stack[n - 3] = re3
            merge_char_class(re3, re1)
            self.reuse(re1)
            stack.pop()
            return True
        if n >= 2:
            re1, re2 = stack[n - 1], stack[n - 2]
            if re2.op == VERTICAL_BAR:
                if n >= 3:
                    clean_alt(stack[n - 3])
                stack[n - 2] = re1
                stack[n - 1] = re2
                return True
        return False

    def parse_vertical_bar(self) -> None:
        self.concat()
        if not self.swap_vertical_bar():
            self.op(VERTICAL_BAR)

    def parse_right_paren(self) -> None:
        self.concat()
        if self.swap_vertical_bar():
            self.stack.pop()
        self.alternate()
        n = len(self.stack)
        if n < 2:
            raise GoRegexError(ERR_UNEXPECTED_PAREN, self.s)
        re1, re2 = self.stack[n - 1], self.stack[n - 2]
        del self.stack[n - 2:]
        if re2.op != LEFT_PAREN:
            raise GoRegexError(ERR_UNEXPECTED_PAREN, self.s)
        self.flags = re2.flags
        if re2.cap == 0:
            self.push(re1)
        else:
            re2.op = CAPTURE
            re2.sub = [re1]
            self.push(re2)

    # --- the main loop lives in goscan (module size); see _Parser.run there -----------------

    def run(self) -> GoRegexp:
        scan(self)
        self.concat()
        if self.swap_vertical_bar():
            self.stack.pop()
        self.alternate()
        if len(self.stack) != 1:
            raise GoRegexError(ERR_MISSING_PAREN, self.s)
        return self.stack[0]


def _height_of(node: GoRegexp, subs: list[int]) -> int:
    return 1 + max(subs, default=0)


def _size_of(re: GoRegexp, subs: list[int]) -> int:
    op = re.op
    size = 0
    if op == LITERAL:
        size = len(re.rune)
    elif op in (CAPTURE, STAR):
        size = 2 + subs[0]
    elif op in (PLUS, QUEST):
        size = 1 + subs[0]
    elif op == CONCAT:
        size = sum(subs)
    elif op == ALTERNATE:
        size = sum(subs) + (len(subs) - 1 if len(subs) > 1 else 0)
    elif op == REPEAT:
        sub = subs[0]
        if re.max == -1:
            size = 2 + sub if re.min == 0 else 1 + re.min * sub
        else:
            size = re.max * sub + (re.max - re.min)
    return max(size, 1)


def _repeat_is_valid(root: GoRegexp, limit: int) -> bool:
    todo = [(root, limit)]
    while todo:
        re, n = todo.pop()
        if re.op == REPEAT:
            m = re.max
            if m == 0:
                continue
            if m < 0:
                m = re.min
            if m > n:
                return False
            if m > 0:
                n //= m
        todo.extend((sub, n) for sub in re.sub)
    return True


def _min_fold_rune(r: int) -> int:
    if r < cls.MIN_FOLD or r > cls.MAX_FOLD:
        return r
    m = r0 = r
    r = cls.simple_fold(r)
    while r != r0:
        m = min(m, r)
        r = cls.simple_fold(r)
    return m


