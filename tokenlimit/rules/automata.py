"""Finite automata over RE2 trees: the languages of rules, decided exactly, with examples.

The service matches with an unanchored search, so the keys a rule takes are the strings
``w`` for which some substring matches the regex, where ``^`` only holds at the start of
``w`` and ``$`` only at its end. ``search_dfa`` builds the deterministic automaton of exactly
that set; ``full_dfa`` the set the regex matches as a whole (what an author usually means).

All automata of one analysis share an ``Alphabet``: the code points cut into classes that
every character set of every rule either contains whole or not at all, so products of
automata (inclusion, intersection, "matched by none") are breadth-first searches over tuples
of states, and the first accepting tuple found gives a shortest example key.
"""

from __future__ import annotations

import bisect
import functools
import itertools
from collections import deque
from collections.abc import Callable, Iterable, Sequence
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


def find_word(dfas: Sequence[Dfa], alphabet: Alphabet,
              wanted: Callable[[tuple[bool, ...]], bool], *,
              printable: bool = False) -> str | None:
    """A shortest key for which ``wanted(acceptance of each dfa)`` holds, or ``None``.

    A breadth-first search over the product of ``dfas``; ``TooLarge`` past the bound. With
    ``printable``, only keys without control characters (keys a request can carry).
    """
    classes = alphabet.printable if printable else alphabet.order
    start = tuple(d.start for d in dfas)
    parent: dict[tuple[int, ...], tuple[tuple[int, ...], int] | None] = {start: None}
    queue = deque([start])
    pair = len(dfas) == 2
    first, second = dfas[0].delta, dfas[-1].delta
    # States of the first automaton from which ``wanted`` can no longer hold, whatever the
    # others do: the search need not go on from there. The first automaton is a rule's own,
    # small; the second may be the union of every earlier rule, and without this the search
    # would walk all of it behind each rule's dead state.
    hopeless = _hopeless_states(dfas[0], len(dfas), wanted)
    while queue:
        states = queue.popleft()
        if wanted(tuple(d.accepting[s] for d, s in zip(dfas, states, strict=True))):
            path: list[int] = []
            step = parent[states]
            while step is not None:
                states, c = step
                path.append(c)
                step = parent[states]
            return alphabet.word(path[::-1])
        row_one, row_two = first[states[0]], second[states[-1]]
        for c in classes:
            # Every caller compares one or two automata: spell those out, it is the hot loop.
            if pair:
                nxt: tuple[int, ...] = (row_one[c], row_two[c])
            else:
                nxt = tuple(d.delta[s][c] for d, s in zip(dfas, states, strict=True))
            if nxt not in parent and nxt[0] not in hopeless:
                if len(parent) >= MAX_PRODUCT_STATES:
                    raise TooLarge("the rules' product automaton is too large to analyse")
                parent[nxt] = (states, c)
                queue.append(nxt)
    return None


_SMALL = 512  # automata up to this size get their hopeless states computed


def _fates(dfa: Dfa) -> tuple[frozenset[int], frozenset[int]]:
    """The states that never reach acceptance, and those that never leave it.

    Only for small automata (a rule's own); a large one gets two empty sets.
    """
    if len(dfa.delta) > _SMALL:
        return frozenset(), frozenset()
    return _small_fates(dfa)


@functools.lru_cache(maxsize=256)
def _small_fates(dfa: Dfa) -> tuple[frozenset[int], frozenset[int]]:
    back: list[set[int]] = [set() for _ in dfa.delta]
    for state, row in enumerate(dfa.delta):
        for target in row:
            back[target].add(state)

    def reaching(goal: list[int]) -> set[int]:
        seen = set(goal)
        stack = list(goal)
        while stack:
            for source in back[stack.pop()]:
                if source not in seen:
                    seen.add(source)
                    stack.append(source)
        return seen

    states = range(len(dfa.delta))
    can_accept = reaching([s for s in states if dfa.accepting[s]])
    can_reject = reaching([s for s in states if not dfa.accepting[s]])
    return (frozenset(s for s in states if s not in can_accept),
            frozenset(s for s in states if s not in can_reject))


def _hopeless_states(dfa: Dfa, width: int,
                     wanted: Callable[[tuple[bool, ...]], bool]) -> frozenset[int]:
    dead, settled = _fates(dfa)
    hopeless: set[int] = set()
    for fated, value in ((dead, False), (settled, True)):
        if fated and not any(wanted((value, *rest))
                             for rest in itertools.product((False, True), repeat=width - 1)):
            hopeless |= fated
    return frozenset(hopeless)


def empty_dfa(alphabet: Alphabet) -> Dfa:
    """The automaton of no key at all."""
    return Dfa(((0,) * len(alphabet),), (False,))


def union(first: Dfa, second: Dfa, alphabet: Alphabet) -> Dfa:
    """An automaton of the keys either accepts: ``first`` may be large, ``second`` small.

    ``first``'s states are kept as they are and the pairs with a live state of ``second``
    appended, so a union costs what ``second`` adds, not the size of ``first`` (the keys
    taken by a thousand earlier rules). When the pairs outgrow both automata, the result is
    minimized to stay small for the next union.
    """
    dead, _ = _fates(second)
    base = len(first.delta)
    index: dict[tuple[int, int], int] = {(first.start, second.start): base}
    queue = [(first.start, second.start)]
    delta: list[tuple[int, ...]] = []
    accepting: list[bool] = []
    while len(delta) < len(queue):
        a, b = queue[len(delta)]
        accepting.append(first.accepting[a] or second.accepting[b])
        row = []
        for c in range(len(alphabet)):
            pair = (first.delta[a][c], second.delta[b][c])
            if pair[1] in dead:  # from here on, only ``first`` can accept
                row.append(pair[0])
                continue
            if pair not in index:
                if len(queue) >= MAX_PRODUCT_STATES:
                    raise TooLarge("the rules' union automaton is too large to analyse")
                index[pair] = base + len(queue)
                queue.append(pair)
            row.append(index[pair])
        delta.append(tuple(row))
    joined = Dfa(first.delta + tuple(delta), first.accepting + tuple(accepting), base)
    if len(delta) > 2 * (len(second.delta) + 16):
        return minimize(joined)
    return joined


def minimize(dfa: Dfa) -> Dfa:
    """Moore's partition refinement over the states reachable from the start (state 0)."""
    order = [dfa.start]
    seen = {dfa.start}
    for state in order:
        for target in dfa.delta[state]:
            if target not in seen:
                seen.add(target)
                order.append(target)
    position = {state: i for i, state in enumerate(order)}
    reachable = Dfa(tuple(tuple(position[t] for t in dfa.delta[s]) for s in order),
                    tuple(dfa.accepting[s] for s in order))
    return _moore(reachable)


def _moore(dfa: Dfa) -> Dfa:
    block = [int(a) for a in dfa.accepting]
    count = len(set(block))
    while True:
        signatures: dict[tuple[int, tuple[int, ...]], int] = {}
        refined = [signatures.setdefault((block[s], tuple(block[t] for t in row)),
                                         len(signatures)) for s, row in enumerate(dfa.delta)]
        block = refined
        if len(signatures) == count:
            break
        count = len(signatures)
    renumber: dict[int, int] = {}
    for b in block:
        renumber.setdefault(b, len(renumber))
    representative: dict[int, int] = {}
    for state, b in enumerate(block):
        representative.setdefault(renumber[b], state)
    delta = tuple(tuple(renumber[block[t]] for t in dfa.delta[representative[new]])
                  for new in range(len(renumber)))
    accepting = tuple(dfa.accepting[representative[new]] for new in range(len(renumber)))
    return Dfa(delta, accepting)
