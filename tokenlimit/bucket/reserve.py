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

from tokenlimit.bucket.keyspace import AsmKeyspace
from tokenlimit.bucket.limiter import AsmLimiter
from tokenlimit.bucket.multikey import CheckResult, ScriptCall, run_check
from tokenlimit.bucket.script import KeyCheck, check_script
from tokenlimit.errors import ConfigError

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


def parse_estimate_policy(values: Sequence[str]) -> EstimatePolicy:
    """``--estimate`` values (``serve`` and ``simulate --semantics asm-reserve``): ``N``
    (fixed), ``avg:N`` (the key's running average, from N), ``RULE_INDEX=N``.

    >>> parse_estimate_policy(["avg:50", "1=300"])
    EstimatePolicy(default=50, average=True, per_rule={1: 300})
    """
    default, average, per_rule = 100, True, {}
    for value in values:
        text = value.strip()
        try:
            if text.startswith("avg:"):
                default, average = int(text[4:]), True
            elif "=" in text:
                rule, _, tokens = text.partition("=")
                per_rule[int(rule)] = int(tokens)
            else:
                default, average = int(text), False
        except ValueError:
            raise ConfigError(f"--estimate {value!r}: expected N, avg:N or RULE_INDEX=N"
                              ) from None
    return EstimatePolicy(default, average, per_rule)


def next_average(average: int | None, tokens: int) -> int:
    """The running average after a report of ``tokens`` (integer, rounded up).

    >>> next_average(None, 40), next_average(100, 20)
    (40, 90)
    """
    if average is None:
        return max(tokens, 0)
    return max(-(-(average * (AVG_WEIGHT - 1) + tokens) // AVG_WEIGHT), 0)


class ReserveLimiter:
    """``serve --mode reserve`` (and ``simulate --semantics asm-reserve``): the ASM check with
    a reservation per admitted key, settled by the report.

    It decides over the keyspace and rules of ``limiter``, with the same interface (``check``,
    ``report``), so every replay of ``AsmLimiter`` can replay it too. The Lua scripts
    ``reserve.lua``, ``release.lua`` and ``settle.lua`` must equal it (held to it by the reserve
    tests in tests/service/test_redis_store.py and test_cluster_store.py).

    >>> from tokenlimit.rules.model import Rule
    >>> limiter = ReserveLimiter(AsmLimiter([Rule(0, "u", 100, 100, 60, 600)]),
    ...                          EstimatePolicy(default=60, average=False))
    >>> [limiter.check(["u"], now=0.0).outcome for _ in range(3)]
    ['allow', 'allow', 'deny']
    >>> limiter.report(["u"], 10, now=1.0)
    >>> limiter.keyspace.get("u", 1.0)  # 100 - 60 - 60 + (60 - 10) settled
    30
    """

    def __init__(self, limiter: AsmLimiter, policy: EstimatePolicy | None = None) -> None:
        self.limiter = limiter
        self.policy = policy or EstimatePolicy()

    @property
    def keyspace(self) -> AsmKeyspace:
        return self.limiter.keyspace

    def estimate(self, key: str, rule: int, now: float) -> int:
        """Tokens a check of ``key`` (taking rule number ``rule``) reserves."""
        fixed = self.policy.fixed(rule)
        if fixed is not None:
            return fixed
        average = self.keyspace.get(key + AVG_SUFFIX, now)
        return self.policy.default if average is None else average

    def check(self, keys: Sequence[str], now: float) -> CheckResult:
        """The ASM check; each admitting key also reserves its estimate. A deny or an error
        releases the reservations this call made on earlier keys."""
        space = self.keyspace
        made: list[tuple[str, int]] = []

        def script(call: ScriptCall) -> KeyCheck:
            checked = check_script(space, call.key, call.rule, now)
            if checked.balance <= 0:
                return checked
            amount = self.estimate(call.key, call.index, now)
            remaining = space.decrby(call.key, amount, now)
            ttl = call.rule.redis_expired_seconds
            pending = space.get(call.key + RESERVED_SUFFIX, now) or 0
            count = space.get(call.key + RESERVED_N_SUFFIX, now) or 0
            space.set_with_ttl(call.key + RESERVED_SUFFIX, pending + amount, ttl, now)
            space.set_with_ttl(call.key + RESERVED_N_SUFFIX, count + 1, ttl, now)
            made.append((call.key, amount))
            return KeyCheck(checked.balance, checked.last, checked.now, remaining)

        result = run_check(self.limiter.matcher, keys, script)
        if result.outcome != "allow":
            for key, amount in made:
                self._release(key, amount, now)
        return result

    def _release(self, key: str, amount: int, now: float) -> None:
        space = self.keyspace
        space.decrby(key, -amount, now)
        for suffix, less in ((RESERVED_SUFFIX, amount), (RESERVED_N_SUFFIX, 1)):
            value = space.get(key + suffix, now)
            if value is not None:
                space.decrby(key + suffix, less, now)

    def report(self, keys: Sequence[str], completion_tokens: int, now: float) -> None:
        """Settle: each key gets back its average outstanding reservation and pays the tokens
        (in full when it has none outstanding); the key's running average moves."""
        space = self.keyspace
        matcher = self.limiter.matcher
        for key in keys:
            pending = space.get(key + RESERVED_SUFFIX, now) or 0
            count = space.get(key + RESERVED_N_SUFFIX, now) or 0
            credit = 0
            if count > 0:
                credit = pending // count
                space.decrby(key + RESERVED_SUFFIX, credit, now)
                space.decrby(key + RESERVED_N_SUFFIX, 1, now)
            space.decrby(key, completion_tokens - credit, now)
            index = matcher.index_for(key)
            if index is not None:
                average = space.get(key + AVG_SUFFIX, now)
                ttl = matcher.rules[index].redis_expired_seconds
                space.set_with_ttl(key + AVG_SUFFIX, next_average(average, completion_tokens),
                                  ttl, now)
