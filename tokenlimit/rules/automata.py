"""Finite automata over RE2 trees: the languages of rules, decided exactly, with examples.

The service matches with an unanchored search, so the keys a rule takes are the strings
``w`` for which some substring matches the regex, where ``^`` only holds at the start of
``w`` and ``$`` only at its end. ``search_dfa`` builds the deterministic automaton of exactly
that set; ``full_dfa`` the set the regex matches as a whole (what an author usually means).

All automata of one analysis share an ``Alphabet``: the code points cut into classes that
every character set of every rule either contains whole or not at all, so products of
automata (inclusion, intersection, "matched by none") are breadth-first searches over tuples
of states, and the first accepting tuple found gives a shortest example key (those searches,
and unions, are in ``tokenlimit.rules.products``).
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from tokenlimit.rules.re2syntax import (
    UNIVERSE,
    Alternation,
    Anchor,
    Chars,
    Concat,
    Intervals,
    Regex,
    Repeat,
)

MAX_NFA_STATES = 20_000
MAX_DFA_STATES = 3_000
MAX_PRODUCT_STATES = 50_000
# Characters an example key is best written with, most readable first.
_NICE = "abcdefghijklmnopqrstuvwxyz0123456789-_.ABCDEFGHIJKLMNOPQRSTUVWXYZ:/@"


_CONTROL_CUTS = (0x00, 0x20, 0x7F, 0xA0)


def _is_control(code: int) -> bool:
    return code < 0x20 or 0x7F <= code < 0xA0


class TooLarge(Exception):
    """The automaton would exceed the analysis bounds."""


def char_sets(tree: Regex) -> Iterable[Intervals]:
    """Every character set in ``tree``."""
    if isinstance(tree, Chars):
        yield tree.intervals
    elif isinstance(tree, Concat):
        for part in tree.parts:
            yield from char_sets(part)
    elif isinstance(tree, Alternation):
        for option in tree.options:
            yield from char_sets(option)
    elif isinstance(tree, Repeat):
        yield from char_sets(tree.body)


class Alphabet:
    """Code points cut into classes fine enough for every set in ``sets``."""

    def __init__(self, sets: Iterable[Intervals]) -> None:
        cuts = {lo for lo, _ in UNIVERSE} | {hi + 1 for _, hi in UNIVERSE}
        cuts.update(_CONTROL_CUTS)  # so a class is all control characters or none
        for intervals in sets:
            for lo, hi in intervals:
                cuts.update((lo, hi + 1))
        points = sorted(cuts)
        self.starts: list[int] = []
        for lo, hi in itertools.pairwise(points):
            if any(u_lo <= lo and hi - 1 <= u_hi for u_lo, u_hi in UNIVERSE):
                self.starts.append(lo)
        self.ends = [points[points.index(s) + 1] - 1 for s in self.starts]
        self.samples = [self._sample(s, e) for s, e in zip(self.starts, self.ends, strict=True)]
        # Breadth-first searches try classes in this order, so examples read well.
        self.order = sorted(range(len(self.starts)), key=lambda c: self._rank(self.samples[c]))
        # What a real key can hold: HTTP header values, paths and hosts carry no control
        # characters (no newline), so an example built only for them would mislead.
        self.printable = [c for c in self.order if not _is_control(self.starts[c])]

    def __len__(self) -> int:
        return len(self.starts)

    def classes(self, intervals: Intervals) -> frozenset[int]:
        found: set[int] = set()
        for lo, hi in intervals:
            first = bisect.bisect_left(self.starts, lo)
            last = bisect.bisect_right(self.starts, hi)
            found.update(range(first, last))
        return frozenset(found)

    def class_of(self, ch: str) -> int | None:
        """The class of character ``ch`` (``None`` for a surrogate, never in a key)."""
        position = bisect.bisect_right(self.starts, ord(ch)) - 1
        if position < 0 or ord(ch) > self.ends[position]:
            return None
        return position

    def word(self, classes: Sequence[int]) -> str:
        return "".join(self.samples[c] for c in classes)

    @staticmethod
    def _sample(lo: int, hi: int) -> str:
        for ch in _NICE:
            if lo <= ord(ch) <= hi:
                return ch
        for code in range(max(lo, 33), min(hi, 126) + 1):
            return chr(code)
        return chr(lo)

    @staticmethod
    def _rank(ch: str) -> int:
        index = _NICE.find(ch)
        return index if index >= 0 else len(_NICE) + ord(ch)


@dataclass
class _Nfa:
    """Thompson automaton: character edges, and epsilon edges that may need an anchor."""

    chars: list[list[tuple[frozenset[int], int]]] = field(default_factory=list)
    eps: list[list[tuple[str | None, int]]] = field(default_factory=list)

    def state(self) -> int:
        if len(self.chars) >= MAX_NFA_STATES:
            raise TooLarge("the regex is too large to analyse")
        self.chars.append([])
        self.eps.append([])
        return len(self.chars) - 1

    def build(self, tree: Regex, alphabet: Alphabet, start: int) -> int:
        """Add ``tree`` from ``start``; return its end state."""
        if isinstance(tree, Chars):
            end = self.state()
            self.chars[start].append((alphabet.classes(tree.intervals), end))
            return end
        if isinstance(tree, Anchor):
            end = self.state()
            self.eps[start].append((tree.which, end))
            return end
        if isinstance(tree, Concat):
            for part in tree.parts:
                start = self.build(part, alphabet, start)
            return start
        if isinstance(tree, Alternation):
            end = self.state()
            for option in tree.options:
                begin = self.state()
                self.eps[start].append((None, begin))
                self.eps[self.build(option, alphabet, begin)].append((None, end))
            return end
        for _ in range(tree.low):
            start = self.build(tree.body, alphabet, start)
        end = self.state()
        if tree.high is None:
            # The loop gets a state of its own: looping back to ``start`` would let a partial
            # pass of the body leave through an enclosing star that shares that state.
            hub = self.state()
            self.eps[start].append((None, hub))
            self.eps[hub].append((None, end))
            loop = self.build(tree.body, alphabet, hub)
            self.eps[loop].append((None, hub))
            return end
        self.eps[start].append((None, end))
        for _ in range(tree.high - tree.low):
            start = self.build(tree.body, alphabet, start)
            self.eps[start].append((None, end))
        return end

    def closure(self, states: Iterable[int], at_start: bool, at_end: bool) -> frozenset[int]:
        seen = set(states)
        todo = list(seen)
        while todo:
            for kind, target in self.eps[todo.pop()]:
                allowed = kind is None or (kind == "begin" and at_start) or (
                    kind == "end" and at_end)
                if allowed and target not in seen:
                    seen.add(target)
                    todo.append(target)
        return frozenset(seen)


@dataclass(frozen=True, slots=True)
class Dfa:
    """``delta[state][class]`` is the next state; ``start`` is the start state."""

    delta: tuple[tuple[int, ...], ...]
    accepting: tuple[bool, ...]
    start: int = 0

    def accepts(self, key: str, alphabet: Alphabet) -> bool:
        """Run the automaton on ``key`` (tests compare this with RE2)."""
        state = self.start
        for ch in key:
            c = alphabet.class_of(ch)
            if c is None:
                return False
            state = self.delta[state][c]
        return self.accepting[state]


def search_dfa(tree: Regex, alphabet: Alphabet) -> Dfa:
    """The keys an unanchored search of ``tree`` finds a match in."""
    nfa = _Nfa()
    every = frozenset(range(len(alphabet)))
    before = nfa.state()
    nfa.chars[before].append((every, before))
    inner = nfa.state()
    nfa.eps[before].append((None, inner))
    after = nfa.build(tree, alphabet, inner)
    final = nfa.state()
    nfa.eps[after].append((None, final))
    nfa.chars[final].append((every, final))
    return _determinize(nfa, before, final, len(alphabet))


def full_dfa(tree: Regex, alphabet: Alphabet) -> Dfa:
    """The keys ``tree`` matches as a whole (anchored at both ends)."""
    nfa = _Nfa()
    start = nfa.state()
    final = nfa.build(tree, alphabet, start)
    return _determinize(nfa, start, final, len(alphabet))


def _determinize(nfa: _Nfa, start: int, final: int, width: int) -> Dfa:
    # A DFA state is a set of NFA states; the start state alone may use ``begin`` edges.
    # ``end`` edges are followed only to decide acceptance (the key ends there).
    first = nfa.closure([start], at_start=True, at_end=False)
    index: dict[tuple[frozenset[int], bool], int] = {(first, True): 0}
    queue = [(first, True)]
    delta: list[tuple[int, ...]] = []
    accepting: list[bool] = []
    closures: dict[frozenset[int], frozenset[int]] = {}
    while len(delta) < len(queue):
        states, at_start = queue[len(delta)]
        accepting.append(final in nfa.closure(states, at_start=at_start, at_end=True))
        moves: dict[int, set[int]] = {}
        for state in states:
            for classes, target in nfa.chars[state]:
                for c in classes:
                    moves.setdefault(c, set()).add(target)
        row = []
        for c in range(width):
            target_set = frozenset(moves.get(c, ()))
            if target_set not in closures:
                closures[target_set] = nfa.closure(target_set, at_start=False, at_end=False)
            key = (closures[target_set], False)
            if key not in index:
                if len(queue) >= MAX_DFA_STATES:
                    raise TooLarge("the regex's automaton is too large to analyse")
                index[key] = len(queue)
                queue.append(key)
            row.append(index[key])
        delta.append(tuple(row))
    return Dfa(tuple(delta), tuple(accepting))
