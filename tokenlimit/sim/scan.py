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

from tokenlimit.sim.jit import njit


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


def _scan_into(t: Any, report_at: Any, delayed: Any, charged: Any, ptr: Any, keys: Any,
               rule_of_key: Any, params: Any, state: Any, expires: Any, carry_at: Any,
               carry_ptr: Any, carry_keys: Any, carry_charged: Any, drain: bool,
               rows: Any, partitioned: bool, outcome: Any, out_rule: Any, out_key: Any,
               out_balance: Any) -> Any:
    """Decide the checks ``t`` (one chunk of the replay, or all of it) from the per-key
    ``state`` (balance, last refill second, deepest) and ``expires`` left by the checks
    before, updated in place; decisions go to ``outcome`` ... ``out_balance`` (written for
    every check decided here, so they may come uninitialized). ``carry_*``: reports still
    pending from earlier chunks (due time order), merged with this chunk's own reports by
    due time. ``drain``: apply every report left at the end (the last chunk); otherwise the
    caller carries what is left (the returned cursors say how far each queue got).

    ``partitioned``: decide only the checks ``rows`` (ranks, ascending: one partition's,
    from ``_part_rows``), and ``delayed`` holds only their reports. Partitions own disjoint
    keys, so they can run at the same time over the same arrays (``nogil``), each with its
    own ``state`` and ``expires``."""
    n = t.shape[0]
    m = rows.shape[0] if partitioned else n
    cursor = 0
    carried = 0
    for r in range(m + 1):
        j = (rows[r] if partitioned else r) if r < m else n
        now = t[j] if r < m else np.inf
        if r == m and not drain:
            break
        # Reports due by now, in due-time order from both queues. Each is from an earlier,
        # decided request (its time is strictly after its own check); only admitted
        # requests with a rule report.
        while True:
            mine = report_at[delayed[cursor]] if cursor < delayed.shape[0] else np.inf
            theirs = carry_at[carried] if carried < carry_at.shape[0] else np.inf
            if mine <= theirs:
                if mine > now or mine == np.inf:
                    break
                i = delayed[cursor]
                cursor += 1
                if outcome[i] == 0 and out_key[i] >= 0:
                    _report(i, report_at[i], ptr, keys, rule_of_key, charged, state, expires)
            else:
                if theirs > now:
                    break
                _report(carried, theirs, carry_ptr, carry_keys, rule_of_key, carry_charged,
                        state, expires)
                carried += 1
        if r == m:
            break
        outcome[j], out_rule[j], out_key[j], out_balance[j] = 0, -1, -1, 0
        now_s = np.int64(np.floor(now))
        matched = False
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
                b = state[k, 0]
                intervals = (now_s - state[k, 1]) // params[r, 2]
                if intervals > 0:
                    top, per_fill = params[r, 0], params[r, 1]
                    if b >= top:
                        b = top
                    elif per_fill > 0:
                        if intervals >= (top - b + per_fill - 1) // per_fill:
                            b = top
                        else:
                            b = b + per_fill * intervals
                    state[k, 0] = b
                    state[k, 1] = now_s
                    expires[k] = now + params[r, 3]
            if b <= 0:
                outcome[j] = 1
                out_rule[j] = r
                out_key[j] = k
                out_balance[j] = b
                break
            if not matched:
                matched = True
                out_rule[j] = r
                out_key[j] = k
                out_balance[j] = b
        if outcome[j] == 0 and matched and report_at[j] == now:
            # Zero latency: due at this very instant, before the next check (which is at
            # now or later); reports due at one instant commute.
            _report(j, now, ptr, keys, rule_of_key, charged, state, expires)
    return cursor, carried


def _scan(t: Any, report_at: Any, delayed: Any, charged: Any, ptr: Any, keys: Any,
          rule_of_key: Any, params: Any, state: Any, expires: Any, carry_at: Any,
          carry_ptr: Any, carry_keys: Any, carry_charged: Any, drain: bool) -> Any:
    """``_scan_into`` deciding every check, into new arrays."""
    n = t.shape[0]
    outcome = np.empty(n, dtype=np.int8)
    out_rule = np.empty(n, dtype=np.int64)
    out_key = np.empty(n, dtype=np.int64)
    out_balance = np.empty(n, dtype=np.int64)
    cursor, carried = _scan_into(t, report_at, delayed, charged, ptr, keys, rule_of_key,
                                 params, state, expires, carry_at, carry_ptr, carry_keys,
                                 carry_charged, drain, np.zeros(0, dtype=np.int64), False,
                                 outcome, out_rule, out_key, out_balance)
    return outcome, out_rule, out_key, out_balance, cursor, carried


def _part_rows(t: Any, report_at: Any, ptr: Any, keys: Any, owner: Any,
               part: int) -> tuple[Any, Any]:
    """(the ranks of partition ``part``'s checks, those of them whose report is due strictly
    after their check), in one pass. A check's keys are all in one partition (``owner``:
    each key's); a check without keys decides nothing and goes to partition 0. Only the
    entries written are touched, so the trace-long buffers cost what they hold."""
    n = t.shape[0]
    rows = np.empty(n, dtype=np.int64)
    delayed = np.empty(n, dtype=np.int64)
    m = 0
    d = 0
    for j in range(n):
        if ptr[j] == ptr[j + 1]:
            if part != 0:
                continue
        elif owner[keys[ptr[j]]] != part:
            continue
        rows[m] = j
        m += 1
        if report_at[j] > t[j]:
            delayed[d] = j
            d += 1
    return rows[:m], delayed[:d]


def _shares_a_request(ptr: Any) -> bool:
    """Whether any check has more than one key."""
    for j in range(ptr.shape[0] - 1):  # noqa: SIM110 - compiled: a loop, not a generator
        if ptr[j + 1] - ptr[j] > 1:
            return True
    return False


def _requests_per_component(ptr: Any, keys: Any, component: Any) -> Any:
    """How many checks have their keys in each component (indexed like ``component``)."""
    counts = np.zeros(component.shape[0], dtype=np.int64)
    for j in range(ptr.shape[0] - 1):
        if ptr[j] < ptr[j + 1]:
            counts[component[keys[ptr[j]]]] += 1
    return counts


# nogil: the partitions of one replay scan on threads at the same time.
_report = njit(_report, error_model="numpy", nogil=True)
_scan_into = njit(_scan_into, error_model="numpy", nogil=True)
_compiled_scan = njit(_scan, error_model="numpy", nogil=True)
compiled_scan = _compiled_scan  # the chunked replay (stream.py) calls it with carried state
_part_rows = njit(_part_rows, error_model="numpy", nogil=True)
requests_per_component = njit(_requests_per_component, error_model="numpy", nogil=True)
shares_a_request = njit(_shares_a_request, error_model="numpy", nogil=True)


def asm_scan(t: Any, latency: Any, charged: Any, ptr: Any, keys: Any,
             rule_of_key: Any, params: Any, n_keys: int, owner: Any = None,
             parts: int = 1) -> tuple[Any, Any, Any, Any, Any]:
    """Run the compiled scan; arrays in replay order (see the module docstring).

    ``owner`` (with ``parts`` > 1): each key's partition, ``0 .. parts - 1``, such that no
    request has keys in two partitions. The partitions are scanned on a thread each over the
    same arrays, each with bucket state of its own (threads writing the buckets of keys next
    to each other in one array would fight over cache lines); their decisions are exactly
    one scan's."""
    t = np.ascontiguousarray(t, dtype=np.float64)
    n = t.shape[0]
    report_at = t + np.maximum(latency, 0.0)
    ptr = np.ascontiguousarray(ptr, dtype=np.int64)
    keys = np.ascontiguousarray(keys, dtype=np.int64)
    arrays = (np.ascontiguousarray(charged, dtype=np.int64), ptr, keys,
              np.ascontiguousarray(rule_of_key, dtype=np.int64),
              np.ascontiguousarray(params, dtype=np.int64))
    # Written by the scans (every check by exactly one partition), in parallel.
    decided = (np.empty(n, dtype=np.int8), np.empty(n, dtype=np.int64),
               np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64))
    nothing = np.zeros(0, dtype=np.int64)
    partitioned = owner is not None and parts > 1
    owned = np.ascontiguousarray(owner, dtype=np.int64) if partitioned else nothing

    def scan_part(part: int) -> Any:
        state = np.zeros((n_keys, 3), dtype=np.int64)  # balance, last refill second, deepest
        expires = np.full(n_keys, -np.inf)
        if partitioned:
            rows, delayed = _part_rows(t, report_at, ptr, keys, owned, part)
        else:
            rows, delayed = nothing, np.flatnonzero(report_at > t)
        _scan_into(t, report_at, _by_due_time(report_at, delayed), *arrays, state, expires,
                   np.zeros(0), np.zeros(1, dtype=np.int64), nothing, nothing, True, rows,
                   partitioned, *decided)
        return state[:, 2]

    if not partitioned:
        return (*decided, scan_part(0).copy())
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=parts) as pool:
        deepest = np.minimum.reduce(list(pool.map(scan_part, range(parts))))
    return (*decided, deepest)


def _by_due_time(report_at: Any, delayed: Any) -> Any:
    """``delayed`` ordered by due time. Ties need no order: reports due at one instant
    commute (the same expiry verdict, and DECRBY adds up), so numpy's fast unstable sort
    will do."""
    return delayed[np.argsort(report_at[delayed])].astype(np.int64)


def pending_reports(t: Any, latency: Any) -> tuple[Any, Any]:
    """(due times, the ranks of reports strictly after their check, by due time)."""
    t = np.ascontiguousarray(t, dtype=np.float64)
    report_at = t + np.maximum(latency, 0.0)
    return report_at, _by_due_time(report_at, np.flatnonzero(report_at > t))


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
    requests_per_component(ptr, keys, keys)
    shares_a_request(ptr)
