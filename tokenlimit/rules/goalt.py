"""Go 1.22's alternation factoring (``collapse`` and ``factor`` of regexp/syntax/parse.go).

Go rewrites ``abc|abd`` as ``ab(?:c|d)`` and ``[ab]|[cd]`` as ``[a-d]`` while parsing, and its
size and nesting limits are measured on the rewritten tree, so the rewrite is ported exactly.
"""

from __future__ import annotations

from tokenlimit.rules.gotree import (
    ALTERNATE,
    CONCAT,
    EMPTY_MATCH,
    FOLD_CASE,
    LITERAL,
    REPEAT,
    GoRegexp,
    clean_alt,
    is_char_class,
    merge_char_class,
)


class Factoring:
    """The part of Go's parser that builds concatenations and alternations."""

    def new_regexp(self, op: int) -> GoRegexp:
        raise NotImplementedError

    def reuse(self, re: GoRegexp) -> None:
        raise NotImplementedError

    def check_limits(self, re: GoRegexp) -> None:
        raise NotImplementedError

    def collapse(self, subs: list[GoRegexp], op: int) -> GoRegexp:
        if len(subs) == 1:
            return subs[0]
        re = self.new_regexp(op)
        re.sub = []
        for sub in subs:
            if sub.op == op:
                re.sub.extend(sub.sub)
                self.reuse(sub)
            else:
                re.sub.append(sub)
        if op == ALTERNATE:
            re.sub = self.factor(re.sub)
            if len(re.sub) == 1:
                old = re
                re = re.sub[0]
                self.reuse(old)
        return re

    def factor(self, sub: list[GoRegexp]) -> list[GoRegexp]:
        if len(sub) < 2:
            return sub
        sub = self._common_strings(list(sub))
        sub = self._common_leaders(sub)
        sub = self._merged_classes(sub)
        out: list[GoRegexp] = []
        for i, item in enumerate(sub):
            if i + 1 < len(sub) and item.op == EMPTY_MATCH and sub[i + 1].op == EMPTY_MATCH:
                continue
            out.append(item)
        return out

    def _common_strings(self, sub: list[GoRegexp]) -> list[GoRegexp]:
        """Round 1: factor out common literal prefixes."""
        out: list[GoRegexp] = []
        text: list[int] = []
        text_flags = 0
        start = 0
        for i in range(len(sub) + 1):
            istr: list[int] = []
            iflags = 0
            if i < len(sub):
                istr, iflags = self.leading_string(sub[i])
                if iflags == text_flags:
                    same = 0
                    while same < len(text) and same < len(istr) and text[same] == istr[same]:
                        same += 1
                    if same > 0:
                        text = text[:same]
                        continue
            if i == start:
                pass
            elif i == start + 1:
                out.append(sub[start])
            else:
                prefix = self.new_regexp(LITERAL)
                prefix.flags = text_flags
                prefix.rune = list(text)
                for j in range(start, i):
                    sub[j] = self.remove_leading_string(sub[j], len(text))
                    self.check_limits(sub[j])
                suffix = self.collapse(sub[start:i], ALTERNATE)
                re = self.new_regexp(CONCAT)
                re.sub = [prefix, suffix]
                out.append(re)
            start = i
            text = istr
            text_flags = iflags
        return out

    def _common_leaders(self, sub: list[GoRegexp]) -> list[GoRegexp]:
        """Round 2: factor out common simple leading pieces (a class, or a class repeated)."""
        out: list[GoRegexp] = []
        start = 0
        first: GoRegexp | None = None
        for i in range(len(sub) + 1):
            ifirst: GoRegexp | None = None
            if i < len(sub):
                ifirst = self.leading_regexp(sub[i])
                if first is not None and first.equal(ifirst) and (
                        is_char_class(first) or (first.op == REPEAT and first.min == first.max
                                                 and is_char_class(first.sub[0]))):
                    continue
            if i == start:
                pass
            elif i == start + 1:
                out.append(sub[start])
            else:
                assert first is not None
                prefix = first
                for j in range(start, i):
                    sub[j] = self.remove_leading_regexp(sub[j], j != start)
                    self.check_limits(sub[j])
                suffix = self.collapse(sub[start:i], ALTERNATE)
                re = self.new_regexp(CONCAT)
                re.sub = [prefix, suffix]
                out.append(re)
            start = i
            first = ifirst
        return out

    def _merged_classes(self, sub: list[GoRegexp]) -> list[GoRegexp]:
        """Round 3: merge runs of single characters and classes into one class."""
        out: list[GoRegexp] = []
        start = 0
        for i in range(len(sub) + 1):
            if i < len(sub) and is_char_class(sub[i]):
                continue
            if i == start:
                pass
            elif i == start + 1:
                out.append(sub[start])
            else:
                best = start
                for j in range(start + 1, i):
                    if sub[best].op < sub[j].op or (
                            sub[best].op == sub[j].op and len(sub[best].rune) < len(sub[j].rune)):
                        best = j
                sub[start], sub[best] = sub[best], sub[start]
                for j in range(start + 1, i):
                    merge_char_class(sub[start], sub[j])
                    self.reuse(sub[j])
                clean_alt(sub[start])
                out.append(sub[start])
            if i < len(sub):
                out.append(sub[i])
            start = i + 1
        return out

    @staticmethod
    def leading_string(re: GoRegexp) -> tuple[list[int], int]:
        if re.op == CONCAT and re.sub:
            re = re.sub[0]
        if re.op != LITERAL:
            return [], 0
        return re.rune, re.flags & FOLD_CASE

    def remove_leading_string(self, re: GoRegexp, n: int) -> GoRegexp:
        if re.op == CONCAT and re.sub:
            sub = self.remove_leading_string(re.sub[0], n)
            re.sub[0] = sub
            if sub.op == EMPTY_MATCH:
                self.reuse(sub)
                if len(re.sub) <= 1:
                    re.op = EMPTY_MATCH
                    re.sub = []
                elif len(re.sub) == 2:
                    old = re
                    re = re.sub[1]
                    self.reuse(old)
                else:
                    del re.sub[0]
            return re
        if re.op == LITERAL:
            re.rune = re.rune[n:]
            if not re.rune:
                re.op = EMPTY_MATCH
        return re

    @staticmethod
    def leading_regexp(re: GoRegexp) -> GoRegexp | None:
        if re.op == EMPTY_MATCH:
            return None
        if re.op == CONCAT and re.sub:
            sub = re.sub[0]
            return None if sub.op == EMPTY_MATCH else sub
        return re

    def remove_leading_regexp(self, re: GoRegexp, reuse: bool) -> GoRegexp:
        if re.op == CONCAT and re.sub:
            if reuse:
                self.reuse(re.sub[0])
            del re.sub[0]
            if not re.sub:
                re.op = EMPTY_MATCH
                re.sub = []
            elif len(re.sub) == 1:
                old = re
                re = re.sub[0]
                self.reuse(old)
            return re
        if reuse:
            self.reuse(re)
        return self.new_regexp(EMPTY_MATCH)
