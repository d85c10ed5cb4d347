"""Reserve mode (beyond the example): a check reserves an estimate, the report settles it.

The example admits on ``balance > 0`` and charges only when the usage report arrives, so any
number of concurrent requests can pass on a balance of 1. In reserve mode an admitted check
also takes an estimate off every checked key's balance at once (atomically with the check), and
the report later charges only the difference between the real tokens and that estimate. The
bucket can then be overspent by at most one request's excess over its estimate per key.

Per key, next to the example's two keys, three integers (same TTL as the bucket):
``<key>_reserved`` (tokens reserved by admitted checks not yet reported), ``<key>_reserved_n``
(how many) and ``<key>_avg_tokens`` (running average of reported tokens, for ``avg`` mode).
A report settles the average outstanding reservation (``reserved // reserved_n``); a report
with none outstanding is charged in full, as in the example. A deny releases the
reservations the same call made on earlier keys.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from tokenlimit.bucket.limiter import AsmKeyspace, AsmLimiter, CheckResult, ScriptError

RESERVED_SUFFIX = "_reserved"
RESERVED_N_SUFFIX = "_reserved_n"
AVG_SUFFIX = "_avg_tokens"
AVG_WEIGHT = 8  # the running average moves 1/8 of the way to each new report


@dataclass(frozen=True, slots=True)
class EstimatePolicy:
    """How many tokens a check reserves: a fixed number per rule, or the key's average.

    ``per_rule`` maps a rule index to a fixed estimate; other rules use ``default`` when
    ``average`` is false, else the key's running average (``default`` until it has one).
    """

    default: int = 100
    average: bool = True
    per_rule: Mapping[int, int] = field(default_factory=dict)

    def fixed(self, rule: int) -> int | None:
        if rule in self.per_rule:
            return self.per_rule[rule]
        return None if self.average else self.default


def next_average(average: int | None, tokens: int) -> int:
    """The running average after a report of ``tokens`` (integer, rounded up).

    >>> next_average(None, 40), next_average(100, 20)
    (40, 90)
    """
    if average is None:
        return max(tokens, 0)
    return max(-(-(average * (AVG_WEIGHT - 1) + tokens) // AVG_WEIGHT), 0)


class ReserveBook:
    """Reserve-mode check and settle over an ``AsmKeyspace`` (the model the Lua mirrors)."""

    def __init__(self, keyspace: AsmKeyspace) -> None:
        self.keyspace = keyspace

    def estimate(self, key: str, rule: int, policy: EstimatePolicy, now: float) -> int:
        fixed = policy.fixed(rule)
        if fixed is not None:
            return fixed
        average = self.keyspace.get(key + AVG_SUFFIX, now)
        return policy.default if average is None else average

    def check(self, limiter: AsmLimiter, keys: Sequence[str], policy: EstimatePolicy,
              now: float) -> CheckResult:
        space = self.keyspace
        made: list[tuple[str, int]] = []
        first_rule: int | None = None
        remaining: int | None = None
        failed = False
        for key in keys:
            index = limiter.matcher.index_for(key)
            if index is None:
                continue
            rule = limiter.matcher.rules[index]
            try:
                balance, last = limiter.check_key(key, rule, now)
            except ScriptError:
                failed = True
                continue
            if balance <= 0:
                for done_key, amount in made:
                    self._release(done_key, amount, now)
                if failed:
                    return CheckResult("error")
                wait = rule.fill_interval_second - (int(now // 1) - last)
                return CheckResult("deny", key, index, balance, max(wait, 1))
            amount = self.estimate(key, index, policy, now)
            balance = space.decrby(key, amount, now)
            ttl = rule.redis_expired_seconds
            pending = space.get(key + RESERVED_SUFFIX, now) or 0
            count = space.get(key + RESERVED_N_SUFFIX, now) or 0
            space.set_with_ttl(key + RESERVED_SUFFIX, pending + amount, ttl, now)
            space.set_with_ttl(key + RESERVED_N_SUFFIX, count + 1, ttl, now)
            made.append((key, amount))
            if first_rule is None:
                first_rule, remaining = index, balance
        if failed:
            for done_key, amount in made:
                self._release(done_key, amount, now)
            return CheckResult("error")
        return CheckResult("allow", None, first_rule, remaining)

    def _release(self, key: str, amount: int, now: float) -> None:
        space = self.keyspace
        space.decrby(key, -amount, now)
        for suffix, less in ((RESERVED_SUFFIX, amount), (RESERVED_N_SUFFIX, 1)):
            value = space.get(key + suffix, now)
            if value is not None:
                space.decrby(key + suffix, less, now)

    def settle(self, limiter: AsmLimiter, keys: Sequence[str], tokens: int, now: float) -> None:
        space = self.keyspace
        for key in keys:
            pending = space.get(key + RESERVED_SUFFIX, now) or 0
            count = space.get(key + RESERVED_N_SUFFIX, now) or 0
            credit = 0
            if count > 0:
                credit = pending // count
                space.decrby(key + RESERVED_SUFFIX, credit, now)
                space.decrby(key + RESERVED_N_SUFFIX, 1, now)
            space.decrby(key, tokens - credit, now)
            index = limiter.matcher.index_for(key)
            if index is not None:
                average = space.get(key + AVG_SUFFIX, now)
                ttl = limiter.matcher.rules[index].redis_expired_seconds
                space.set_with_ttl(key + AVG_SUFFIX, next_average(average, tokens), ttl, now)
