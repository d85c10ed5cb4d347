"""The sequential part of the ASM replay, compiled with numba (``cache=True``: compiled once
per machine, then loaded from numba's cache).

Every array is indexed by the request's rank in replay order. State per key: the balance,
the last refill second and the float time when both Redis keys expire (-inf: missing).
The per-key state is exactly the oracle's two Redis keys as long as no key is another key plus
``_last_fill_time`` (``engine.fallback_reason`` sends such traces to the oracle).

A second implementation of the ASM semantics, by necessity (speed): it must equal
``tokenlimit.bucket.limiter.AsmLimiter`` (``check_script`` per key, ``multi_key_check`` per
request) replayed by ``tokenlimit.sim.oracle.replay_oracle``, and is held to it by the
hypothesis properties in tests/sim/test_engine.py
(``test_fast_engine_decides_exactly_like_the_oracle`` and
``test_fast_engine_debts_keys_and_balances_match_the_oracle``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tokenlimit.sim.jit import njit, trailing_zeros_intrinsic

trailing_zeros = trailing_zeros_intrinsic()


def _report(i: int, when: float, ptr: Any, keys: Any, rule_of_key: Any, charged: Any,
            state: Any, expires: Any) -> None:
    for p in range(ptr[i], ptr[i + 1]):
        k = keys[p]
        if rule_of_key[k] < 0:
            continue  # an unmatched key's Redis entry is never read by a check
        if when > expires[k]:
            expires[k] = -np.inf  # DECRBY recreates it without TTL: the next check resets
        else:
            b = state[k, 0] - charged[i]
            state[k, 0] = b
            if b < state[k, 2]:
                state[k, 2] = b


def _scan(t: Any, latency: Any, charged: Any, ptr: Any, keys: Any, rule_of_key: Any,
          params: Any, state: Any, expires: Any, carry_at: Any, carry_ptr: Any,
          carry_keys: Any, carry_charged: Any, drain: bool, mine: Any,
          partitioned: bool, outcome: Any, out_rule: Any, out_key: Any,
          out_balance: Any, total: Any, counts: Any, first_limited: Any
          ) -> tuple[Any, Any]:
    """Decide the checks ``t`` (a whole replay, or one chunk of a streamed one) from the
    per-key ``state`` (balance, last refill second, deepest) and ``expires`` left by the
    checks before, updated in place, into ``outcome`` ... ``out_balance`` (written for every
    check decided here, so they may come uninitialized).

    Each admitted request's report waits in a heap by due time until the first check at or
    after it. The heap holds only the reports in flight (those due after the check at hand), so
    it stays small, where a trace-long queue sorted by due time cost a sort, a read of
    memory per report and, per partition, a pass to find its rows. Queueing is still
    most of the scan's time, so the heap is four-way: half the levels of a binary heap for
    an entry to sink through (the scan 20% faster on bench/simulate.py's trace; eight-way
    was no faster). Reports due at one instant commute (the same expiry verdict, and DECRBY
    adds up): ties need no order.

    ``carry_*``: reports still pending from earlier chunks, queued first. ``drain``: apply
    every report left at the end (the last chunk); otherwise the reports still pending are
    returned (due times, and rows: this chunk's rank, or ``-1 - i`` for the ``i``-th
    carried report).

    ``partitioned``: decide only the checks whose bit is set in ``mine`` (one bit a check,
    64 to a word: this partition's row of ``prepare_parts``' masks). The scan goes from one
    set bit to the next (``_next_row``) instead of testing each check's partition: on a
    trace whose partitions interleave at random, that test was a mispredicted branch every
    other check, a tenth of each partition's scan. Partitions own disjoint keys, so they run
    at the same time over the same arrays (``nogil``), each with its own ``state`` and
    ``expires``.

    ``counts`` with rows (one a key, then one for checks no rule decides): add each check's
    figures there (``replay_stats.key_figures``' columns; ``total``: the requests' total
    tokens; ``first_limited``: each row's first limited time) instead of writing
    ``outcome`` ... ``out_balance``, which are then empty. A report needs only these
    figures: not writing the decisions saves a pass over them and 25 bytes of fresh memory a
    check."""
    n = t.shape[0]
    record = counts.shape[0] == 0
    heap_at = np.empty(n + carry_at.shape[0], dtype=np.float64)  # pages touched only as
    heap_row = np.empty(n + carry_at.shape[0], dtype=np.int64)  # deep as the heap grows
    size = 0
    j = -carry_at.shape[0] - 1
    while True:
        j = _next_row(j, n, mine) if partitioned and j >= -1 else j + 1  # carried first
        if j < 0:  # a carried report joins the queue
            due, row = carry_at[-1 - j], j
        else:
            now = t[j] if j < n else np.inf
            if j == n and not drain:
                break
            while size > 0 and heap_at[0] <= now:  # reports due by now, earliest first
                i = heap_row[0]
                if i >= 0:
                    _report(i, heap_at[0], ptr, keys, rule_of_key, charged, state, expires)
                else:
                    _report(-1 - i, heap_at[0], carry_ptr, carry_keys, rule_of_key,
                            carry_charged, state, expires)
                size -= 1
                at, i = heap_at[size], heap_row[size]  # the last entry sinks from the top
                hole = 0
                while True:
                    first = 4 * hole + 1
                    if first >= size:
                        break
                    child, soonest = first, heap_at[first]
                    for c in range(first + 1, min(first + 4, size)):
                        if heap_at[c] < soonest:
                            child, soonest = c, heap_at[c]
                    if soonest >= at:
                        break
                    heap_at[hole], heap_row[hole] = soonest, heap_row[child]
                    hole = child
                heap_at[hole], heap_row[hole] = at, i
            if j == n:
                break
            # The check: its keys in order, as ``multi_key_check``.
            limited, rule, key, balance = False, -1, -1, 0
            now_s = np.int64(np.floor(now))
            for p in range(ptr[j], ptr[j + 1]):
                k = keys[p]
                r = rule_of_key[k]
                if r < 0:
                    continue
                if now > expires[k]:
                    b = params[r, 1]
                    state[k, 0] = b
                    state[k, 1] = now_s
                    expires[k] = now + params[r, 3]
                else:
                    # Integer division is the slowest instruction here: skipped where the
                    # quotient is plain (the scan 3-5% faster on bench/simulate.py's trace).
                    b = state[k, 0]
                    elapsed, interval = now_s - state[k, 1], params[r, 2]
                    if elapsed < interval:
                        intervals = 0
                    elif elapsed < 2 * interval:
                        intervals = 1
                    else:
                        intervals = elapsed // interval
                    if intervals > 0:
                        top, per_fill = params[r, 0], params[r, 1]
                        if b >= top:
                            b = top
                        elif per_fill > 0:
                            if intervals < 2**31 and per_fill < 2**31:  # the product fits
                                full = per_fill * intervals >= top - b
                            else:  # intervals >= ceil((top - b) / per_fill)
                                full = intervals >= (top - b + per_fill - 1) // per_fill
                            b = top if full else b + per_fill * intervals
                        state[k, 0] = b
                        state[k, 1] = now_s
                        expires[k] = now + params[r, 3]
                if b <= 0:
                    limited, rule, key, balance = True, r, k, b
                    break
                if key < 0:  # the first matched key answers for an admitted check
                    rule, key, balance = r, k, b
            if record:
                outcome[j] = 1 if limited else 0
                out_rule[j], out_key[j], out_balance[j] = rule, key, balance
            else:
                g = key if key >= 0 else counts.shape[0] - 1
                counts[g, 0] += 1
                if limited:
                    counts[g, 2] += 1
                    if now < first_limited[g]:
                        first_limited[g] = now
                else:
                    counts[g, 1] += 1
                    counts[g, 4] += charged[j]
                    counts[g, 5] += total[j]
            if limited or key < 0:
                continue  # only admitted requests with a rule report
            wait = latency[j]
            due, row = now + (0.0 if wait < 0 else wait), j  # t + max(latency, 0)
            if due == now:  # zero latency: due before the next check (at now or later)
                _report(j, now, ptr, keys, rule_of_key, charged, state, expires)
                continue
        hole = size  # the new entry rises from the bottom
        size += 1
        while hole > 0:
            parent = (hole - 1) >> 2
            if heap_at[parent] <= due:
                break
            heap_at[hole], heap_row[hole] = heap_at[parent], heap_row[parent]
            hole = parent
        heap_at[hole], heap_row[hole] = due, row
    return heap_at[:size], heap_row[:size]


def _next_row(j: int, n: int, mine: Any) -> Any:
    """The first check after ``j`` whose bit is set in ``mine`` (``n``: none)."""
    start = j + 1
    if start >= n:
        return n
    w = start >> 6
    m = mine[w] & (np.uint64(0xFFFFFFFFFFFFFFFF) << np.uint64(start & 63))
    while m == 0:
        w += 1
        if w >= mine.shape[0]:
            return n
        m = mine[w]
    return (w << 6) + np.int64(trailing_zeros(m))


def _shares_a_request(ptr: Any) -> bool:
    """Whether any check has more than one key."""
    for j in range(ptr.shape[0] - 1):  # noqa: SIM110 - compiled: a loop, not a generator
        if ptr[j + 1] - ptr[j] > 1:
            return True
    return False


def _prepare_parts(ptr: Any, keys: Any, owner: Any, masks: Any, start: int, stop: int,
                   outcome: Any, out_rule: Any, out_key: Any, out_balance: Any) -> None:
    """For the checks ``start .. stop - 1`` (``start`` a multiple of 64): each one's bit in
    its partition's row of ``masks`` (``parts`` x words of 64 checks; the partition is its
    first key's, from ``owner``: a check's keys are all in one partition; 0 for a check
    without keys, which decides nothing), and a first write to the outputs. The partitions'
    threads each prepare a block of checks at the same time: the outputs' fresh pages are
    then touched once, by one thread (the scans, writing checks of every block, made both
    threads fault on the same pages at once), and the pass is not serial. Empty outputs: a
    scan adding up figures (``_scan``'s ``counts``) writes none."""
    parts = masks.shape[0]
    record = outcome.shape[0] > 0
    words = np.zeros(parts, dtype=np.uint64)
    for w in range(start >> 6, (stop + 63) >> 6):
        words[:] = 0
        for j in range(w << 6, min((w + 1) << 6, stop)):
            p = owner[keys[ptr[j]]] if ptr[j] < ptr[j + 1] else 0
            words[p] |= np.uint64(1) << np.uint64(j & 63)
            if record:
                outcome[j], out_rule[j], out_key[j], out_balance[j] = 0, -1, -1, 0
        for p in range(parts):
            masks[p, w] = words[p]


def _first_key_counts(ptr: Any, keys: Any, start: int, stop: int, counts: Any) -> bool:
    """Add to ``counts`` (per key) the checks ``start .. stop - 1`` whose first key it is;
    whether any of them has more than one key."""
    shared = False
    for j in range(start, stop):
        first, end = ptr[j], ptr[j + 1]
        if first < end:
            counts[keys[first]] += 1
            if end - first > 1:
                shared = True
    return shared


def _requests_per_component(ptr: Any, keys: Any, component: Any) -> Any:
    """How many checks have their keys in each component (indexed like ``component``)."""
    counts = np.zeros(component.shape[0], dtype=np.int64)
    for j in range(ptr.shape[0] - 1):
        if ptr[j] < ptr[j + 1]:
            counts[component[keys[ptr[j]]]] += 1
    return counts


# Partitions of one scan: each has a bit a check (at most a word a check in all), and a
# thread (more threads than cores would only take turns).
MAX_PARTS = 64
NO_PARTS = np.zeros(0, dtype=np.uint64)  # ``mine`` of a scan that is not partitioned
# ``outcome`` ... ``out_balance`` of a scan that adds up figures
NO_DECISIONS = (np.zeros(0, dtype=np.int8), np.zeros(0, dtype=np.int64),
                np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
# ``total``, ``counts`` and ``first_limited`` of a scan that writes decisions
NO_FIGURES = (np.zeros(0, dtype=np.int64), np.zeros((0, 6), dtype=np.int64), np.zeros(0))

# nogil: the partitions of one replay scan on threads at the same time.
_report = njit(_report, error_model="numpy", nogil=True)
_next_row = njit(_next_row, error_model="numpy", nogil=True)
compiled_scan = njit(_scan, error_model="numpy", nogil=True)
prepare_parts = njit(_prepare_parts, error_model="numpy", nogil=True)
requests_per_component = njit(_requests_per_component, error_model="numpy", nogil=True)
first_key_counts = njit(_first_key_counts, error_model="numpy", nogil=True)
shares_a_request = njit(_shares_a_request, error_model="numpy", nogil=True)


def asm_scan(t: Any, latency: Any, charged: Any, ptr: Any, keys: Any,
             rule_of_key: Any, params: Any, n_keys: int, owner: Any = None,
             parts: int = 1) -> tuple[Any, Any, Any, Any, Any]:
    """Run the compiled scan; arrays in replay order (see the module docstring): each
    check's outcome, rule, deciding key and balance, and each key's deepest debt.

    ``owner`` (with ``parts`` > 1): each key's partition, ``0 .. parts - 1``, such that no
    request has keys in two partitions. The partitions are scanned on a thread each over the
    same arrays, each with bucket state of its own (threads writing the buckets of keys next
    to each other in one array would fight over cache lines); their decisions are exactly
    one scan's."""
    n = len(t)
    # Written by the scans (every check by exactly one partition), in parallel.
    decided = (np.empty(n, dtype=np.int8), np.empty(n, dtype=np.int64),
               np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64))
    deepest, _, _ = _run(t, latency, charged, ptr, keys, rule_of_key, params, n_keys, owner,
                         parts, decided, None)
    return (*decided, deepest)


def asm_figures(t: Any, latency: Any, charged: Any, total: Any, ptr: Any, keys: Any,
                rule_of_key: Any, params: Any, n_keys: int, owner: Any = None,
                parts: int = 1) -> tuple[Any, Any, Any]:
    """``asm_scan``'s figures without its decisions: (counts, first limited time) per
    deciding key and a last row for checks no rule decides, as ``replay_stats.key_figures``
    gives them, and each key's deepest debt. ``total``: the requests' total tokens."""
    deepest, counts, first = _run(t, latency, charged, ptr, keys, rule_of_key, params, n_keys,
                                  owner, parts, NO_DECISIONS,
                                  np.ascontiguousarray(total, dtype=np.int64))
    return counts, first, deepest


def _run(t: Any, latency: Any, charged: Any, ptr: Any, keys: Any, rule_of_key: Any,
         params: Any, n_keys: int, owner: Any, parts: int, decided: tuple[Any, ...],
         total: Any) -> tuple[Any, Any, Any]:
    """The scans of ``asm_scan`` (into ``decided``) or ``asm_figures`` (``total`` given):
    (deepest debts, counts, first limited times; both empty for decisions)."""
    t = np.ascontiguousarray(t, dtype=np.float64)
    n = t.shape[0]
    latency = np.ascontiguousarray(latency, dtype=np.float64)
    ptr = np.ascontiguousarray(ptr, dtype=np.int64)
    keys = np.ascontiguousarray(keys, dtype=np.int64)
    arrays = (np.ascontiguousarray(charged, dtype=np.int64), ptr, keys,
              np.ascontiguousarray(rule_of_key, dtype=np.int64),
              np.ascontiguousarray(params, dtype=np.int64))
    nothing = np.zeros(0, dtype=np.int64)
    partitioned = owner is not None and parts > 1
    if partitioned and parts > MAX_PARTS:
        raise ValueError(f"at most {MAX_PARTS} partitions, not {parts}")
    words = (n + 63) >> 6
    masks = np.empty((parts, words), dtype=np.uint64) if partitioned else NO_PARTS[None]
    owners = np.ascontiguousarray(owner, dtype=np.int64) if partitioned else nothing
    rows = n_keys + 1 if total is not None else 0  # figures: a row a key, one for no rule

    def prepare(block: int) -> None:  # blocks of whole words
        start, stop = (words * block // parts) << 6, min((words * (block + 1) // parts) << 6, n)
        prepare_parts(ptr, keys, owners, masks, start, stop, *decided)

    def scan_part(part: int) -> tuple[Any, Any, Any]:
        state = np.zeros((n_keys, 3), dtype=np.int64)  # balance, last refill second, deepest
        expires = np.full(n_keys, -np.inf)
        counts = np.zeros((rows, 6), dtype=np.int64)
        first = np.full(rows, np.inf)
        compiled_scan(t, latency, *arrays, state, expires, np.zeros(0),
                      np.zeros(1, dtype=np.int64), nothing, nothing, True, masks[part],
                      partitioned, *decided, nothing if total is None else total, counts,
                      first)
        return state[:, 2], counts, first

    if not partitioned:
        deepest, counts, first = scan_part(0)
        return deepest.copy(), counts, first
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=parts) as pool:
        list(pool.map(prepare, range(parts)))  # every block prepared before any scan starts
        found = list(pool.map(scan_part, range(parts)))
    return (np.minimum.reduce([d for d, _, _ in found]), np.sum([c for _, c, _ in found], axis=0),
            np.minimum.reduce([f for _, _, f in found]))


def warm_up() -> None:
    """Load every compiled function of the replay from numba's cache (or compile it), on a
    two-request trace: a caller can do this on a thread while it reads the trace (loading
    is mostly Python, reading mostly not)."""
    ones = np.ones(2, dtype=np.int64)
    ptr = np.arange(3, dtype=np.int64)
    keys = np.arange(2, dtype=np.int64)
    params = np.ones((1, 4), dtype=np.int64)
    asm_scan(np.zeros(2), np.ones(2), ones, ptr, keys, np.zeros(2, dtype=np.int64), params, 2)
    asm_scan(np.zeros(2), np.ones(2), ones, ptr, keys, np.zeros(2, dtype=np.int64), params, 2,
             keys, 2)
    asm_figures(np.zeros(2), np.ones(2), ones, ones, ptr, keys, np.zeros(2, dtype=np.int64),
                params, 2, keys, 2)
    requests_per_component(ptr, keys, keys)
    first_key_counts(ptr, keys, 0, 2, np.zeros(2, dtype=np.int64))
    shares_a_request(ptr)
