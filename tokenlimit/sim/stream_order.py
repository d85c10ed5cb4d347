"""Batches of a stream put in time order, and their decisions written back in file order.

A gateway writes an access log line when the response ends, so the start times of a log run
back by up to the longest request: across a batch boundary, a request can start before one of
the previous batch. ``TimeOrder`` replays a batch's requests only once the next batch is read,
and only those no later than the next batch's first instant; the others wait with it. Every
request replayed later is then no earlier than those replayed before (ties keep file order),
which is what the streamed replay needs to be exact; a request earlier than one already
replayed (out of order by more than a batch) is still an error. Memory: one batch more, plus
the requests waiting. ``FileOrderDecisions`` writes decisions in file order as they become
complete.

>>> import numpy as np
>>> from tokenlimit.sim.records import TraceRequest
>>> from tokenlimit.sim.trace_table import trace_from_requests
>>> order = TimeOrder()
>>> batch = trace_from_requests([TraceRequest(0, 1.0, ("a",)), TraceRequest(1, 5.0, ("a",))])
>>> order.push(0, batch)
[]
>>> later = trace_from_requests([TraceRequest(2, 3.0, ("b",))])
>>> [(rows.tolist(), part.ts.tolist()) for rows, part in order.push(2, later)]
[([0], [1.0])]
>>> [(rows.tolist(), part.ts.tolist()) for rows, part in order.finish()]
[([1, 2], [5.0, 3.0])]
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import IO, Any

import numpy as np

from tokenlimit.sim.trace_table import IntArray, Trace, take_key_lists


def take(trace: Trace, rows: IntArray) -> Trace:
    """The requests ``rows`` of ``trace`` (in that order), ids and statuses with them
    (positional ids become explicit when the rows are not a prefix)."""
    ptr, index = take_key_lists(trace.key_ptr, trace.key_index, rows)
    ids = None if trace.ids is None else tuple(trace.ids[i] for i in rows.tolist())
    status = None if trace.status is None else tuple(trace.status[i] for i in rows.tolist())
    return Trace(trace.path, trace.ts[rows], trace.latency[rows], trace.prompt_tokens[rows],
                 trace.completion_tokens[rows], trace.total_tokens[rows], ptr, index,
                 trace.key_names, trace.imputed[rows], ids, status)


def _ids(trace: Trace, rows: IntArray) -> tuple[str | int, ...]:
    """Each request's id (a request without one: its position in the file)."""
    return tuple(trace.ids) if trace.ids is not None else tuple(rows.tolist())


def concat(first: Trace, rows_first: IntArray, second: Trace, rows_second: IntArray) -> Trace:
    """One trace of two (keys merged by name; ids explicit unless both are positional)."""
    names = {name: i for i, name in enumerate(first.key_names)}
    mapping = np.array([names.setdefault(k, len(names)) for k in second.key_names],
                       dtype=np.int64)
    index = np.concatenate((first.key_index,
                            mapping[second.key_index] if second.key_index.size else
                            second.key_index))
    ptr = np.concatenate((first.key_ptr, first.key_ptr[-1] + second.key_ptr[1:]))
    ids = None
    if first.ids is not None or second.ids is not None:
        ids = _ids(first, rows_first) + _ids(second, rows_second)
    status = None
    if first.status is not None or second.status is not None:
        status = ((first.status or (None,) * len(first))
                  + (second.status or (None,) * len(second)))
    def both(a: Any, b: Any) -> Any:
        return np.concatenate((a, b))

    return Trace(first.path, both(first.ts, second.ts), both(first.latency, second.latency),
                 both(first.prompt_tokens, second.prompt_tokens),
                 both(first.completion_tokens, second.completion_tokens),
                 both(first.total_tokens, second.total_tokens), ptr, index, tuple(names),
                 both(first.imputed, second.imputed), ids, status)


class TimeOrder:
    """Batches in, parts in time order out: ``(rows, part)``, ``rows`` the requests'
    positions in the file."""

    def __init__(self) -> None:
        self.waiting: Trace | None = None
        self.rows = np.zeros(0, dtype=np.int64)

    def first_waiting(self) -> int | None:
        """The smallest file position of a request not yet given out."""
        return None if self.waiting is None or not self.rows.size else int(self.rows.min())

    def push(self, start: int, batch: Trace) -> list[tuple[IntArray, Trace]]:
        """Add the batch whose first request is the file's ``start``; the requests now
        safe to replay (those waiting, up to the batch's first instant)."""
        rows = np.arange(start, start + len(batch), dtype=np.int64)
        if len(batch) == 0:
            return []
        if self.waiting is None:
            self.waiting, self.rows = batch, rows
            return []
        ready = self.waiting.ts <= float(batch.ts.min())
        waiting, waiting_rows = self.waiting, self.rows
        if ready.all():
            self.waiting, self.rows = batch, rows
            return [(waiting_rows, waiting)]
        kept = np.flatnonzero(~ready)
        self.waiting = concat(take(waiting, kept), waiting_rows[kept], batch, rows)
        self.rows = np.concatenate((waiting_rows[kept], rows))
        given = np.flatnonzero(ready)
        return [(waiting_rows[given], take(waiting, given))] if given.size else []

    def finish(self) -> list[tuple[IntArray, Trace]]:
        """Every request still waiting."""
        waiting, rows = self.waiting, self.rows
        self.waiting, self.rows = None, np.zeros(0, dtype=np.int64)
        return [] if waiting is None else [(rows, waiting)]


class FileOrderDecisions:
    """Decisions as JSON Lines in file order, each written once every earlier one is known."""

    def __init__(self, out: IO[bytes] | None) -> None:
        self.out = out
        self.parts: list[tuple[IntArray, Sequence[Any] | None, Any, Any]] = []

    def add(self, rows: IntArray, part: Trace, outcome: Any, rule: Any) -> None:
        if self.out is not None:
            self.parts.append((rows, part.ids, outcome, rule))

    def flush(self, before: int | None) -> None:
        """Write the decisions of the requests before position ``before`` (all: ``None``)."""
        if self.out is None or not self.parts:
            return
        rows = np.concatenate([p[0] for p in self.parts])
        outcome = np.concatenate([p[2] for p in self.parts])
        rule = np.concatenate([p[3] for p in self.parts])
        ids: list[Any] | None = None
        if any(p[1] is not None for p in self.parts):
            ids = [i for r, part_ids, _, _ in self.parts
                   for i in (part_ids if part_ids is not None else r.tolist())]
        if rows.size > 1 and not bool(np.all(rows[1:] > rows[:-1])):
            order = np.argsort(rows, kind="stable")
            rows, outcome, rule = rows[order], outcome[order], rule[order]
            ids = None if ids is None else [ids[i] for i in order.tolist()]
        done = rows.size if before is None else int(np.searchsorted(rows, before))
        self.out.write(_lines(rows[:done], None if ids is None else ids[:done],
                              outcome[:done], rule[:done]))
        self.parts = [] if done == rows.size else [
            (rows[done:], None if ids is None else tuple(ids[done:]), outcome[done:],
             rule[done:])]


def _lines(rows: IntArray, ids: list[Any] | None, outcome: Any, rule: Any) -> bytes:
    if not rows.size:
        return b""
    if ids is None:  # consecutive positions: the compiled writer
        from tokenlimit.sim.csvwrite import decision_lines

        return decision_lines(int(rows[0]), outcome, rule)
    names = ('"allow"', '"deny"', '"error"')
    return "".join(
        f'{{"id": {json.dumps(i)}, "outcome": {names[o]}, "rule": {"null" if r < 0 else r}}}\n'
        for i, o, r in zip(ids, outcome.tolist(), rule.tolist(), strict=True)).encode()
