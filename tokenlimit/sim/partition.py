"""The ASM replay on several cores (``--jobs N``) or a Dask cluster (``--executor dask``).

Requests on different keys never interact: a check reads and writes its own keys' buckets, a
report deducts from its own keys. Keys that share a request (a multi-key check) are coupled, so
keys are grouped into connected components (keys linked through any request), components are
dealt to partitions (largest first, each to the least loaded partition), and each partition's
requests (in file order) are replayed on their own by ``replay_asm``. Scattering the decisions
back by request index and taking each key's deepest debt from its own partition gives exactly
the sequential replay; a test compares them on hypothesis-generated traces.

``executor``: ``local`` (threads here: the compiled scan releases the GIL) or ``dask`` (the
optional ``[dask]`` extra: a ``distributed.Client`` on ``scheduler``, an address such as
``tcp://10.0.0.5:8786``, or a local cluster when none is given).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tokenlimit.bucket.types import Charge
from tokenlimit.errors import ConfigError
from tokenlimit.rules.model import Rule
from tokenlimit.sim.engine import Replay, fallback_reason, key_rules, replay_asm
from tokenlimit.sim.trace_table import IntArray, Trace

EXECUTORS = ("local", "dask")


@dataclass(frozen=True, slots=True)
class Parallelism:
    """How to spread a replay: ``jobs`` partitions, on ``executor`` (at ``scheduler``)."""

    jobs: int = 1
    executor: str = "local"
    scheduler: str | None = None


def key_components(trace: Trace) -> IntArray:
    """Each key's component: the smallest key index it is linked to through requests."""
    label = np.arange(len(trace.key_names), dtype=np.int64)
    lengths = np.diff(trace.key_ptr)
    multi = np.flatnonzero(lengths > 1)
    if multi.size == 0:
        return label
    starts, counts = trace.key_ptr[multi], lengths[multi]
    offsets = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    firsts = np.repeat(trace.key_index[starts], counts)
    others = trace.key_index[np.repeat(starts, counts) + offsets]
    while True:  # label propagation: each pass pulls both ends of every link to their minimum
        low = np.minimum(label[firsts], label[others])
        before = label.copy()
        np.minimum.at(label, firsts, low)
        np.minimum.at(label, others, low)
        label = label[label]  # jump to the representative's representative
        if np.array_equal(label, before):
            return label


def partition_requests(trace: Trace, parts: int) -> list[IntArray]:
    """Request indices (file order) of each of ``parts`` partitions; coupled keys together."""
    n = len(trace)
    component = key_components(trace)
    has_key = np.diff(trace.key_ptr) > 0
    owner = np.zeros(n, dtype=np.int64)  # a request's component + 1 (0: no key)
    owner[has_key] = component[trace.key_index[trace.key_ptr[:-1][has_key]]] + 1
    sizes = np.bincount(owner, minlength=len(trace.key_names) + 1)
    groups = np.flatnonzero(sizes)
    load = np.zeros(parts, dtype=np.int64)
    part_of_group = np.zeros(sizes.size, dtype=np.int64)
    for g in groups[np.argsort(-sizes[groups], kind="stable")].tolist():
        target = int(np.argmin(load))  # largest first, each to the lightest partition
        part_of_group[g] = target
        load[target] += sizes[g]
    part_of = part_of_group[owner]
    return [np.flatnonzero(part_of == p) for p in range(parts) if load[p]]


def sub_trace(trace: Trace, rows: IntArray) -> Trace:
    """The requests ``rows`` of ``trace`` (key indices and names kept)."""
    lengths = np.diff(trace.key_ptr)[rows]
    ptr = np.zeros(rows.size + 1, dtype=np.int64)
    np.cumsum(lengths, out=ptr[1:])
    starts = trace.key_ptr[:-1][rows]
    index = trace.key_index[np.repeat(starts - ptr[:-1], lengths) + np.arange(ptr[-1])]
    return Trace(trace.path, trace.ts[rows], trace.latency[rows], trace.prompt_tokens[rows],
                 trace.completion_tokens[rows], trace.total_tokens[rows], ptr, index,
                 trace.key_names, trace.imputed[rows])


def _replay_part(rules: Sequence[Rule], part: Trace, charge: Charge,
                 rule_of_key: IntArray | None = None) -> Replay:
    return replay_asm(rules, part, charge, rule_of_key)


def replay_partitioned(rules: Sequence[Rule], trace: Trace, charge: Charge = "completion",
                       jobs: int = 2, executor: str = "local",
                       scheduler: str | None = None) -> Replay:
    """``replay_asm``'s result, computed on ``jobs`` partitions in parallel."""
    if executor not in EXECUTORS:
        raise ConfigError(f"unknown executor {executor!r}: choose one of {', '.join(EXECUTORS)}")
    rule_of_key = key_rules(rules, trace.key_names)  # once, not once a partition
    if jobs <= 1 or len(trace) < 2 or fallback_reason(rules, trace, rule_of_key) is not None:
        return replay_asm(rules, trace, charge, rule_of_key)
    rows = partition_requests(trace, jobs)
    if len(rows) <= 1:
        return replay_asm(rules, trace, charge, rule_of_key)
    parts = [sub_trace(trace, r) for r in rows]
    if executor == "dask":
        replays = _on_dask(rules, parts, charge, scheduler, jobs)
    else:
        # Threads, not processes: the compiled scan releases the GIL (nogil), and threads
        # share the trace and numba's compiled code instead of copying and reloading them.
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(jobs, len(parts))) as pool:
            replays = list(pool.map(_replay_part, [rules] * len(parts), parts,
                                    [charge] * len(parts), [rule_of_key] * len(parts)))
    n = len(trace)
    outcome = np.zeros(n, dtype=np.int8)
    rule = np.zeros(n, dtype=np.int64)
    key = np.zeros(n, dtype=np.int64)
    balance = np.zeros(n, dtype=np.int64)
    deepest = np.zeros(len(trace.key_names), dtype=np.int64)
    for indices, replay in zip(rows, replays, strict=True):
        outcome[indices], rule[indices] = replay.outcome, replay.rule
        key[indices], balance[indices] = replay.key, replay.balance
        np.minimum(deepest, replay.deepest, out=deepest)  # a key lives in one partition
    return Replay(outcome, rule, key, balance, deepest, "scan")


def _on_dask(rules: Sequence[Rule], parts: list[Trace], charge: Charge,
             scheduler: str | None, jobs: int) -> list[Replay]:
    import importlib

    try:
        distributed: Any = importlib.import_module("distributed")  # untyped: used as Any
    except ImportError as exc:
        raise ConfigError("--executor dask needs the dask extra: pip install "
                          "'tokenlimit[dask]'") from exc
    Client, LocalCluster = distributed.Client, distributed.LocalCluster
    if scheduler is not None:
        with Client(scheduler) as client:
            return list(client.gather(client.map(_replay_part, [rules] * len(parts), parts,
                                                 [charge] * len(parts), pure=False)))
    with LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        futures = client.map(_replay_part, [rules] * len(parts), parts, [charge] * len(parts),
                             pure=False)
        result: list[Any] = client.gather(futures)
        return result
