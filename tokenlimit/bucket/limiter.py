"""The ASM service's bucket arithmetic, event by event, over a model of its Redis keyspace.

This is the reference every faster engine and every store is tested against. It models Redis
keys, not buckets, so that the service's quirks come out exactly: the balance lives under the
raw key and the refill time under ``<key>_last_fill_time`` (two clients' keys can collide),
each key expires on its own, a usage report on an expired key recreates it with no TTL, and a
report for a key that matches no rule still writes one.

Time is always passed in (``now``, Unix seconds as a float); the check script reads whole
seconds, as Redis ``TIME`` gives them to the Lua script. A key written at ``t`` with TTL ``s``
is alive up to and including ``t + s``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from tokenlimit.bucket.types import Outcome
from tokenlimit.rules.model import Rule
from tokenlimit.rules.regex import RuleMatcher

LAST_FILL_SUFFIX = "_last_fill_time"


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The answer to one ``/ratelimit`` call.

    ``rule``: for a deny, the rule of the limited key; otherwise the rule of the first key that
    matched one (``None`` when no key is limited by any rule). ``remaining``: the balance of
    that key after the check. ``retry_after``: for a deny, whole seconds until the next refill.
    """

    outcome: Outcome
    limited_key: str | None = None
    rule: int | None = None
    remaining: int | None = None
    retry_after: int | None = None

    @property
    def description(self) -> str:
        """The service's ``description`` text."""
        if self.outcome == "deny":
            return f"{self.limited_key} is being rate-limited"
        return "ok"


class ScriptError(Exception):
    """The check script failed for a key (the service answers 400 for the whole call)."""


class AsmKeyspace:
    """Redis string keys with expiry, as far as the ASM scripts use them."""

    def __init__(self) -> None:
        self.values: dict[str, int] = {}
        self.expires_at: dict[str, float] = {}

    def get(self, key: str, now: float) -> int | None:
        expiry = self.expires_at.get(key)
        if expiry is not None and now > expiry:
            self.values.pop(key, None)
            del self.expires_at[key]
        return self.values.get(key)

    def set_with_ttl(self, key: str, value: int, ttl: int, now: float) -> None:
        if ttl <= 0:  # EXPIRE with a non-positive time deletes the key
            self.values.pop(key, None)
            self.expires_at.pop(key, None)
            return
        self.values[key] = value
        self.expires_at[key] = now + ttl

    def decrby(self, key: str, amount: int, now: float) -> int:
        value = (self.get(key, now) or 0) - amount
        self.values[key] = value  # DECRBY keeps an existing TTL; a new key has none
        return value

    def ttl_deadline(self, key: str) -> float | None:
        return self.expires_at.get(key)


def refill(balance: int, last: int, now_s: int, rule: Rule) -> tuple[int, int, bool]:
    """(balance, last refill time, rewritten?) after the check script's refill step.

    ``fill_interval_second == 0`` is Lua's division by zero: ``(now - last) / 0`` is +inf
    once the second has changed (the bucket jumps to ``max_tokens``) and NaN within the same
    second (no refill). With ``tokens_per_fill <= 0`` as well, Lua's arithmetic gives NaN or
    -inf; that case is modelled as no refill.
    """
    if rule.fill_interval_second == 0:
        if now_s <= last or rule.tokens_per_fill <= 0:
            return balance, last, False
        return rule.max_tokens, now_s, True
    intervals = math.floor((now_s - last) / rule.fill_interval_second)
    if intervals <= 0:
        return balance, last, False
    return min(balance + rule.tokens_per_fill * intervals, rule.max_tokens), now_s, True


class AsmLimiter:
    """The service's decisions: ``check`` for ``/ratelimit``, ``report`` for usage updates.

    >>> from tokenlimit.rules.model import Rule
    >>> limiter = AsmLimiter([Rule(0, "regular-user.*", 200, 50, 30, 300)])
    >>> limiter.check(["regular-user"], now=0.0).outcome
    'allow'
    >>> limiter.report(["regular-user"], 60, now=1.0)
    >>> limiter.check(["regular-user"], now=2.0).description
    'regular-user is being rate-limited'
    """

    def __init__(self, rules: Sequence[Rule], keyspace: AsmKeyspace | None = None) -> None:
        self.matcher = RuleMatcher(rules)
        self.keyspace = keyspace or AsmKeyspace()

    def check(self, keys: Sequence[str], now: float) -> CheckResult:
        """Check ``keys`` in order; the first limited key ends the check."""
        first_rule: int | None = None
        remaining: int | None = None
        failed = False
        for key in keys:
            index = self.matcher.index_for(key)
            if index is None:
                continue
            try:
                balance, last = self.check_key(key, self.matcher.rules[index], now)
            except ScriptError:
                failed = True  # the service logs it and goes on with the next key
                continue
            if balance <= 0:
                if failed:
                    return CheckResult("error")
                interval = self.matcher.rules[index].fill_interval_second
                wait = interval - (math.floor(now) - last)
                return CheckResult("deny", key, index, balance, max(wait, 1))
            if first_rule is None:
                first_rule, remaining = index, balance
        if failed:
            return CheckResult("error")
        return CheckResult("allow", None, first_rule, remaining)

    def check_key(self, key: str, rule: Rule, now: float) -> tuple[int, int]:
        """Run the check script for one key; (balance, last refill second) afterwards."""
        now_s = math.floor(now)
        space = self.keyspace
        last_key = key + LAST_FILL_SUFFIX
        balance = space.get(key, now)
        last = space.get(last_key, now)
        if balance is None or last is None:
            balance, last = rule.tokens_per_fill, now_s
            space.set_with_ttl(key, balance, rule.redis_expired_seconds, now)
            space.set_with_ttl(last_key, last, rule.redis_expired_seconds, now)
        else:
            balance, last, rewritten = refill(balance, last, now_s, rule)
            if rewritten:
                space.set_with_ttl(key, balance, rule.redis_expired_seconds, now)
                space.set_with_ttl(last_key, last, rule.redis_expired_seconds, now)
        stored = space.get(key, now)
        if stored is None:
            raise ScriptError(f"{key}: the balance key vanished (redis_expired_seconds <= 0)")
        return stored, last

    def report(self, keys: Sequence[str], completion_tokens: int, now: float) -> None:
        """A usage report: every key's balance decreases by ``completion_tokens``."""
        for key in keys:
            self.keyspace.decrby(key, completion_tokens, now)

    def balance(self, key: str, now: float) -> int | None:
        """The stored balance of ``key`` (``None`` when missing or expired), without a check."""
        return self.keyspace.get(key, now)
