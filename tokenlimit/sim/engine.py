"""The fast ASM replay: numpy preprocessing and one compiled scan, decision for decision
identical to ``replay_oracle``.

Why it can be fast: whether a check refills or resets a bucket depends only on the check
times (whole seconds, interval boundaries, TTL deadlines), never on balances, so parsing,
sorting, key factorization and rule matching (once per distinct key) are array operations.
What remains is inherently sequential, because admissions feed back into balances through
usage reports; it is a single pass over the checks in time order, each report waiting in a
small heap until it falls due, compiled with numba (plain Python would run at the oracle's
speed).

Ordering is the oracle's: a report at ``r`` of the request ranked ``i`` goes before the check
ranked ``j`` at ``t`` iff ``r < t`` or (``r == t`` and ``i < j``). A report due strictly after
its own check can only be due by ``t`` if its request came earlier, so for those the rule is
``r <= t``; a report due at its own check's instant (zero latency) is applied right after that
check. Reports due at one instant commute (the same expiry verdict; DECRBY adds up), so their
order among themselves needs no tie-break.

Falls back to the event-by-event oracle (documented, exact, slower) when the trace or the
rules leave the cases the scan models: a key that is another key plus ``_last_fill_time``
(the two share Redis state), or a rule used by the trace with ``fill_interval_second <= 0``,
``redis_expired_seconds <= 0``, or a negative ``max_tokens`` / ``tokens_per_fill`` (rules that
``require_valid`` refuses anyway).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from tokenlimit.bucket.keyspace import LAST_FILL_SUFFIX
from tokenlimit.bucket.limiter import AsmLimiter, Limiter
from tokenlimit.bucket.multikey import CheckResult
from tokenlimit.bucket.reserve import EstimatePolicy, ReserveLimiter
from tokenlimit.bucket.types import Charge
from tokenlimit.rules.model import Rule
from tokenlimit.rules.regex import RuleMatcher
from tokenlimit.sim.oracle import replay_oracle
from tokenlimit.sim.trace_table import IntArray, Trace, take_key_lists

ALLOW, DENY, ERROR = 0, 1, 2
OUTCOME_NAMES = ("allow", "deny", "error")


@dataclass(frozen=True, slots=True, eq=False)
class Replay:
    """Decisions in trace file order, plus what the statistics need.

    ``outcome``: 0 allow, 1 deny, 2 error. ``rule``: as ``Decision.rule`` (-1 for none).
    ``key``: the deciding key's index in ``trace.key_names`` (the limited key for a deny,
    the first key matching a rule otherwise; -1 for none). ``balance``: that key's balance
    right after the check. ``deepest``: per key, the most negative balance a live bucket
    reached (0 when never in debt). ``engine``: which path decided (``scan`` or ``oracle``).
    """

    outcome: npt.NDArray[np.int8]
    rule: IntArray
    key: IntArray
    balance: IntArray
    deepest: IntArray
    engine: str

    def outcome_name(self, i: int) -> str:
        return OUTCOME_NAMES[int(self.outcome[i])]


def key_rules(rules: Sequence[Rule], names: Sequence[str]) -> IntArray:
    """The rule index of each distinct key (-1: no rule), matched once per key (and once per
    rules and keys: the replay and its statistics both ask, for tens of thousands of keys)."""
    found = _matched(tuple(rules), tuple(names))
    return found.copy()


@functools.lru_cache(maxsize=4)
def _matched(rules: tuple[Rule, ...], names: tuple[str, ...]) -> IntArray:
    return np.array(RuleMatcher(rules).indices_for(names), dtype=np.int64)


def colliding_keys(names: Sequence[str]) -> list[str]:
    """Keys that are another trace key plus ``_last_fill_time`` (they share Redis state)."""
    return list(_colliding(tuple(names)))


@functools.lru_cache(maxsize=4)
def _colliding(names: tuple[str, ...]) -> tuple[str, ...]:
    suffixed = [n for n in names if n.endswith(LAST_FILL_SUFFIX)]  # rare: test them alone
    if not suffixed:
        return ()
    present = set(names)
    return tuple(n for n in suffixed if n[: -len(LAST_FILL_SUFFIX)] in present)


def fallback_reason(rules: Sequence[Rule], trace: Trace, rule_of_key: IntArray) -> str | None:
    """Why the scan cannot decide this trace exactly (``None``: it can)."""
    collisions = colliding_keys(trace.key_names)
    if collisions:
        return f"key {collisions[0]!r} collides with another key's refill-time entry"
    for index in np.unique(rule_of_key[rule_of_key >= 0]).tolist():
        rule = rules[index]
        if (rule.fill_interval_second <= 0 or rule.redis_expired_seconds <= 0
                or rule.max_tokens < 0 or rule.tokens_per_fill < 0):
            return f"rule {index} has a non-positive interval or TTL, or negative tokens"
    return None


def replay_asm(rules: Sequence[Rule], trace: Trace, charge: Charge = "completion",
               rule_of_key: IntArray | None = None, *, owner: Any = None,
               parts: int = 1) -> Replay:
    """Replay ``trace`` through the ASM service's arithmetic (fast scan, or the oracle).
    ``rule_of_key``: ``key_rules(rules, trace.key_names)`` when the caller has it.
    ``owner`` and ``parts``: scan ``parts`` partitions on as many threads, ``owner`` giving
    each key's partition, where no request has keys in two (``partition.key_partitions``)."""
    from tokenlimit.sim.scan import asm_scan  # numba loads only when a replay runs

    if rule_of_key is None:
        rule_of_key = key_rules(rules, trace.key_names)
    if fallback_reason(rules, trace, rule_of_key) is not None:
        return replay_asm_oracle(rules, trace, charge, rule_of_key)
    order, t, latency, charged, ptr, keys = replay_order(trace, charge)
    out_outcome, out_rule, out_key, out_balance, deepest = asm_scan(
        t, latency, charged, ptr, keys, rule_of_key, rule_params(rules),
        len(trace.key_names), owner, parts)
    return in_file_order(order, out_outcome, out_rule, out_key, out_balance, deepest)


def asm_figures_of(rules: Sequence[Rule], trace: Trace, charge: Charge = "completion",
                   rule_of_key: IntArray | None = None, *, owner: Any = None,
                   parts: int = 1) -> tuple[Any, Any, IntArray] | None:
    """``replay_asm``'s report figures without its decisions (``scan.asm_figures``): per
    deciding key and a last row for no rule, (counts, first limited time), as
    ``replay_stats.key_figures`` gives them, and each key's deepest debt; ``None`` where the
    oracle must replay (``fallback_reason``)."""
    from tokenlimit.sim.scan import asm_figures  # numba loads only when a replay runs

    if rule_of_key is None:
        rule_of_key = key_rules(rules, trace.key_names)
    if fallback_reason(rules, trace, rule_of_key) is not None:
        return None
    order, t, latency, charged, ptr, keys = replay_order(trace, charge)
    total = trace.total_tokens if order is None else trace.total_tokens[order]
    return asm_figures(t, latency, charged, total, ptr, keys, rule_of_key, rule_params(rules),
                       len(trace.key_names), owner, parts)


def rule_params(rules: Sequence[Rule]) -> IntArray:
    """Per rule: max_tokens, tokens_per_fill, fill_interval_second, redis_expired_seconds."""
    return np.array([[r.max_tokens, r.tokens_per_fill, r.fill_interval_second,
                      r.redis_expired_seconds] for r in rules] or [[0, 0, 1, 1]],
                    dtype=np.int64)


def replay_order(trace: Trace, charge: Charge) -> tuple[IntArray | None, Any, Any, Any,
                                                         IntArray, IntArray]:
    """(the time order or ``None``, then ts, latency, charged tokens and the keys (CSR)
    in that order)."""
    order = trace.time_order()
    t = trace.ts if order is None else trace.ts[order]
    latency = trace.latency if order is None else trace.latency[order]
    charged = trace.charged(charge)
    ptr, keys = trace.key_ptr, trace.key_index
    if order is not None:
        charged = charged[order]
        ptr, keys = take_key_lists(trace.key_ptr, trace.key_index, order)
    return order, t, latency, charged, ptr, keys


def in_file_order(order: IntArray | None, out_outcome: Any, out_rule: Any, out_key: Any,
                  out_balance: Any, deepest: Any) -> Replay:
    """The scan's results (in replay order) as a ``Replay`` in file order."""
    if order is None:
        return Replay(out_outcome, out_rule, out_key, out_balance, deepest, "scan")
    n = order.shape[0]
    outcome = np.empty(n, dtype=np.int8)
    rule = np.empty(n, dtype=np.int64)
    key = np.empty(n, dtype=np.int64)
    balance = np.empty(n, dtype=np.int64)
    outcome[order], rule[order], key[order], balance[order] = (
        out_outcome, out_rule, out_key, out_balance)
    return Replay(outcome, rule, key, balance, deepest, "scan")


class _RecordingLimiter:
    """A limiter for the oracle that notes each check's result and each live bucket's debt."""

    def __init__(self, decider: Limiter, names: Sequence[str]) -> None:
        self.decider = decider
        self.keyspace = decider.keyspace
        self.results: list[CheckResult] = []
        self.index = {name: i for i, name in enumerate(names)}
        self.deepest = np.zeros(len(names), dtype=np.int64)

    def check(self, keys: Sequence[str], now: float) -> CheckResult:
        result = self.decider.check(keys, now)
        self.results.append(result)
        return result

    def report(self, keys: Sequence[str], completion_tokens: int, now: float) -> None:
        self.decider.report(keys, completion_tokens, now)
        for key in keys:
            if key in self.keyspace.expires_at and key in self.index:
                value = self.keyspace.values[key]
                i = self.index[key]
                self.deepest[i] = min(int(self.deepest[i]), value)


def replay_asm_oracle(rules: Sequence[Rule], trace: Trace, charge: Charge = "completion",
                      rule_of_key: IntArray | None = None, *,
                      estimate: EstimatePolicy | None = None) -> Replay:
    """The same ``Replay`` from the event-by-event oracle (the exact fallback).

    With ``estimate``, the decisions of ``serve --mode reserve`` (``ReserveLimiter``).
    """
    if rule_of_key is None:
        rule_of_key = key_rules(rules, trace.key_names)
    model = AsmLimiter(rules)
    decider: Limiter = model if estimate is None else ReserveLimiter(model, estimate)
    limiter = _RecordingLimiter(decider, trace.key_names)
    decisions = replay_oracle(rules, trace.requests(), charge=charge, limiter=limiter)
    n = len(trace)
    outcome = np.array([OUTCOME_NAMES.index(d.outcome) for d in decisions], dtype=np.int8)
    rule = np.array([-1 if d.rule is None else d.rule for d in decisions], dtype=np.int64)
    key = np.full(n, -1, dtype=np.int64)
    balance = np.zeros(n, dtype=np.int64)
    order = trace.time_order()
    ranked = range(n) if order is None else order.tolist()
    for i, result in zip(ranked, limiter.results, strict=True):
        if result.limited_key is not None:
            key[i] = limiter.index[result.limited_key]
        else:
            for k in trace.key_index[trace.key_ptr[i]:trace.key_ptr[i + 1]]:
                if rule_of_key[k] >= 0:
                    key[i] = k
                    break
        balance[i] = result.remaining or 0
    return Replay(outcome, rule, key, balance, limiter.deepest, "oracle")
