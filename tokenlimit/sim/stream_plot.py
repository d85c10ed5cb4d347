"""``simulate --chunk-rows --plot``: the replay chart of a streamed replay, exactly the whole
replay's.

The chart draws every check of its keys (the first ``MAX_KEYS`` of the ``--top`` keys), which
are known only once the whole trace is replayed; so a streamed replay with a chart replays
the trace a second time and keeps, batch by batch, the requests those keys decided (in file
order, as the whole replay has them) and the trace's first and last instants (the time axis).
Memory: those keys' requests, not the trace.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tokenlimit.bucket.types import Charge
from tokenlimit.sim.engine import Replay
from tokenlimit.sim.replay_plot import MAX_KEYS
from tokenlimit.sim.trace_table import IntArray, Trace


class ChartRequests:
    """The requests decided by the drawn keys, gathered from the batches of a replay."""

    def __init__(self, key_names: Sequence[str], keys: Sequence[str], charge: Charge) -> None:
        index = {name: i for i, name in enumerate(key_names)}
        shown = [k for k in keys if k in index][:MAX_KEYS] or list(key_names[:1])
        self.key_names = tuple(key_names)
        self.drawn = np.array([index[k] for k in shown], dtype=np.int64)
        self.charge: Charge = charge
        self.first, self.last = np.inf, -np.inf
        self.parts: list[tuple[np.ndarray, ...]] = []

    def add(self, rows: IntArray, chunk: Trace, replay: Replay) -> None:
        """Keep this part's requests decided by a drawn key (``rows``: their positions in the
        file), and its time span."""
        if len(chunk) == 0:
            return
        self.first = min(self.first, float(chunk.ts.min()))
        self.last = max(self.last, float(chunk.ts.max()))
        mine = np.flatnonzero(np.isin(replay.key, self.drawn))
        self.parts.append((rows[mine], chunk.ts[mine], chunk.charged(self.charge)[mine],
                           replay.outcome[mine], replay.rule[mine], replay.key[mine],
                           replay.balance[mine]))

    def trace_and_replay(self, path: str) -> tuple[Trace, Replay]:
        """A trace of the kept requests plus two keyless ones at the first and last instants
        (the chart's time axis), and its replay: what ``replay_figure`` draws."""
        rows, ts, charged, outcome, rule, key, balance = (
            np.concatenate([part[i] for part in self.parts]) for i in range(7))
        order = np.argsort(rows, kind="stable")  # the whole replay's: file order
        ts, charged, outcome, rule, key, balance = (
            a[order] for a in (ts, charged, outcome, rule, key, balance))
        ts = np.append(ts, [self.first, self.last])
        charged = np.append(charged, [0, 0]).astype(np.int64)
        n = ts.size
        zeros = np.zeros(n, dtype=np.int64)
        trace = Trace(path, ts, np.zeros(n), zeros, charged, charged.copy(),
                      np.arange(n + 1, dtype=np.int64), np.append(key, [0, 0]).astype(np.int64),
                      self.key_names, np.zeros(n, dtype=np.bool_))
        replay = Replay(np.append(outcome, [0, 0]).astype(np.int8),
                        np.append(rule, [-1, -1]).astype(np.int64),
                        np.append(key, [-1, -1]).astype(np.int64),
                        np.append(balance, [0, 0]).astype(np.int64), zeros, "scan")
        return trace, replay
