"""The ASM replay on several cores (``--jobs N``) or a Dask cluster (``--executor dask``).

Requests on different keys never interact: a check reads and writes its own keys' buckets, a
report deducts from its own keys. Keys that share a request (a multi-key check) are coupled, so
keys are grouped into connected components (keys linked through any request), components are
dealt to partitions (largest first, each to the least loaded partition), and each partition's
requests are replayed on their own. That gives exactly the sequential replay; a test compares
them on hypothesis-generated traces.

``executor``: ``local`` (threads here: each scans the whole trace's arrays in place, deciding
only its partition's checks, with the GIL released by the compiled scan) or ``dask`` (the
optional ``[dask]`` extra: each partition's requests are copied out and sent to a worker of a
``distributed.Client`` on ``scheduler``, an address such as ``tcp://10.0.0.5:8786``, or of a
local cluster when none is given; the decisions are scattered back by request index, and each
key's deepest debt comes from its own partition).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from tokenlimit.bucket.types import Charge
from tokenlimit.errors import ConfigError
from tokenlimit.rules.model import Rule
from tokenlimit.sim.engine import Replay, asm_figures_of, fallback_reason, key_rules, replay_asm
from tokenlimit.sim.trace_table import IntArray, Trace, take_key_lists

EXECUTORS = ("local", "dask")
# Below this many requests one scan takes milliseconds: threads would cost more than they save.
SMALL_TRACE = 100_000
T = TypeVar("T")


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the system has one)."""
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)


def map_blocks(n: int, blocks: int, work: Callable[[int, int], T]) -> list[T]:
    """``work(start, stop)`` for ``blocks`` consecutive blocks of ``range(n)``, a thread each
    (in line for one block): for compiled passes that release the GIL.

    >>> map_blocks(10, 3, lambda start, stop: (start, stop)), map_blocks(10, 0, max)
    ([(0, 3), (3, 6), (6, 10)], [10])
    """
    blocks = max(blocks, 1)
    bounds = [(n * b // blocks, n * (b + 1) // blocks) for b in range(blocks)]
    if len(bounds) == 1:
        return [work(*bounds[0])]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=len(bounds)) as pool:
        return list(pool.map(lambda bound: work(*bound), bounds))


@dataclass(frozen=True, slots=True)
class Parallelism:
    """How to spread a replay: ``jobs`` partitions, on ``executor`` (at ``scheduler``)."""

    jobs: int = 1
    executor: str = "local"
    scheduler: str | None = None


def key_components(trace: Trace) -> IntArray:
    """Each key's component: the smallest key index it is linked to through requests."""
    from tokenlimit.sim.scan import shares_a_request

    label = np.arange(len(trace.key_names), dtype=np.int64)
    if not shares_a_request(trace.key_ptr):
        return label
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


def key_partitions(trace: Trace, parts: int) -> tuple[IntArray, int]:
    """(each key's partition, how many partitions have requests): keys coupled through a
    request are in one partition, partitions hold similar request counts."""
    from tokenlimit.sim.scan import requests_per_component

    sizes, shared = _first_key_counts(trace, parts)
    if shared:  # keys coupled through requests: one group each set of them
        component = key_components(trace)
        sizes = requests_per_component(trace.key_ptr, trace.key_index, component)
    else:
        component = np.arange(len(trace.key_names), dtype=np.int64)
    groups = np.flatnonzero(sizes)
    part_of_group = np.zeros(sizes.size, dtype=np.int64)
    biggest_first = groups[np.argsort(-sizes[groups], kind="stable")]
    if biggest_first.size <= 4096:
        load = np.zeros(parts, dtype=np.int64)
        for g in biggest_first.tolist():
            target = int(np.argmin(load))  # largest first, each to the lightest partition
            part_of_group[g] = target
            load[target] += sizes[g]
    else:  # many groups: deal them largest first in a snake (0 1 .. 1 0 0 1 ..)
        turn = np.arange(biggest_first.size) % (2 * parts)
        part_of_group[biggest_first] = np.where(turn < parts, turn, 2 * parts - 1 - turn)
    used = np.unique(part_of_group[biggest_first])
    renumber = np.zeros(parts, dtype=np.int64)  # the partitions with requests: 0 .. used - 1
    renumber[used] = np.arange(used.size)
    return renumber[part_of_group[component]], int(used.size)


def _first_key_counts(trace: Trace, threads: int) -> tuple[IntArray, bool]:
    """(per key, the requests whose first key it is; whether any request has two keys),
    counted in blocks of requests on up to ``threads`` threads (the pass is on the way to
    every partitioned replay, before its threads start)."""
    from tokenlimit.sim.scan import first_key_counts

    n, keys = len(trace), len(trace.key_names)

    def count(start: int, stop: int) -> tuple[IntArray, bool]:
        counts = np.zeros(keys, dtype=np.int64)
        shared = first_key_counts(trace.key_ptr, trace.key_index, start, stop, counts)
        return counts, shared

    found = map_blocks(n, min(threads, usable_cores(), n // SMALL_TRACE), count)
    return np.sum([c for c, _ in found], axis=0), any(s for _, s in found)


def partition_requests(trace: Trace, parts: int) -> list[IntArray]:
    """Request indices (file order) of each of ``parts`` partitions; coupled keys together."""
    owner, used = key_partitions(trace, parts)
    has_key = trace.key_ptr[1:] > trace.key_ptr[:-1]
    of_request = np.full(len(trace), -1, dtype=np.int64)
    of_request[has_key] = owner[trace.key_index[trace.key_ptr[:-1][has_key]]]
    of_request[~has_key] = 0  # no key, no bucket: any partition decides it
    return [np.flatnonzero(of_request == p) for p in range(used)]


def sub_trace(trace: Trace, rows: IntArray) -> Trace:
    """The requests ``rows`` of ``trace`` (key indices and names kept)."""
    ptr, index = take_key_lists(trace.key_ptr, trace.key_index, rows)
    return Trace(trace.path, trace.ts[rows], trace.latency[rows], trace.prompt_tokens[rows],
                 trace.completion_tokens[rows], trace.total_tokens[rows], ptr, index,
                 trace.key_names, trace.imputed[rows])


def _replay_part(rules: Sequence[Rule], part: Trace, charge: Charge,
                 rule_of_key: IntArray | None = None) -> Replay:
    return replay_asm(rules, part, charge, rule_of_key)


def replay_partitioned(rules: Sequence[Rule], trace: Trace, charge: Charge = "completion",
                       jobs: int = 2, executor: str = "local",
                       scheduler: str | None = None, min_rows: int = SMALL_TRACE) -> Replay:
    """``replay_asm``'s result, computed on ``jobs`` partitions in parallel (local: for
    traces of ``min_rows`` requests or more)."""
    if executor not in EXECUTORS:
        raise ConfigError(f"unknown executor {executor!r}: choose one of {', '.join(EXECUTORS)}")
    rule_of_key = key_rules(rules, trace.key_names)  # once, not once a partition
    small = executor == "local" and len(trace) < min_rows
    if (jobs <= 1 or small or len(trace) < 2
            or fallback_reason(rules, trace, rule_of_key) is not None):
        return replay_asm(rules, trace, charge, rule_of_key)
    if executor == "local":
        # Threads over the same arrays: the compiled scan releases the GIL (nogil), and
        # each thread decides only its partition's checks (no copies, no gathering).
        owner, parts = _thread_partitions(trace, jobs)
        return replay_asm(rules, trace, charge, rule_of_key, owner=owner, parts=parts)
    rows = partition_requests(trace, jobs)
    if len(rows) <= 1:
        return replay_asm(rules, trace, charge, rule_of_key)
    replays = _on_dask(rules, [sub_trace(trace, r) for r in rows], charge, scheduler, jobs)
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


def figures_partitioned(rules: Sequence[Rule], trace: Trace, charge: Charge = "completion",
                        jobs: int = 2, min_rows: int = SMALL_TRACE
                        ) -> tuple[Any, Any, IntArray] | None:
    """``engine.asm_figures_of`` (a report's figures without decisions) on ``jobs`` local
    partitions for traces of ``min_rows`` requests or more; ``None`` where the oracle must
    replay."""
    rule_of_key = key_rules(rules, trace.key_names)
    if fallback_reason(rules, trace, rule_of_key) is not None:
        return None
    owner, parts = (None, 1) if len(trace) < min_rows else _thread_partitions(trace, jobs)
    return asm_figures_of(rules, trace, charge, rule_of_key, owner=owner, parts=parts)


def _thread_partitions(trace: Trace, jobs: int) -> tuple[IntArray | None, int]:
    """(each key's partition, how many) for the scan's threads (``key_partitions``, at most
    ``scan.MAX_PARTS``), or ``(None, 1)``: one scan, where fewer than two would have
    requests."""
    from tokenlimit.sim.scan import MAX_PARTS

    if jobs <= 1 or len(trace) < 2:
        return None, 1
    owner, used = key_partitions(trace, min(jobs, MAX_PARTS))
    return (owner, used) if used > 1 else (None, 1)


def _on_dask(rules: Sequence[Rule], parts: list[Trace], charge: Charge,
             scheduler: str | None, jobs: int) -> list[Replay]:
    with dask_client(scheduler, jobs) as client:
        futures = client.map(_replay_part, [rules] * len(parts), parts, [charge] * len(parts),
                             pure=False)
        result: list[Any] = client.gather(futures)
        return result


@contextmanager
def dask_client(scheduler: str | None, jobs: int) -> Iterator[Any]:
    """A Dask client of the scheduler at ``scheduler``, or of a local cluster of ``jobs``
    worker processes started for the replay (``ConfigError`` without the dask extra)."""
    import importlib

    try:
        distributed: Any = importlib.import_module("distributed")  # untyped: used as Any
    except ImportError as exc:
        raise ConfigError("--executor dask needs the dask extra: pip install "
                          "'tokenlimit[dask]'") from exc
    Client, LocalCluster = distributed.Client, distributed.LocalCluster
    if scheduler is not None:
        with Client(scheduler) as client:
            yield client
        return
    with LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        yield client
