"""The diff and tune cores against the event-by-event reference, on random traces."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from tokenlimit.rules.model import Rule
from tokenlimit.sim import TraceRequest, replay_oracle
from tokenlimit.sim.conditions import parse_condition
from tokenlimit.sim.rule_diff import METRICS, diff_rules
from tokenlimit.sim.trace_table import trace_from_requests
from tokenlimit.sim.tuning import Dimension, apply_values, geometric

KEYS = ("reg-1", "reg-2", "sub-1", "other")
NUMBERS = st.tuples(st.integers(1, 300), st.integers(1, 200), st.integers(1, 40),
                    st.integers(1, 200))
REQUESTS = st.lists(st.tuples(st.sampled_from([0, 0.5, 1, 7, 30, 61]),
                              st.lists(st.sampled_from(KEYS), min_size=0, max_size=2),
                              st.sampled_from([0, 0.25, 3, 45]), st.integers(0, 150)),
                    min_size=1, max_size=40)


def _rules(numbers: tuple[tuple[int, int, int, int], ...]) -> list[Rule]:
    return [Rule(i, regex, *n) for i, (regex, n) in enumerate(zip(("reg", "sub"), numbers,
                                                                   strict=True))]


@settings(max_examples=60)
@given(requests=REQUESTS, old=st.tuples(NUMBERS, NUMBERS), new=st.tuples(NUMBERS, NUMBERS))
def test_diff_counts_equal_two_reference_replays(requests: list, old: tuple,  # type: ignore[type-arg]
                                                 new: tuple) -> None:  # type: ignore[type-arg]
    ts = 0.0
    trace_requests = []
    for i, (step, keys, latency, tokens) in enumerate(requests):
        ts += step
        trace_requests.append(TraceRequest(i, ts, tuple(keys), latency,
                                           completion_tokens=tokens))
    trace = trace_from_requests(trace_requests)
    old_rules, new_rules = _rules(old), _rules(new)
    before = replay_oracle(old_rules, trace_requests)
    after = replay_oracle(new_rules, trace_requests)
    diff = diff_rules(trace, old_rules, new_rules, classes=("reg",))
    for label, mine in (("all", range(len(trace_requests))),
                        ("reg", [i for i, r in enumerate(trace_requests)
                                 if any(re.search("reg", k) for k in r.keys)])):
        group = diff.totals if label == "all" else diff.by_class[0]
        newly_limited = [i for i in mine
                         if before[i].outcome != "deny" and after[i].outcome == "deny"]
        newly_admitted = [i for i in mine
                          if before[i].outcome != "allow" and after[i].outcome == "allow"]
        assert (group.requests, group.newly_limited, group.newly_admitted) == (
            len(mine), len(newly_limited), len(newly_admitted))
        assert group.newly_limited_tokens == sum(trace_requests[i].completion_tokens
                                                 for i in newly_limited)
        assert group.first_newly_limited == (
            min(trace_requests[i].ts for i in newly_limited) if newly_limited else None)
    same = diff_rules(trace, old_rules, old_rules)
    assert (same.totals.newly_limited, same.totals.newly_admitted, same.keys) == (0, 0, ())
    assert [c.kind for c in same.rules] == ["same", "same"]
    condition = parse_condition("newly_limited > 0", METRICS)
    assert bool(diff.breaches([condition])) == (diff.totals.newly_limited > 0)


def test_a_searched_interval_keeps_the_ttl_at_least_as_long() -> None:
    rules = [Rule(0, "u", 100, 10, 30, 60)]
    interval = Dimension(0, "fill_interval_second", 10, 600)
    assert apply_values(rules, [interval], [120])[0].redis_expired_seconds == 120
    assert apply_values(rules, [interval], [40])[0].redis_expired_seconds == 60
    ttl = Dimension(0, "redis_expired_seconds", 1, 600)
    # both searched: the candidate is taken as given
    assert apply_values(rules, [interval, ttl], [120, 5])[0].redis_expired_seconds == 5


def test_geometric_grids_are_whole_numbers_within_bounds() -> None:
    assert geometric(5, 5, 4) == (5,)
    assert geometric(1, 3, 10) == (1, 2, 3)
    grid = geometric(12, 800, 6)
    assert grid[0] == 12 and grid[-1] == 800 and list(grid) == sorted(set(grid))
