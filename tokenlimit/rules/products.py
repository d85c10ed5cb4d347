"""Searches and unions over products of automata: the questions the linter asks of rules.

``find_word`` answers "is there a key that these automata accept (or not) together?" with a
shortest such key; ``union`` collects the keys earlier rules take. Both work on ``Dfa`` values
built by ``tokenlimit.rules.automata`` over one shared ``Alphabet``.
"""

from __future__ import annotations

import functools
import itertools
from collections import deque
from collections.abc import Callable, Sequence

from tokenlimit.rules.automata import MAX_PRODUCT_STATES, Alphabet, Dfa, TooLarge


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
