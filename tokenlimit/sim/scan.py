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


def _scan(t: Any, report_at: Any, delayed: Any, charged: Any, ptr: Any, keys: Any,
          rule_of_key: Any, params: Any, state: Any, expires: Any, carry_at: Any,
          carry_ptr: Any, carry_keys: Any, carry_charged: Any, drain: bool) -> Any:
    """Decide the checks ``t`` (one chunk of the replay, or all of it) from the per-key
    ``state`` (balance, last refill second, deepest) and ``expires`` left by the checks
    before, updated in place. ``carry_*``: reports still pending from earlier chunks (due
    time order), merged with this chunk's own reports by due time. ``drain``: apply every
    report left at the end (the last chunk); otherwise the caller carries what is left
    (the returned cursors say how far each queue got)."""
    n = t.shape[0]
    outcome = np.zeros(n, dtype=np.int8)
    out_rule = np.full(n, -1, dtype=np.int64)
    out_key = np.full(n, -1, dtype=np.int64)
    out_balance = np.zeros(n, dtype=np.int64)
    cursor = 0
    carried = 0
    for j in range(n + 1):
        now = t[j] if j < n else np.inf
        if j == n and not drain:
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
        if j == n:
            break
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
    return outcome, out_rule, out_key, out_balance, cursor, carried


_report = njit(_report, error_model="numpy", nogil=True)
# nogil: partitions of one replay (sim/partition.py) scan on threads at the same time.
_compiled_scan = njit(_scan, error_model="numpy", nogil=True)
compiled_scan = _compiled_scan  # the chunked replay (stream.py) calls it with carried state


def asm_scan(t: Any, latency: Any, charged: Any, ptr: Any, keys: Any,
             rule_of_key: Any, params: Any, n_keys: int) -> tuple[Any, Any, Any, Any, Any]:
    """Run the compiled scan; arrays in replay order (see the module docstring)."""
    t = np.ascontiguousarray(t, dtype=np.float64)
    # Reports strictly after their check, ordered by due time. Ties need no order: reports
    # due at one instant commute (the same expiry verdict, and DECRBY adds up), so numpy's
    # fast unstable sort will do.
    report_at, delayed = pending_reports(t, latency)
    state = np.zeros((n_keys, 3), dtype=np.int64)  # balance, last refill second, deepest
    expires = np.full(n_keys, -np.inf)
    nothing = np.zeros(0, dtype=np.int64)
    outcome, out_rule, out_key, out_balance, _, _ = _compiled_scan(
        t, report_at, delayed,
        np.ascontiguousarray(charged, dtype=np.int64),
        np.ascontiguousarray(ptr, dtype=np.int64),
        np.ascontiguousarray(keys, dtype=np.int64),
        np.ascontiguousarray(rule_of_key, dtype=np.int64),
        np.ascontiguousarray(params, dtype=np.int64),
        state, expires, np.zeros(0), np.zeros(1, dtype=np.int64), nothing, nothing, True)
    return outcome, out_rule, out_key, out_balance, state[:, 2].copy()


def pending_reports(t: Any, latency: Any) -> tuple[Any, Any]:
    """(due times, the ranks of reports strictly after their check, by due time)."""
    t = np.ascontiguousarray(t, dtype=np.float64)
    report_at = t + np.maximum(latency, 0.0)
    delayed = np.flatnonzero(report_at > t)
    return report_at, delayed[np.argsort(report_at[delayed])].astype(np.int64)
