"""What a bucket stored in Redis means right now: the arithmetic of ``inspect``, no I/O.

The ASM service's layout: the balance under the raw key, the last refill second under
``<key>_last_fill_time`` (``{<key>}`` and ``{<key>}_last_fill_time`` in tokenlimit's cluster
layout). A bucket only changes at a check (refill or reset) and at a usage report (debit), so
from the stored values, the rule and the time one can tell what the next check will do:

- a check at ``t`` refills ``floor((t - last) / fill_interval_second)`` intervals, capped at
  ``max_tokens``; the next refill is therefore at ``last + fill_interval_second`` (or at the
  next check, when an interval has already passed);
- once either key has expired (alive up to and including its deadline, in milliseconds), the
  next check restarts the bucket at ``tokens_per_fill``, debt forgiven;
- a check admits when the balance after its refill is > 0.

"Admitted again" is the first moment a check would be admitted if nothing checks or reports
the key before then (a check that refills restarts the interval, losing the partial one).

>>> from tokenlimit.rules.model import Rule
>>> rule = Rule(0, "regular-user.*", 200, 50, 30, 300)
>>> s = key_state(StoredBucket("regular-user", -70, 300_000, 0, 300_000), 0, rule, 10_000)
>>> (s.balance, s.admitted, s.next_refill_at, s.refill_adds, s.admitted_again_at)
(-70, False, 30, 50, 60.0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from tokenlimit.bucket.script import refill
from tokenlimit.rules.model import Rule

# The service decodes keys from JSON with Go, which reads each byte that is not UTF-8 as
# U+FFFD: a Redis name that is not UTF-8 was written by something else.
NOT_UTF8 = ("not a bucket: the name is not UTF-8 (the service reads each such byte of a key "
            "as U+FFFD, so it never writes this name)")


def is_service_key(key: str) -> bool:
    """Whether the service could hold ``key`` (read with surrogate escapes for bad bytes)."""
    return not any("\udc80" <= ch <= "\udcff" for ch in key)


def shown_key(key: str) -> str:
    """``key`` printable: each byte that is not UTF-8 as ``\\xNN``.

    >>> shown_key(b"bin\\xffkey".decode("utf-8", "surrogateescape"))
    'bin\\\\xffkey'
    """
    return key.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


@dataclass(frozen=True, slots=True)
class StoredBucket:
    """The two Redis entries of a key as read: values and absolute expiry (Unix ms; ``None``:
    no TTL). ``balance``/``last_fill`` are ``None`` when the entry is missing; ``problem``
    says why an entry could not be read as a bucket (another application's key, say)."""

    key: str
    balance: int | None
    balance_expires_ms: int | None
    last_fill: int | None
    last_fill_expires_ms: int | None
    problem: str | None = None
    # An entry holds another type (a hash, a list): the service's script fails on it.
    wrong_type: bool = False


@dataclass(frozen=True, slots=True)
class KeyState:
    """One key explained at ``now`` (Unix seconds). Times are Unix seconds; ``None`` where
    there is nothing to say (no rule, no bucket, no TTL)."""

    key: str
    rule: int | None
    regex: str | None
    balance: int | None
    last_fill: int | None
    expires_at: float | None
    ttl_seconds: float | None
    next_refill_at: int | None
    refill_adds: int | None
    admitted: bool
    admitted_again_at: float | None
    state: str

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


def _alive(present: bool, expires_ms: int | None, now_ms: int) -> bool:
    return present and (expires_ms is None or now_ms <= expires_ms)


def _deadline(stored: StoredBucket) -> int | None:
    stamps = [s for s in (stored.balance_expires_ms, stored.last_fill_expires_ms) if s is not None]
    return min(stamps) if stamps else None


def key_state(stored: StoredBucket, index: int | None, rule: Rule | None,
              now_ms: int) -> KeyState:
    """Explain ``stored`` under ``rule`` (index ``index``) at ``now_ms`` (Unix milliseconds)."""
    now = now_ms / 1000
    deadline = _deadline(stored)
    blank = KeyState(
        key=stored.key, rule=index, regex=None if rule is None else rule.regex,
        balance=stored.balance, last_fill=stored.last_fill,
        expires_at=None if deadline is None else deadline / 1000,
        ttl_seconds=None if deadline is None else max(deadline - now_ms, 0) / 1000,
        next_refill_at=None, refill_adds=None, admitted=True, admitted_again_at=None, state="")
    if stored.problem is not None:
        if stored.wrong_type and rule is not None:
            # GET on it fails inside the check script: the service answers 400 to every check
            # of this key, and the plug-in lets the request through or not by failStrategy.
            return replace(blank, admitted=False, state=(
                f"{stored.problem}: every check of this key fails (the service answers 400; "
                "the plug-in's failStrategy decides)"))
        return replace(blank, state=stored.problem)
    if rule is None:
        state = "matches no rule: never limited"
        if stored.balance is not None:
            state += " (a usage report wrote it; with no TTL it stays)"
        return replace(blank, state=state)
    has_balance = _alive(stored.balance is not None, stored.balance_expires_ms, now_ms)
    has_last = _alive(stored.last_fill is not None, stored.last_fill_expires_ms, now_ms)
    start = rule.tokens_per_fill
    if not (has_balance and has_last):
        if has_balance:
            state = (f"no refill time: the next check restarts it at {start:,} "
                    f"(balance {stored.balance:,} forgiven)")
        elif stored.balance is not None or stored.last_fill is not None:
            state = f"expired: the next check restarts it at {start:,}"
        else:
            state = f"no bucket: the next check starts it at {start:,}"
        return replace(blank, admitted=start > 0, state=state)
    assert stored.balance is not None and stored.last_fill is not None
    balance, last = stored.balance, stored.last_fill
    now_s = now_ms // 1000
    # What a check now would see: the service's own refill step (bucket.script.refill).
    at_check, _, due = refill(balance, last, now_s, rule)
    interval = rule.fill_interval_second
    next_refill: int | None
    if due:
        next_refill = now_s
    elif interval > 0:
        next_refill = last + interval
    else:  # Lua's division by zero: full again once the second changes
        next_refill = last + 1 if interval == 0 else None
    after = balance if next_refill is None else refill(balance, last, next_refill, rule)[0]
    admitted = at_check > 0
    again = None if admitted else _admitted_again(balance, last, rule, deadline)
    if admitted:
        state = "admitted"
    elif again is None:
        state = "limited for good (the rule never refills it above 0)"
    else:
        state = "limited"
    return replace(blank, next_refill_at=next_refill, refill_adds=after - balance,
                   admitted=admitted, admitted_again_at=now if admitted else again, state=state)


def _admitted_again(balance: int, last: int, rule: Rule, deadline: int | None) -> float | None:
    """When a check would first be admitted: by refills, or by the reset after expiry."""
    candidates = []
    if deadline is not None and rule.tokens_per_fill > 0:
        candidates.append((deadline + 1) / 1000)  # expired once the clock is past the deadline
    if rule.tokens_per_fill > 0 and rule.max_tokens > 0 and rule.fill_interval_second > 0:
        intervals = math.floor(-balance / rule.tokens_per_fill) + 1
        candidates.append(float(last + intervals * rule.fill_interval_second))
    return min(candidates) if candidates else None
