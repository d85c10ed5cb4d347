"""What ``tune`` measures on one replay: the goals' figures and the ranking of candidates.

Goals are ``conditions`` (``[CLASS: ]METRIC OP VALUE[%]``) that must hold:

- ``limited``: requests denied (``%``: of the group's requests);
- ``key_tokens_per_hour`` / ``key_tokens_per_day``: the most charged tokens any single key
  got admitted in one clock hour / day (UTC); a request counts for each of its keys;
- ``key_usd_per_day``: the most any single key spent in one day (UTC), pricing the total
  tokens of its admitted requests at ``--price`` per 1K.

Without a class, a goal is on the whole trace and every key; with one, on the requests that
have a key matching the class, and on the keys that match it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tokenlimit.bucket.types import Charge
from tokenlimit.errors import ConfigError
from tokenlimit.rules.regex import compile_go_regex
from tokenlimit.sim.conditions import Condition, class_mask, parse_condition
from tokenlimit.sim.engine import ALLOW, DENY, Replay
from tokenlimit.sim.trace_table import BoolArray, Trace

GOAL_METRICS = ("limited", "key_tokens_per_hour", "key_tokens_per_day", "key_usd_per_day")
PREFERENCES = ("fewer-limited", "less-spend")
_WINDOW = {"key_tokens_per_hour": 3600, "key_tokens_per_day": 86400, "key_usd_per_day": 86400}


def parse_goal(text: str, price_per_1k: float | None) -> Condition:
    """One ``--goal``; ``ConfigError`` for bad syntax or a price goal without a price."""
    goal = parse_condition(text, GOAL_METRICS, percent_metrics=("limited",), example_op="<=")
    if goal.metric == "key_usd_per_day" and price_per_1k is None:
        raise ConfigError(f"{text!r}: key_usd_per_day needs --price")
    return goal


@dataclass(frozen=True, slots=True)
class Scores:
    """A candidate's figures: each goal's measured value and whether all hold, plus the
    whole trace's limited requests and admitted charged tokens (for ranking)."""

    measured: tuple[float, ...]
    met: bool
    limited: int
    limited_pct: float
    tokens_admitted: int


class GoalMeter:
    """Measures goals on replays of one trace (class masks computed once)."""

    def __init__(self, trace: Trace, goals: Sequence[Condition], charge: Charge,
                 price_per_1k: float | None) -> None:
        self.trace, self.goals, self.charge = trace, tuple(goals), charge
        self.price_per_1k = price_per_1k
        self._requests: dict[str | None, BoolArray] = {}
        self._keys: dict[str | None, BoolArray] = {}
        # a request's position for each of its keys (a request spends for every key)
        lengths = np.diff(trace.key_ptr)
        self._owner = np.repeat(np.arange(len(trace), dtype=np.int64), lengths)

    def _masks(self, group: str | None) -> tuple[BoolArray, BoolArray]:
        if group not in self._requests:
            if group is None:
                self._requests[group] = np.ones(len(self.trace), dtype=np.bool_)
                self._keys[group] = np.ones(len(self.trace.key_names), dtype=np.bool_)
            else:
                self._requests[group] = class_mask(self.trace, group)
                pattern = compile_go_regex(group)
                self._keys[group] = np.array(
                    [pattern.search(n) is not None for n in self.trace.key_names],
                    dtype=np.bool_)
        return self._requests[group], self._keys[group]

    def peak_key_spend(self, replay: Replay, group: str | None, metric: str) -> float:
        """The most one key got in one window (tokens, or USD for ``key_usd_per_day``)."""
        requests, keys = self._masks(group)
        trace = self.trace
        if not len(trace.key_index):
            return 0.0
        tokens = (trace.total_tokens if metric == "key_usd_per_day"
                  else trace.charged(self.charge))
        owner = self._owner
        take = ((replay.outcome[owner] == ALLOW) & requests[owner] & keys[trace.key_index])
        if not bool(take.any()):
            return 0.0
        window = np.floor(trace.ts[owner[take]] / _WINDOW[metric]).astype(np.int64)
        window -= window.min()
        cell = trace.key_index[take] * (int(window.max()) + 1) + window
        if int(cell.max()) > 4 * cell.shape[0]:  # sparse (keys x windows): number the cells
            cell = np.unique(cell, return_inverse=True)[1]
        peak = float(np.bincount(cell, weights=tokens[owner[take]]).max())
        if metric == "key_usd_per_day":
            return round(peak / 1000 * (self.price_per_1k or 0.0), 6)
        return peak

    def measure(self, replay: Replay, goal: Condition) -> float:
        """The value ``goal`` compares on this replay."""
        if goal.metric != "limited":
            return self.peak_key_spend(replay, goal.group, goal.metric)
        requests, _ = self._masks(goal.group)
        limited = int(((replay.outcome == DENY) & requests).sum())
        if not goal.percent:
            return float(limited)
        total = int(requests.sum())
        return 100.0 * limited / total if total else 0.0

    def score(self, replay: Replay) -> Scores:
        measured = tuple(self.measure(replay, goal) for goal in self.goals)
        met = all(goal.holds(value) for goal, value in zip(self.goals, measured, strict=True))
        limited = int((replay.outcome == DENY).sum())
        admitted = replay.outcome == ALLOW
        return Scores(measured, met, limited,
                      100.0 * limited / len(self.trace) if len(self.trace) else 0.0,
                      int(self.trace.charged(self.charge)[admitted].sum()))


def rank_key(scores: Scores, prefer: str) -> tuple[float, ...]:
    """Sort key among candidates that meet every goal: fewer limited requests first (then
    fewer tokens admitted), or fewer tokens admitted first (then fewer limited)."""
    if prefer == "less-spend":
        return (scores.tokens_admitted, scores.limited)
    return (scores.limited, scores.tokens_admitted)


def shortfall(goals: Sequence[Condition], scores: Scores) -> float:
    """How far a candidate is from meeting its goals (0 when it meets them): the sum of
    each missed goal's relative miss. Guides the search while nothing meets the goals."""
    total = 0.0
    for goal, value in zip(goals, scores.measured, strict=True):
        if not goal.holds(value):
            total += abs(value - goal.value) / max(abs(goal.value), 1.0)
    return total
