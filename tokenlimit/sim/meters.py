"""Alternative limiter algorithms for what-if replays: one small class per algorithm.

Each takes its parameters from an ASM rule (``M`` = max_tokens, ``F`` = tokens_per_fill,
``I`` = fill_interval_second; the sustained rate is ``F / I`` tokens/s):

=====================  =========================================================================
token-bucket           capacity M, continuous refill at F/I, starts full; admit while the
                       balance is > 0; the usage is charged when the response ends.
token-bucket-prepaid   the same bucket, but a check prepays an estimate (the key's mean charge
                       so far, F before the first report; at most M) and is admitted only if the
                       balance covers it; the report settles the difference (never above M).
                       Not ``serve --mode reserve``: that is ``asm-reserve`` (the ASM bucket,
                       admitted on a balance above 0, then reserving; ``tokenlimit.bucket``).
gcra                   generic cell rate algorithm: emission interval 1/rate per token, burst
                       tolerance M tokens; admit while the theoretical arrival time is less than
                       the tolerance ahead of now; the report pushes it by tokens/rate.
sliding-window         a window of W = M * I / F seconds (the time the sustained rate takes to
                       fill M) holding at most M tokens of reports; admit while the tokens
                       reported in (now - W, now] are < M.
fixed-window           windows of W seconds aligned on multiples of W since the epoch; admit while
                       the tokens reported in the current window are < M.
leaky-bucket           a meter of capacity M leaking at F/I; admit while the level is < M; the
                       report pours the tokens in.
=====================  =========================================================================

State never expires here (``redis_expired_seconds`` is ASM's and ignored). A multi-key check
stops at the first limited key, as in ASM; reservations already made for that request are
released at once. With usage charged at the end, token-bucket, gcra and leaky-bucket are three
descriptions of the same meter and decide alike; they differ in how the state is kept.
"""

from __future__ import annotations

import math
from collections import deque

from tokenlimit.rules.model import Rule


def _rate(rule: Rule) -> float:
    return rule.tokens_per_fill / rule.fill_interval_second if rule.fill_interval_second > 0 \
        else 0.0


def _window(rule: Rule) -> float:
    if rule.tokens_per_fill <= 0 or rule.fill_interval_second <= 0:
        return math.inf
    return rule.max_tokens * rule.fill_interval_second / rule.tokens_per_fill


class Meter:
    """Per-key state of one algorithm. ``admit`` returns (admitted?, balance, reserved)."""

    def __init__(self, rule: Rule) -> None:
        self.rule = rule

    def admit(self, now: float) -> tuple[bool, float, float]:
        raise NotImplementedError

    def settle(self, now: float, tokens: int, reserved: float) -> float:
        """The usage report; returns the balance afterwards."""
        raise NotImplementedError

    def release(self, reserved: float) -> None:
        """Give back a reservation (the request was denied by a later key)."""


class TokenBucket(Meter):
    """Continuous refill, starts full.

    >>> b = TokenBucket(Rule(0, "u", 100, 10, 10, 60))  # 1 token/s, capacity 100
    >>> b.admit(0.0)[:2], b.settle(1.0, 150, 0.0), b.admit(40.0)[:2], b.admit(52.0)[:2]
    ((True, 100.0), -50.0, (False, -11.0), (True, 1.0))
    """

    def __init__(self, rule: Rule) -> None:
        self.capacity = float(rule.max_tokens)
        self.rate = _rate(rule)
        self.tokens = self.capacity
        self.at: float | None = None

    def refill(self, now: float) -> None:
        if self.at is not None and now > self.at:
            self.tokens = min(self.capacity, self.tokens + self.rate * (now - self.at))
        if self.at is None or now > self.at:
            self.at = now

    def admit(self, now: float) -> tuple[bool, float, float]:
        self.refill(now)
        return self.tokens > 0, self.tokens, 0.0

    def settle(self, now: float, tokens: int, reserved: float) -> float:
        self.refill(now)
        # A refund never lifts the bucket above its capacity.
        self.tokens = min(self.capacity, self.tokens + reserved - tokens)
        return self.tokens


class PrepaidTokenBucket(TokenBucket):
    def __init__(self, rule: Rule) -> None:
        super().__init__(rule)
        self.first_estimate = float(max(rule.tokens_per_fill, 1))
        self.charged = 0
        self.reports = 0

    def estimate(self) -> float:
        guess = self.charged / self.reports if self.reports else self.first_estimate
        return max(min(guess, self.capacity), 1.0)

    def admit(self, now: float) -> tuple[bool, float, float]:
        self.refill(now)
        estimate = self.estimate()
        if self.tokens >= estimate:
            self.tokens -= estimate
            return True, self.tokens, estimate
        return False, self.tokens, 0.0

    def settle(self, now: float, tokens: int, reserved: float) -> float:
        self.charged += tokens
        self.reports += 1
        return super().settle(now, tokens, reserved)

    def release(self, reserved: float) -> None:
        self.tokens = min(self.capacity, self.tokens + reserved)


class Gcra(Meter):
    def __init__(self, rule: Rule) -> None:
        rate = _rate(rule)
        self.per_token = 1.0 / rate if rate > 0 else math.inf
        self.tolerance = rule.max_tokens * self.per_token if rule.max_tokens > 0 else 0.0
        self.tat = -math.inf

    def balance(self, now: float) -> float:
        ahead = max(self.tat, now) - now
        if math.isinf(self.per_token):
            return 0.0 if ahead > 0 or self.tolerance == 0 else math.inf
        return (self.tolerance - ahead) / self.per_token

    def admit(self, now: float) -> tuple[bool, float, float]:
        ahead = max(self.tat, now) - now
        return ahead < self.tolerance, self.balance(now), 0.0

    def settle(self, now: float, tokens: int, reserved: float) -> float:
        self.tat = max(self.tat, now) + tokens * self.per_token if tokens else self.tat
        return self.balance(now)


class SlidingWindow(Meter):
    def __init__(self, rule: Rule) -> None:
        self.window = _window(rule)
        self.limit = rule.max_tokens
        self.log: deque[tuple[float, int]] = deque()
        self.used = 0

    def expire(self, now: float) -> None:
        while self.log and self.log[0][0] <= now - self.window:
            self.used -= self.log.popleft()[1]

    def admit(self, now: float) -> tuple[bool, float, float]:
        self.expire(now)
        return self.used < self.limit, float(self.limit - self.used), 0.0

    def settle(self, now: float, tokens: int, reserved: float) -> float:
        self.expire(now)
        self.log.append((now, tokens))
        self.used += tokens
        return float(self.limit - self.used)


class FixedWindow(Meter):
    def __init__(self, rule: Rule) -> None:
        self.window = _window(rule)
        self.limit = rule.max_tokens
        self.current = -math.inf
        self.used = 0

    def roll(self, now: float) -> None:
        index = math.floor(now / self.window) if math.isfinite(self.window) else 0
        if index != self.current:
            self.current, self.used = index, 0

    def admit(self, now: float) -> tuple[bool, float, float]:
        self.roll(now)
        return self.used < self.limit, float(self.limit - self.used), 0.0

    def settle(self, now: float, tokens: int, reserved: float) -> float:
        self.roll(now)
        self.used += tokens
        return float(self.limit - self.used)


class LeakyBucket(Meter):
    def __init__(self, rule: Rule) -> None:
        self.capacity = float(rule.max_tokens)
        self.rate = _rate(rule)
        self.level = 0.0
        self.at: float | None = None

    def leak(self, now: float) -> None:
        if self.at is not None and now > self.at:
            self.level = max(0.0, self.level - self.rate * (now - self.at))
        if self.at is None or now > self.at:
            self.at = now

    def admit(self, now: float) -> tuple[bool, float, float]:
        self.leak(now)
        return self.level < self.capacity, self.capacity - self.level, 0.0

    def settle(self, now: float, tokens: int, reserved: float) -> float:
        self.leak(now)
        self.level += tokens
        return self.capacity - self.level


METERS: dict[str, type[Meter]] = {
    "token-bucket": TokenBucket,
    "token-bucket-prepaid": PrepaidTokenBucket,
    "gcra": Gcra,
    "sliding-window": SlidingWindow,
    "fixed-window": FixedWindow,
    "leaky-bucket": LeakyBucket,
}
