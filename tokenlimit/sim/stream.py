"""The ASM replay in chunks: a trace larger than memory, decided exactly, one chunk at a time.

Bucket state is per key and small (balance, last refill second, expiry, deepest debt), so it
is carried from chunk to chunk, together with the usage reports still pending at a chunk's end
(admitted requests whose report is due after the chunk's last check). The next chunk's scan
merges those with its own reports by due time. Memory is the number of keys plus one chunk
plus the pending reports, not the trace's length; the decisions are the whole-trace
``replay_asm``'s, whatever the chunk boundaries (tests put them on ties, on report instants
and on expiry instants).

Chunks must come in time order (each chunk's first request no earlier than the previous
chunk's last): a recorded log is. Within a chunk, order does not matter.

>>> from tokenlimit.rules.model import Rule
>>> from tokenlimit.sim.records import TraceRequest
>>> from tokenlimit.sim.trace_table import trace_from_requests
>>> stream = StreamingReplay([Rule(0, "u", 10, 5, 60, 600)])
>>> first = stream.feed(trace_from_requests([TraceRequest(0, 0.0, ("u",), 1.0, 0, 12, 12)]))
>>> second = stream.feed(trace_from_requests([TraceRequest(1, 2.0, ("u",), 0.0, 0, 1, 1)]))
>>> first.outcome.tolist(), second.outcome.tolist(), stream.finish().tolist()
([0], [1], [-7])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from tokenlimit.bucket.keyspace import LAST_FILL_SUFFIX
from tokenlimit.bucket.types import Charge
from tokenlimit.errors import ConfigError, TraceError
from tokenlimit.rules.model import Rule
from tokenlimit.rules.regex import RuleMatcher
from tokenlimit.sim.engine import Replay, in_file_order, replay_order, rule_params
from tokenlimit.sim.trace_table import IntArray, Trace, take_key_lists


class StreamingReplay:
    """Feed time-ordered chunks; each ``feed`` returns that chunk's decisions (``Replay``,
    key indices into ``key_names``, the keys of every chunk so far); ``finish`` applies the
    reports still pending and returns each key's deepest debt."""

    def __init__(self, rules: Sequence[Rule], charge: Charge = "completion", *,
                 where: Callable[[int], tuple[str, int]] | None = None) -> None:
        """``where``: a request's position in the stream to (its file, its position there),
        for errors, when the stream is a dataset of files."""
        for index, rule in enumerate(rules):
            if (rule.fill_interval_second <= 0 or rule.redis_expired_seconds <= 0
                    or rule.max_tokens < 0 or rule.tokens_per_fill < 0):
                raise ConfigError(f"rule {index} has a non-positive interval or TTL, or "
                                  "negative tokens: replay the trace whole")
        self.charge: Charge = charge
        self.where = where
        self.matcher = RuleMatcher(rules)
        self.params = rule_params(rules)
        self.names: dict[str, int] = {}
        self.rule_of_key = np.zeros(0, dtype=np.int64)
        self.state = np.zeros((0, 3), dtype=np.int64)
        self.expires = np.zeros(0)
        self.last_ts = -np.inf
        self.last_row = -1  # the position in its file of the request at ``last_ts``
        # Reports pending from earlier chunks (the scan queues them by due time): when,
        # tokens, keys (CSR).
        self.carry_at = np.zeros(0)
        self.carry_charged = np.zeros(0, dtype=np.int64)
        self.carry_ptr = np.zeros(1, dtype=np.int64)
        self.carry_keys = np.zeros(0, dtype=np.int64)

    @property
    def key_names(self) -> tuple[str, ...]:
        return tuple(self.names)

    def _global_keys(self, chunk: Trace) -> IntArray:
        """This chunk's key indices mapped to the stream's (new keys get state)."""
        known = len(self.names)
        mapping = np.array([self.names.setdefault(k, len(self.names))
                            for k in chunk.key_names], dtype=np.int64)
        added = list(self.names)[known:]
        for name in added:
            base = name[: -len(LAST_FILL_SUFFIX)] if name.endswith(LAST_FILL_SUFFIX) else None
            if (base is not None and base in self.names) or name + LAST_FILL_SUFFIX in self.names:
                raise ConfigError(f"key {name!r} collides with another key's refill-time "
                                  "entry: replay the trace whole")
        if added:
            found = [self.matcher.index_for(name) for name in added]
            self.rule_of_key = np.append(
                self.rule_of_key, np.array([-1 if f is None else f for f in found],
                                           dtype=np.int64))
            self.state = np.vstack((self.state, np.zeros((len(added), 3), dtype=np.int64)))
            self.expires = np.append(self.expires, np.full(len(added), -np.inf))
        return mapping[chunk.key_index] if chunk.key_index.size else chunk.key_index

    def feed(self, chunk: Trace, rows: IntArray | int = 0) -> Replay:
        """Decide one chunk (``TraceError`` naming the first request earlier than a request
        of a previous chunk). ``rows``: the requests' positions in their file (from 0), or
        the first one's when they follow one another."""
        n = len(chunk)
        decided = (np.empty(n, dtype=np.int8), np.empty(n, dtype=np.int64),
                   np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64))
        order = self._scan(chunk, rows, decided, None)
        return in_file_order(order, *decided, self.state[:, 2].copy())

    def feed_figures(self, chunk: Trace, rows: IntArray | int = 0) -> tuple[Any, Any]:
        """``feed``'s report figures without its decisions, as ``replay_stats.key_figures``
        gives them (a row per key of ``key_names``, then one for no rule)."""
        from tokenlimit.sim.scan import NO_DECISIONS

        counts = np.zeros((len(self.names) + len(chunk.key_names) + 1, 6), dtype=np.int64)
        first = np.full(counts.shape[0], np.inf)
        self._scan(chunk, rows, NO_DECISIONS, (counts, first))
        keys = len(self.names)  # the keys of every chunk so far, this one's too
        return (np.vstack((counts[:keys], counts[-1:])),
                np.append(first[:keys], first[-1]))

    def _scan(self, chunk: Trace, rows: IntArray | int, decided: tuple[Any, ...],
              figures: tuple[Any, Any] | None) -> IntArray | None:
        """Scan one chunk into ``decided`` or, given, ``figures`` (counts, first limited
        times: rows enough for every key, the last for no rule); the chunk's time order."""
        def position(i: int) -> int:
            return rows + i if isinstance(rows, int) else int(rows[i])

        from tokenlimit.sim.scan import NO_FIGURES, NO_PARTS, compiled_scan

        if len(chunk) == 0:
            return None
        if float(chunk.ts.min()) < self.last_ts:
            early = int(np.argmax(chunk.ts < self.last_ts))
            file, row = self._located(chunk.path, position(early))
            last_file, last_row = self._located(chunk.path, self.last_row)
            of = "a previous batch" if last_file == file else last_file
            raise TraceError(
                f"not in time order: request {row + 1} (ts {float(chunk.ts[early])!r}) is "
                f"earlier than request {last_row + 1} (ts {self.last_ts!r}) of {of}; "
                "--chunk-rows needs a trace sorted by ts (sort it, or replay it whole)",
                path=file)
        keys_global = self._global_keys(chunk)
        local = Trace(chunk.path, chunk.ts, chunk.latency, chunk.prompt_tokens,
                      chunk.completion_tokens, chunk.total_tokens, chunk.key_ptr,
                      keys_global, chunk.key_names, chunk.imputed)
        order, t, latency, charged, ptr, keys = replay_order(local, self.charge)
        t = np.ascontiguousarray(t, dtype=np.float64)
        latency = np.ascontiguousarray(latency, dtype=np.float64)
        charged = np.ascontiguousarray(charged, dtype=np.int64)
        ptr = np.ascontiguousarray(ptr, dtype=np.int64)
        keys = np.ascontiguousarray(keys, dtype=np.int64)
        if figures is None:
            adding = NO_FIGURES
        else:
            total = chunk.total_tokens if order is None else chunk.total_tokens[order]
            adding = (np.ascontiguousarray(total, dtype=np.int64), *figures)
        pending_at, pending_rows = compiled_scan(
            t, latency, charged, ptr, keys, self.rule_of_key, self.params,
            self.state, self.expires, self.carry_at, self.carry_ptr, self.carry_keys,
            self.carry_charged, False, NO_PARTS, False, *decided, *adding)
        self.last_ts = float(t[-1])
        self.last_row = position(len(chunk) - 1 if order is None else int(order[-1]))
        self._carry(pending_at, pending_rows, charged, ptr, keys)
        return order

    def _located(self, path: str, row: int) -> tuple[str, int]:
        """(file, position there) of the request at position ``row`` of the stream ``path``."""
        return (path, row) if self.where is None else self.where(row)

    def _carry(self, at: np.ndarray, rows: IntArray, charged: IntArray, ptr: IntArray,
               keys: IntArray) -> None:
        """The reports still pending after a chunk (due times ``at``; ``rows``: the chunk's
        rank, or ``-1 - i`` for the ``i``-th report carried into it), carried into the
        next (the scan queues them by due time)."""
        mine, theirs = rows[rows >= 0], -1 - rows[rows < 0]
        old_ptr, old_keys = take_key_lists(self.carry_ptr, self.carry_keys, theirs)
        new_ptr, new_keys = take_key_lists(ptr, keys, mine)
        self.carry_ptr = np.concatenate((old_ptr, new_ptr[1:] + old_ptr[-1]))
        self.carry_keys = np.concatenate((old_keys, new_keys))
        self.carry_at = np.ascontiguousarray(np.concatenate((at[rows < 0], at[rows >= 0])),
                                             dtype=np.float64)
        self.carry_charged = np.concatenate((self.carry_charged[theirs], charged[mine])
                                            ).astype(np.int64)

    def finish(self) -> IntArray:
        """Apply every pending report; each key's deepest debt (index: ``key_names``)."""
        from tokenlimit.sim.scan import NO_DECISIONS, NO_FIGURES, NO_PARTS, compiled_scan

        empty_i = np.zeros(0, dtype=np.int64)
        compiled_scan(np.zeros(0), np.zeros(0), empty_i, np.zeros(1, dtype=np.int64), empty_i,
                      self.rule_of_key, self.params, self.state, self.expires, self.carry_at,
                      self.carry_ptr, self.carry_keys, self.carry_charged, True, NO_PARTS,
                      False, *NO_DECISIONS, *NO_FIGURES)
        self.carry_at = np.zeros(0)
        self.carry_charged = empty_i
        self.carry_ptr = np.zeros(1, dtype=np.int64)
        self.carry_keys = empty_i
        return self.state[:, 2].copy()

