"""What a rule means in numbers, as the ASM service's bucket arithmetic gives them.

A new (or expired) bucket starts at ``tokens_per_fill``, not ``max_tokens``; each refill adds
``tokens_per_fill`` per whole interval elapsed, capped at ``max_tokens``; the bucket expires
``redis_expired_seconds`` after the check that created or last refilled it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tokenlimit.rules.model import Rule

MINUTE, HOUR, DAY = 60, 3600, 86400


@dataclass(frozen=True, slots=True)
class RuleFigures:
    """Derived figures of a rule whose four numbers are all positive.

    >>> f = figures_of(Rule(0, "regular-user.*", 200, 50, 30, 300))
    >>> f.tokens_per_minute, f.tokens_per_day, f.start_tokens, f.burst_tokens
    (100.0, 144000.0, 50, 200)
    >>> f.seconds_to_full, f.lifetime_seconds, f.refills
    (120, 300, True)
    """

    tokens_per_minute: float
    tokens_per_day: float
    start_tokens: int
    burst_tokens: int
    seconds_to_full: int
    lifetime_seconds: int
    refills: bool

    def to_dict(self) -> dict[str, object]:
        return {
            "tokens_per_minute": self.tokens_per_minute,
            "tokens_per_day": self.tokens_per_day,
            "start_tokens": self.start_tokens,
            "burst_tokens": self.burst_tokens,
            "seconds_to_full": self.seconds_to_full,
            "lifetime_seconds": self.lifetime_seconds,
            "refills": self.refills,
        }

    def summary(self) -> str:
        """One sentence for the figures finding and ``--key``."""
        if not self.refills:
            return (f"a new key starts with {counted(self.start_tokens, 'token')} and never "
                    f"refills: its bucket restarts at {self.start_tokens:,} (debt forgiven) "
                    f"once it expires, {duration(self.lifetime_seconds)} after it was created")
        return (f"sustained up to {number(self.tokens_per_minute)} tokens/min "
                f"({number(self.tokens_per_day)}/day); a new key starts with "
                f"{counted(self.start_tokens, 'token')}; burst up to {self.burst_tokens:,}; "
                f"refills from empty to full in {duration(self.seconds_to_full)}; the bucket "
                f"expires {duration(self.lifetime_seconds)} after its last refill "
                "(then it restarts, debt forgiven)")


def counted(count: int, noun: str) -> str:
    """``count`` of ``noun`` (a regular plural) for a message.

    >>> counted(1, "token"), counted(1000, "request")
    ('1 token', '1,000 requests')
    """
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def figures_of(rule: Rule) -> RuleFigures | None:
    """The figures of ``rule``, or ``None`` when a number is not positive (nothing to say)."""
    numbers = (rule.max_tokens, rule.tokens_per_fill, rule.fill_interval_second,
               rule.redis_expired_seconds)
    if min(numbers) <= 0:
        return None
    interval = rule.fill_interval_second
    refills = rule.redis_expired_seconds >= interval
    # Refills are capped at max_tokens: a drained bucket gets back at most that per interval.
    per_interval = min(rule.tokens_per_fill, rule.max_tokens) if refills else 0
    # With no refill, a key gets at most tokens_per_fill per bucket life (TTL).
    if not refills:
        per_interval, interval = rule.tokens_per_fill, rule.redis_expired_seconds
    return RuleFigures(
        tokens_per_minute=round(per_interval * MINUTE / interval, 3),
        tokens_per_day=round(per_interval * DAY / interval, 3),
        start_tokens=rule.tokens_per_fill,
        burst_tokens=max(rule.max_tokens, rule.tokens_per_fill),
        seconds_to_full=math.ceil(rule.max_tokens / rule.tokens_per_fill)
        * rule.fill_interval_second,
        lifetime_seconds=rule.redis_expired_seconds,
        refills=refills,
    )


def number(value: float) -> str:
    """``144,000`` or ``428.57``: thousands separated, at most two decimals.

    >>> number(144000.0), number(428.5714)
    ('144,000', '428.57')
    """
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.2f}"


def duration(seconds: int) -> str:
    """``45 s``, ``2 min``, ``1 h 30 min``, ``2 d``.

    >>> duration(45), duration(120), duration(5400), duration(90061)
    ('45 s', '2 min', '1 h 30 min', '1 d 1 h 1 min 1 s')
    """
    if seconds < MINUTE:
        return f"{seconds} s"
    parts = []
    for size, unit in ((DAY, "d"), (HOUR, "h"), (MINUTE, "min"), (1, "s")):
        amount, seconds = divmod(seconds, size)
        if amount:
            parts.append(f"{amount} {unit}")
    return " ".join(parts)
