"""``simulate --executor dask`` on a Parquet trace the client never reads.

Each Dask worker reads the trace's few columns from every file itself (a local path or any
URL fsspec reads, as its own file system sees it), keeps the requests of its own keys,
replays them and sends back per-key figures. A key's requests all land on one worker and a
key's figures depend only on its requests, so the figures side by side are exactly the whole
replay's report. Memory on a worker is one file's trace columns plus its own requests; the
client holds per-key figures only. Every worker reads every file (I/O grows with the workers,
memory per worker does not).

A key goes to worker ``crc32(key) % workers``, ``_last_fill_time`` taken off its end first: a
key and its refill-time twin share a Redis entry, so they are replayed together (by the
reference, as the whole replay would).

``None`` (the client then reads the trace and ships partitions, ``partition.py``) for what
this cannot decide exactly: requests with several keys (their keys couple), usage to impute
(its draws run over the whole trace in one sequence), and anything the columnar reader
declines (the per-row reader names the bad line).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tokenlimit.bucket.keyspace import LAST_FILL_SUFFIX
from tokenlimit.bucket.types import Charge
from tokenlimit.errors import TraceError
from tokenlimit.rules.model import Rule
from tokenlimit.sim.columnar import Declined, build_trace
from tokenlimit.sim.engine import asm_figures_of, replay_asm
from tokenlimit.sim.log_reader import limited_count
from tokenlimit.sim.readers import parquet_frame, trace_columns
from tokenlimit.sim.replay_stats import key_figures
from tokenlimit.sim.trace_sources import is_dataset, parquet_files


@dataclass(frozen=True)
class KeyFigures:
    """A replay's figures per key (``replay_stats.key_figures``: row ``len(key_names)`` is
    the requests no rule decided), each key's deepest debt, and what else the report says."""

    key_names: tuple[str, ...]
    counts: Any
    first: Any
    deepest: Any
    engine: str
    requests: int
    recorded_429: int


def worker_of(key: str, workers: int) -> int:
    """The worker that replays ``key`` (its refill-time twin goes to the same one).

    >>> worker_of("user-1", 4) == worker_of("user-1_last_fill_time", 4)
    True
    """
    return zlib.crc32(key.removesuffix(LAST_FILL_SUFFIX).encode()) % workers


def replay_on_workers(name: str, rules: Sequence[Rule], charge: Charge, workers: int,
                      client: Any, *, key_field: str | None, seed: int) -> KeyFigures | None:
    """The figures of ``name`` (a Parquet file, folder or glob, local or at a URL) replayed
    by ``workers`` Dask tasks on ``client``, each reading the files itself; ``None`` when
    the trace must be read whole (see the module docstring)."""
    files = parquet_files(name) if is_dataset(name) else [name]
    futures = client.map(worker_figures, [files] * workers, range(workers), [workers] * workers,
                         [tuple(rules)] * workers, [charge] * workers,
                         [key_field] * workers, [seed] * workers, [name] * workers, pure=False)
    parts: list[KeyFigures | None] = client.gather(futures)
    if any(p is None for p in parts):
        return None
    return merge_figures([p for p in parts if p is not None])


def worker_figures(files: Sequence[str], worker: int, workers: int, rules: Sequence[Rule],
                   charge: Charge, key_field: str | None, seed: int,
                   name: str) -> KeyFigures | None:
    """On a worker: read ``files`` keeping the requests of this worker's keys, replay them,
    and return their figures (``None``: see the module docstring)."""
    import polars as pl

    key = key_field or "key"
    frames = []
    for file in files:
        try:
            frame = parquet_frame(file, lambda names: trace_columns(names, key_field))
        except TraceError:
            return None  # the client reads it and names the problem
        if key not in frame.columns or (key_field is None and "keys" in frame.columns):
            return None  # no single key per request
        keys = frame[key].cast(pl.String)
        mine = [k for k in keys.drop_nulls().unique().to_list() if worker_of(k, workers) == worker]
        # A request without a key stays with worker 0: its columnar reading declines.
        frames.append(frame.filter(keys.is_in(mine) | (keys.is_null() & (worker == 0))))
    try:
        trace = build_trace(pl.concat(frames, how="diagonal_relaxed"), name, seed, key_field)
    except (Declined, pl.exceptions.PolarsError):
        return None
    if trace.imputed_count:
        return None
    figures = asm_figures_of(rules, trace, charge)  # the figures, without decisions
    if figures is not None:
        counts, first, deepest = figures
        engine = "scan"
    else:  # the oracle's replay
        replay = replay_asm(rules, trace, charge)
        counts, first = key_figures(trace, replay, charge, len(trace.key_names))
        deepest, engine = replay.deepest, replay.engine
    return KeyFigures(trace.key_names, counts, first, deepest, engine, len(trace),
                      limited_count(trace))


def merge_figures(parts: Sequence[KeyFigures]) -> KeyFigures:
    """The figures of partitions with disjoint keys, side by side: one replay's."""
    counts = [p.counts[:-1] for p in parts]
    first = [p.first[:-1] for p in parts]
    no_rule = np.vstack([p.counts[-1:] for p in parts]).sum(axis=0, keepdims=True)
    return KeyFigures(
        tuple(k for p in parts for k in p.key_names),
        np.vstack([*counts, no_rule]),
        np.concatenate([*first, [min(float(p.first[-1]) for p in parts)]]),
        np.concatenate([p.deepest for p in parts]).astype(np.int64),
        "oracle" if any(p.engine == "oracle" for p in parts) else "scan",
        sum(p.requests for p in parts), sum(p.recorded_429 for p in parts))
