"""``tune``: a bounded search for rule numbers that meet goals on recorded traffic.

Every candidate is replayed exactly (``replay_asm``); nothing is estimated, so a candidate
reported as meeting its goals does meet them on that trace. The search is successive
refinement over whole numbers:

1. a geometric grid over each searched dimension (a field of a named rule, between its
   bounds), as many points per dimension as half the budget allows, every combination;
2. then, while budget is left, a finer grid (three points per dimension) between the
   neighbours of the best candidate so far (the best meeting the goals, else the one
   closest to meeting them), until the bounds close in or the budget is spent.

When ``fill_interval_second`` is searched but not ``redis_expired_seconds``, a candidate's TTL
is raised to its interval where it would be shorter (a bucket that expires before it can
refill never refills).

>>> from tokenlimit.rules.model import Rule
>>> geometric(1, 1000, 4)
(1, 10, 100, 1000)
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from tokenlimit.bucket.types import Charge
from tokenlimit.errors import ConfigError
from tokenlimit.rules.model import INT_FIELDS, Rule
from tokenlimit.sim.conditions import Condition
from tokenlimit.sim.engine import replay_asm
from tokenlimit.sim.trace_table import Trace
from tokenlimit.sim.tune_goals import GoalMeter, Scores, rank_key, shortfall

DEFAULT_FIELDS = ("tokens_per_fill", "max_tokens")
MAX_VALUE = 2**31


@dataclass(frozen=True, slots=True)
class Dimension:
    """One searched number: ``field`` of rule ``rule`` between ``low`` and ``high``."""

    rule: int
    field: str
    low: int
    high: int

    def label(self, rules: Sequence[Rule]) -> str:
        return f"{rules[self.rule].regex}.{self.field}"


@dataclass(frozen=True, slots=True)
class Candidate:
    """One replayed setting: the values of the dimensions, the rules, their scores."""

    values: tuple[int, ...]
    rules: tuple[Rule, ...]
    scores: Scores


@dataclass(frozen=True, slots=True)
class TuneResult:
    """Every replayed candidate in order; the ones meeting the goals, best first, one per
    distinct set of figures; and the scores of the rules as given (replayed too, outside
    the budget)."""

    dimensions: tuple[Dimension, ...]
    goals: tuple[Condition, ...]
    candidates: tuple[Candidate, ...]
    ranked: tuple[Candidate, ...]
    current: Scores

    @property
    def best(self) -> Candidate | None:
        return self.ranked[0] if self.ranked else None


def geometric(low: int, high: int, points: int) -> tuple[int, ...]:
    """About ``points`` whole numbers from ``low`` to ``high`` (both included), spaced
    evenly on a log scale; fewer when the range holds fewer numbers."""
    if points <= 1 or low >= high:
        return (low,) if low >= high else (low, high)
    ratio = (high / low) ** (1 / (points - 1))
    values = {low, high}
    values.update(min(high, max(low, round(low * ratio**i))) for i in range(1, points - 1))
    return tuple(sorted(values))


def dimensions_for(rules: Sequence[Rule], targets: Sequence[int], fields: Sequence[str],
                   bounds: dict[str, tuple[int, int]]) -> tuple[Dimension, ...]:
    """The searched dimensions: each field of each target rule, between ``bounds[field]``
    (default: an eighth to eight times the rule's current value)."""
    out = []
    for index in targets:
        for field in fields:
            if field not in INT_FIELDS:
                raise ConfigError(f"--field {field!r}: choose among {', '.join(INT_FIELDS)}")
            current = max(int(getattr(rules[index], field)), 1)
            low, high = bounds.get(field, (max(1, current // 8), min(current * 8, MAX_VALUE)))
            if not 1 <= low <= high <= MAX_VALUE:
                raise ConfigError(f"--range {field}={low}..{high}: need 1 <= LOW <= HIGH <= "
                                  f"{MAX_VALUE}")
            out.append(Dimension(index, field, low, high))
    return tuple(out)


def apply_values(rules: Sequence[Rule], dimensions: Sequence[Dimension],
                 values: Sequence[int]) -> tuple[Rule, ...]:
    """The rules with each dimension's value set (and TTLs kept >= searched intervals)."""
    changed = list(rules)
    for dimension, value in zip(dimensions, values, strict=True):
        changed[dimension.rule] = replace(changed[dimension.rule], **{dimension.field: value})  # type: ignore[arg-type]
    searched_ttl = {d.rule for d in dimensions if d.field == "redis_expired_seconds"}
    for index in {d.rule for d in dimensions if d.field == "fill_interval_second"}:
        rule = changed[index]
        if index not in searched_ttl and rule.redis_expired_seconds < rule.fill_interval_second:
            changed[index] = replace(rule, redis_expired_seconds=rule.fill_interval_second)
    return tuple(changed)


class _Search:
    def __init__(self, trace: Trace, rules: Sequence[Rule], dimensions: Sequence[Dimension],
                 meter: GoalMeter, charge: Charge, prefer: str, budget: int,
                 on_candidate: Callable[[int, int], None] | None) -> None:
        self.trace, self.rules, self.dimensions = trace, tuple(rules), tuple(dimensions)
        self.meter, self.charge, self.prefer, self.budget = meter, charge, prefer, budget
        self.on_candidate = on_candidate
        self.seen: dict[tuple[int, ...], Candidate] = {}

    def evaluate(self, grids: Sequence[Sequence[int]]) -> None:
        for values in itertools.product(*grids):
            if len(self.seen) >= self.budget:
                return
            if values in self.seen:
                continue
            rules = apply_values(self.rules, self.dimensions, values)
            scores = self.meter.score(replay_asm(rules, self.trace, self.charge))
            self.seen[values] = Candidate(tuple(values), rules, scores)
            if self.on_candidate is not None:
                self.on_candidate(len(self.seen), self.budget)

    def leader(self) -> Candidate:
        goals = self.meter.goals
        return min(self.seen.values(), key=lambda c: (
            shortfall(goals, c.scores), rank_key(c.scores, self.prefer), c.values))

    def refine_around(self, leader: Candidate) -> list[tuple[int, ...]]:
        grids = []
        for i, dimension in enumerate(self.dimensions):
            tried = sorted({c.values[i] for c in self.seen.values()})
            value = leader.values[i]
            below = max((v for v in tried if v < value), default=dimension.low)
            above = min((v for v in tried if v > value), default=dimension.high)
            grids.append(tuple(sorted({*geometric(max(below, 1), above, 5), value})))
        return grids


def tune(trace: Trace, rules: Sequence[Rule], dimensions: Sequence[Dimension],
         goals: Sequence[Condition], *, charge: Charge = "completion",
         price_per_1k: float | None = None, prefer: str = "fewer-limited", budget: int = 60,
         on_candidate: Callable[[int, int], None] | None = None) -> TuneResult:
    """Search ``dimensions`` with at most ``budget`` replays; rank what meets ``goals``."""
    if budget < 1:
        raise ConfigError("--budget must be at least 1")
    meter = GoalMeter(trace, goals, charge, price_per_1k)
    search = _Search(trace, rules, dimensions, meter, charge, prefer, budget, on_candidate)
    first = max(budget // 2, 1)
    points = max(2, math.floor(first ** (1 / max(len(dimensions), 1))))
    search.evaluate([geometric(d.low, d.high, points) for d in dimensions])
    while len(search.seen) < budget:
        before = len(search.seen)
        search.evaluate(search.refine_around(search.leader()))
        if len(search.seen) == before:
            break  # the grid has closed in: nothing new to try
    candidates = tuple(search.seen.values())
    ranked = sorted((c for c in candidates if c.scores.met),
                    key=lambda c: (rank_key(c.scores, prefer), c.values))
    # Candidates with the very same figures (a bigger max_tokens that no key ever reaches,
    # say) say nothing new: keep the first, with the smallest numbers.
    distinct: dict[Scores, Candidate] = {}
    for candidate in ranked:
        distinct.setdefault(candidate.scores, candidate)
    ranked = list(distinct.values())
    current = meter.score(replay_asm(rules, trace, charge))
    return TuneResult(tuple(dimensions), tuple(goals), candidates, tuple(ranked), current)
