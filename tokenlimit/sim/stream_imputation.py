"""Imputed usage in a streamed replay, exactly the whole-file reader's.

A request recorded without usage (a line the gateway answered 429) gets completion tokens
drawn from the usage recorded for its first key over the whole trace (``impute_completion``).
A batch alone does not know that usage, so a streamed replay that meets such requests reads
the trace three times: the first pass (the replay itself) counts, per first key, the requests
without usage and those with it; the draws are then made exactly as ``impute_completion``
makes them (one generator, keys in first-appearance order, one ``choice`` per key: only the
positions drawn depend on the counts); a second pass collects the recorded values at the
drawn positions; the third replays with them. Memory: the keys plus the drawn requests.
A trace in which every request has its usage is read once.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tokenlimit.sim.trace_table import IntArray, Trace


def _ranks(group: IntArray, size: int) -> IntArray:
    """Each element's rank among the elements of its group (in order)."""
    order = np.argsort(group, kind="stable")
    counts = np.bincount(group, minlength=size)
    starts = np.cumsum(counts) - counts
    ranks = np.empty(group.size, dtype=np.int64)
    ranks[order] = np.arange(group.size) - starts[group[order]]
    return ranks


def first_key_groups(chunk: Trace, mapping: IntArray) -> IntArray:
    """Each request's group: ``mapping`` of its first key's index, 0 without a key."""
    ptr = chunk.key_ptr
    has_key = ptr[1:] > ptr[:-1]
    group = np.zeros(len(chunk), dtype=np.int64)
    group[has_key] = mapping[chunk.key_index[ptr[:-1][has_key]]]
    return group


class ImputationTally:
    """Requests without usage and with it, per first key, over a stream of batches.

    Group 0 holds requests without a key; group ``g + 1`` those whose first key is the
    stream's ``g``-th distinct key (first-appearance order, as the whole-file reader's).
    """

    def __init__(self) -> None:
        self.names: dict[str, int] = {}
        self.missing = np.zeros(1, dtype=np.int64)
        self.recorded = np.zeros(1, dtype=np.int64)

    def groups(self, chunk: Trace) -> IntArray:
        """Each request's group (new keys are numbered as they appear)."""
        mapping = np.array([self.names.setdefault(k, len(self.names)) + 1
                            for k in chunk.key_names], dtype=np.int64)
        grow = len(self.names) + 1 - self.missing.size
        if grow > 0:
            self.missing = np.append(self.missing, np.zeros(grow, dtype=np.int64))
            self.recorded = np.append(self.recorded, np.zeros(grow, dtype=np.int64))
        return first_key_groups(chunk, mapping)

    def add(self, chunk: Trace) -> None:
        group = self.groups(chunk)
        size = self.missing.size
        self.missing += np.bincount(group[chunk.imputed], minlength=size)
        self.recorded += np.bincount(group[~chunk.imputed], minlength=size)

    @property
    def total_missing(self) -> int:
        return int(self.missing.sum())

    def draws(self, seed: int) -> ImputedDraws:
        """The positions ``impute_completion`` draws, from these counts."""
        rng = np.random.default_rng(seed)
        everything = int(self.recorded.sum())
        position = np.full(self.total_missing, -1, dtype=np.int64)  # -1: the value is 0
        from_all = np.zeros(self.total_missing, dtype=np.bool_)
        start = np.zeros(self.missing.size, dtype=np.int64)
        np.cumsum(self.missing[:-1], out=start[1:])
        own_start = np.cumsum(self.recorded) - self.recorded
        for g in np.flatnonzero(self.missing).tolist():
            m, pool = int(self.missing[g]), int(self.recorded[g])
            at = slice(int(start[g]), int(start[g]) + m)
            if pool:  # one draw per request from the key's own recorded usage
                position[at] = own_start[g] + rng.choice(pool, size=m)
            elif everything:  # the key has none: from all the recorded usage
                position[at] = rng.choice(everything, size=m)
                from_all[at] = True
        return ImputedDraws(self, position, from_all, start)


class ImputedDraws:
    """The drawn positions; ``collect`` their values (second pass), ``fill`` batches (third).

    A position counts recorded requests group by group (``own``) or in file order (``all``).
    """

    def __init__(self, tally: ImputationTally, position: IntArray, from_all: Any,
                 start: IntArray) -> None:
        self.tally, self.start = tally, start
        self.position, self.from_all = position, from_all
        self.own_wanted = np.unique(position[~from_all & (position >= 0)])
        self.all_wanted = np.unique(position[from_all])
        self.own_values = np.zeros(self.own_wanted.size, dtype=np.int64)
        self.all_values = np.zeros(self.all_wanted.size, dtype=np.int64)
        self._seen_own = np.zeros(tally.missing.size, dtype=np.int64)
        self._seen_all = 0
        self._seen_missing = np.zeros(tally.missing.size, dtype=np.int64)
        self._own_start = np.cumsum(tally.recorded) - tally.recorded

    def _groups(self, chunk: Trace) -> IntArray:
        """Group numbers as the tally's (the same batches come in the same order)."""
        mapping = np.array([self.tally.names[k] + 1 for k in chunk.key_names], dtype=np.int64)
        return first_key_groups(chunk, mapping)

    def collect(self, chunk: Trace) -> None:
        """Note the recorded completion tokens this batch holds at drawn positions."""
        size = self.tally.missing.size
        recorded = ~chunk.imputed
        group = self._groups(chunk)[recorded]
        values = chunk.completion_tokens[recorded]
        own = self._own_start[group] + self._seen_own[group] + _ranks(group, size)
        everywhere = self._seen_all + np.arange(group.size)
        self._seen_own += np.bincount(group, minlength=size)
        self._seen_all += group.size
        for wanted, found, positions in ((self.own_wanted, self.own_values, own),
                                         (self.all_wanted, self.all_values, everywhere)):
            if wanted.size:
                hit = np.searchsorted(wanted, positions)
                inside = hit < wanted.size
                match = np.zeros(positions.size, dtype=np.bool_)
                match[inside] = wanted[hit[inside]] == positions[inside]
                found[hit[match]] = values[match]

    def rewind(self) -> None:
        """Ready ``fill`` for another pass over the same batches."""
        self._seen_missing[:] = 0

    def fill(self, chunk: Trace) -> None:
        """Give this batch's requests without usage their drawn completion tokens (in place)."""
        missing = np.flatnonzero(chunk.imputed)
        if missing.size == 0:
            return
        size = self.tally.missing.size
        group = self._groups(chunk)[missing]
        draw = self.start[group] + self._seen_missing[group] + _ranks(group, size)
        self._seen_missing += np.bincount(group, minlength=size)
        position, from_all = self.position[draw], self.from_all[draw]
        value = np.zeros(missing.size, dtype=np.int64)
        own = ~from_all & (position >= 0)
        value[own] = self.own_values[np.searchsorted(self.own_wanted, position[own])]
        value[from_all] = self.all_values[np.searchsorted(self.all_wanted, position[from_all])]
        chunk.completion_tokens[missing] = value
        chunk.total_tokens[missing] = chunk.prompt_tokens[missing] + value
