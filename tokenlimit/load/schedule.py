"""Load shapes: when each request is meant to be sent, as offsets in seconds from the start.

Each open-loop shape is a small object with one method, ``offsets()``, yielding intended send
offsets in increasing order; the driver stops at ``--duration`` or ``--requests``, whichever
comes first, so a shape never needs to end by itself. A closed loop has no schedule: it is
a number of concurrent users, each sending its next request when the last one answered.

>>> list(itertools.islice(ConstantRate(4).offsets(), 3))
[0.0, 0.25, 0.5]
>>> list(itertools.islice(SteppedRamp(((1.0, 2.0), (1.0, 4.0))).offsets(), 4))
[0.0, 0.5, 1.0, 1.25]
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from tokenlimit.errors import ConfigError


class Schedule(Protocol):
    """An open-loop load shape."""

    def offsets(self) -> Iterator[float]:
        """Intended send offsets (seconds from the start), non-decreasing."""
        ...

    def describe(self) -> str:
        """A short human description for the report."""
        ...


@dataclass(frozen=True, slots=True)
class ConstantRate:
    """``rate`` requests per second, evenly spaced."""

    rate: float

    def offsets(self) -> Iterator[float]:
        for n in itertools.count():
            yield n / self.rate

    def describe(self) -> str:
        return f"constant {self.rate:g}/s"


@dataclass(frozen=True, slots=True)
class PoissonRate:
    """Poisson arrivals at ``rate`` per second on average (seeded exponential gaps)."""

    rate: float
    seed: int = 0

    def offsets(self) -> Iterator[float]:
        rng = random.Random(self.seed)
        t = 0.0
        while True:
            yield t
            t += rng.expovariate(self.rate)

    def describe(self) -> str:
        return f"poisson {self.rate:g}/s"


@dataclass(frozen=True, slots=True)
class SteppedRamp:
    """Steps of ``(seconds, rate)``: constant rate within each step; the last step holds."""

    steps: tuple[tuple[float, float], ...]

    def offsets(self) -> Iterator[float]:
        start = 0.0
        for index, (length, rate) in enumerate(self.steps):
            last = index == len(self.steps) - 1
            for n in itertools.count():
                t = start + n / rate
                if not last and t >= start + length:
                    break
                yield t
            start += length

    def describe(self) -> str:
        return "ramp " + ", ".join(f"{r:g}/s for {s:g}s" for s, r in self.steps)


@dataclass(frozen=True, slots=True)
class ReplaySchedule:
    """A recorded trace's start times, relative to its first request, divided by ``speed``."""

    times: tuple[float, ...]
    speed: float = 1.0

    def offsets(self) -> Iterator[float]:
        if not self.times:
            return
        first = self.times[0]
        for t in self.times:
            yield (t - first) / self.speed

    def describe(self) -> str:
        return f"replay of {len(self.times)} requests at {self.speed:g}x"


def parse_ramp(text: str) -> SteppedRamp:
    """``'10x2,50x2,100x5'``: 2 s at 10/s, 2 s at 50/s, then 100/s (5 s, then held).

    >>> parse_ramp("10x2,50x3").steps
    ((2.0, 10.0), (3.0, 50.0))
    """
    steps: list[tuple[float, float]] = []
    for part in text.split(","):
        rate_text, sep, secs_text = part.strip().partition("x")
        try:
            rate, secs = float(rate_text), float(secs_text)
        except ValueError:
            raise ConfigError(f"--ramp: {part.strip()!r} is not RATExSECONDS (e.g. 50x2)") from None
        if not sep or not 0 < rate < math.inf or not 0 < secs < math.inf:
            raise ConfigError(f"--ramp: {part.strip()!r}: rate and seconds must be finite "
                              "numbers > 0")
        steps.append((secs, rate))
    return SteppedRamp(tuple(steps))


def ramp_duration(ramp: SteppedRamp) -> float:
    """The total length of the ramp's steps."""
    return sum(s for s, _ in ramp.steps)


def weighted_choice(weights: Sequence[float], rng: random.Random) -> int:
    """An index drawn with the given weights."""
    return rng.choices(range(len(weights)), weights=weights)[0]
