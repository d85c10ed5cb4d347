"""A Pike VM over Go's parse tree: Go's ``MatchString`` where RE2 cannot stand in for it.

RE2 answers for almost every (pattern, key) (``gomatch``). It differs from Go in one place,
``\\B`` inside a multi-byte character, and it refuses programs beyond its memory budget that Go
accepts. For those, this small automaton runs the pattern as Go's own NFA matcher does: one
pass over the key's characters with a set of threads, so the time is linear in the key
(length x program size), with no backtracking, whatever the pattern.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass

from tokenlimit.rules import goclass as cls
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

_CHAR, _EMPTY, _SPLIT, _JUMP, _MATCH, _FAIL = range(6)
_ASSERTIONS = (BEGIN_LINE, END_LINE, BEGIN_TEXT, END_TEXT, WORD_BOUNDARY, NO_WORD_BOUNDARY)


@dataclass(slots=True)
class _Inst:
    kind: int
    out: int = -1
    arg: int = -1  # _SPLIT: the second branch; _EMPTY: the assertion op
    los: tuple[int, ...] = ()
    his: tuple[int, ...] = ()


@dataclass(slots=True)
class _Frag:
    start: int
    holes: list[tuple[int, bool]]  # (inst, is the second branch of a split)


def _runes_of(node: GoRegexp) -> list[list[int]]:
    """Each character position of a literal as a range list (with its case orbit under (?i))."""
    out = []
    for r in node.rune:
        klass = [r, r]
        if node.flags & FOLD_CASE:
            f = cls.simple_fold(r)
            while f != r:
                klass = cls.append_range(klass, f, f)
                f = cls.simple_fold(f)
            klass = cls.clean_class(klass)
        out.append(klass)
    return out


class Program:
    """Go's tree compiled to NFA instructions (repetitions expanded as Go's simplifier does)."""

    def __init__(self, tree: GoRegexp) -> None:
        self.insts: list[_Inst] = []
        frag = self._compile(tree)
        match = self._emit(_Inst(_MATCH))
        self._patch(frag.holes, match)
        self.start = frag.start

    def _emit(self, inst: _Inst) -> int:
        self.insts.append(inst)
        return len(self.insts) - 1

    def _patch(self, holes: list[tuple[int, bool]], target: int) -> None:
        for index, second in holes:
            if second:
                self.insts[index].arg = target
            else:
                self.insts[index].out = target

    def _char(self, ranges: list[int]) -> _Frag:
        pc = self._emit(_Inst(_CHAR, los=tuple(ranges[0::2]), his=tuple(ranges[1::2])))
        return _Frag(pc, [(pc, False)])

    def _empty(self) -> _Frag:
        pc = self._emit(_Inst(_JUMP))
        return _Frag(pc, [(pc, False)])

    def _cat(self, first: _Frag, second: _Frag) -> _Frag:
        self._patch(first.holes, second.start)
        return _Frag(first.start, second.holes)

    def _loop(self, body: _Frag, op: int) -> _Frag:
        split = self._emit(_Inst(_SPLIT, out=body.start))
        if op == QUEST:
            return _Frag(split, [*body.holes, (split, True)])
        self._patch(body.holes, split)
        return _Frag(split if op == STAR else body.start, [(split, True)])

    def _compile(self, root: GoRegexp) -> _Frag:
        # Post-order with an explicit stack: a node met twice (a repeat) compiles twice.
        results: list[_Frag] = []
        todo: list[tuple[GoRegexp, bool]] = [(root, False)]
        while todo:
            node, done = todo.pop()
            subs = _expanded_subs(node)
            if not done and subs:
                todo.append((node, True))
                todo.extend((sub, False) for sub in reversed(subs))
                continue
            parts = [results.pop() for _ in subs][::-1]
            results.append(self._build(node, parts))
        return results.pop()

    def _build(self, node: GoRegexp, parts: list[_Frag]) -> _Frag:
        op = node.op
        if op == LITERAL:
            frags = [self._char(r) for r in _runes_of(node)]
            return self._concat(frags)
        if op == CHAR_CLASS:
            return self._char(node.rune)
        if op == ANY_CHAR:
            return self._char([0, cls.MAX_RUNE])
        if op == ANY_CHAR_NOT_NL:
            return self._char([0, 9, 11, cls.MAX_RUNE])
        if op in _ASSERTIONS:
            pc = self._emit(_Inst(_EMPTY, arg=op))
            return _Frag(pc, [(pc, False)])
        if op == NO_MATCH:
            pc = self._emit(_Inst(_FAIL))
            return _Frag(pc, [])
        if op == EMPTY_MATCH:
            return self._empty()
        if op == CAPTURE:
            return parts[0]
        if op in (STAR, PLUS, QUEST):
            return self._loop(parts[0], op)
        if op == REPEAT:
            return self._repeat(node, parts)
        if op == CONCAT:
            return self._concat(parts)
        if op == ALTERNATE:
            frag = parts[-1]
            for part in reversed(parts[:-1]):
                split = self._emit(_Inst(_SPLIT, out=part.start, arg=frag.start))
                frag = _Frag(split, [*part.holes, *frag.holes])
            return frag
        raise AssertionError(f"unknown op {op}")

    def _concat(self, frags: list[_Frag]) -> _Frag:
        if not frags:
            return self._empty()
        frag = frags[0]
        for nxt in frags[1:]:
            frag = self._cat(frag, nxt)
        return frag

    def _repeat(self, node: GoRegexp, parts: list[_Frag]) -> _Frag:
        """x{n,m}: n copies, then m-n nested optional copies (or x* for no maximum)."""
        low = node.min
        required, optional = parts[:low], parts[low:]
        frags = list(required)
        if node.max == -1:
            frags.append(self._loop(optional[0], STAR))
        else:
            tail: _Frag | None = None
            for part in reversed(optional):
                body = part if tail is None else self._cat(part, tail)
                tail = self._loop(body, QUEST)
            if tail is not None:
                frags.append(tail)
        return self._concat(frags)

    def matches(self, key: str) -> bool:
        """Whether the program matches anywhere in ``key`` (an unanchored search)."""
        insts = self.insts
        current: list[int] = []
        seen: set[int] = set()
        n = len(key)
        for i in range(n + 1):
            before = key[i - 1] if i > 0 else ""
            after = key[i] if i < n else ""
            if self._add(self.start, current, seen, before, after, i, n):
                return True
            ch = ord(after) if after else -1
            following: list[int] = []
            seen = set()
            for pc in current:
                inst = insts[pc]
                if ch < 0 or inst.kind != _CHAR:
                    continue
                at = bisect_right(inst.los, ch) - 1
                if at >= 0 and ch <= inst.his[at]:
                    nxt_before = after
                    nxt_after = key[i + 1] if i + 1 < n else ""
                    if self._add(inst.out, following, seen, nxt_before, nxt_after, i + 1, n):
                        return True
            current = following
        return False

    def _add(self, pc: int, threads: list[int], seen: set[int], before: str, after: str,
             i: int, n: int) -> bool:
        """Follow empty moves from ``pc``; ``True`` as soon as a thread reaches the match."""
        todo = [pc]
        insts = self.insts
        while todo:
            pc = todo.pop()
            if pc in seen:
                continue
            seen.add(pc)
            inst = insts[pc]
            kind = inst.kind
            if kind == _MATCH:
                return True
            if kind == _CHAR:
                threads.append(pc)
            elif kind == _JUMP:
                todo.append(inst.out)
            elif kind == _SPLIT:
                todo.append(inst.arg)
                todo.append(inst.out)
            elif kind == _EMPTY and _holds(inst.arg, before, after, i, n):
                todo.append(inst.out)
        return False


def _word(ch: str) -> bool:
    return ch == "_" or ("0" <= ch <= "9") or ("a" <= ch <= "z") or ("A" <= ch <= "Z")


def _holds(op: int, before: str, after: str, i: int, n: int) -> bool:
    if op == BEGIN_TEXT:
        return i == 0
    if op == END_TEXT:
        return i == n
    if op == BEGIN_LINE:
        return i == 0 or before == "\n"
    if op == END_LINE:
        return i == n or after == "\n"
    boundary = _word(before) != _word(after)
    return boundary if op == WORD_BOUNDARY else not boundary


def _expanded_subs(node: GoRegexp) -> list[GoRegexp]:
    """The children to compile; a repeat lists its body once per copy it needs."""
    if node.op != REPEAT:
        return node.sub
    copies = node.min + 1 if node.max == -1 else node.max
    return [node.sub[0]] * copies
