"""The fast engine against the event-by-event oracle: identical decisions, every time."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tokenlimit.rules.model import Rule
from tokenlimit.sim import TraceRequest, replay_oracle
from tokenlimit.sim.engine import (
    OUTCOME_NAMES,
    colliding_keys,
    replay_asm,
    replay_asm_oracle,
)
from tokenlimit.sim.trace_table import trace_from_requests

# Keys that exercise unanchored first-match rules ("ba" hits "b"; "x" hits nothing).
KEYS = ["a", "ab", "b", "ba", "c", "x"]
# Whole and half seconds, so checks tie, and reports (ts + latency) land exactly on checks and
# on expiry deadlines (t + TTL).
TIMES = st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.0, 3.5, 4.0, 6.0, 7.0, 9.0, 12.0, 15.0, 20.0,
                         27.0, 40.0])
LATENCIES = st.sampled_from([0.0, 0.0, 0.5, 1.0, 2.0, 3.0, 6.0, 12.0])


@st.composite
def rule_sets(draw: st.DrawFn) -> list[Rule]:
    patterns = draw(st.permutations(["^a", "b", "^c$", "a"]))[: draw(st.integers(1, 3))]
    return [Rule(i, p, draw(st.integers(0, 40)), draw(st.integers(0, 15)),
                 draw(st.integers(1, 6)), draw(st.integers(1, 14)))
            for i, p in enumerate(patterns)]


@st.composite
def traces(draw: st.DrawFn, keys: list[str] = KEYS) -> list[TraceRequest]:
    count = draw(st.integers(1, 40))
    return [TraceRequest(i, draw(TIMES),
                         tuple(draw(st.lists(st.sampled_from(keys), min_size=0, max_size=3))),
                         draw(LATENCIES), 0, draw(st.integers(0, 60)), 0)
            for i in range(count)]


def _fast(rules: list[Rule], requests: list[TraceRequest]) -> list[tuple[str, int | None]]:
    replay = replay_asm(rules, trace_from_requests(requests))
    assert replay.engine == "scan"
    return [(OUTCOME_NAMES[o], None if r < 0 else int(r))
            for o, r in zip(replay.outcome.tolist(), replay.rule.tolist(), strict=True)]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rule_sets(), traces())
def test_fast_engine_decides_exactly_like_the_oracle(rules: list[Rule],
                                                     requests: list[TraceRequest]) -> None:
    expected = [(d.outcome, d.rule) for d in replay_oracle(rules, requests)]
    assert _fast(rules, requests) == expected


@settings(max_examples=150, deadline=None)
@given(rule_sets(), traces())
def test_fast_engine_debts_keys_and_balances_match_the_oracle(
        rules: list[Rule], requests: list[TraceRequest]) -> None:
    trace = trace_from_requests(requests)
    fast, slow = replay_asm(rules, trace), replay_asm_oracle(rules, trace)
    assert slow.engine == "oracle"
    assert fast.deepest.tolist() == slow.deepest.tolist()
    assert fast.key.tolist() == slow.key.tolist()
    assert fast.balance.tolist() == slow.balance.tolist()


@settings(max_examples=100, deadline=None)
@given(rule_sets(), traces(keys=["a", "a_last_fill_time", "b"]))
def test_colliding_keys_fall_back_to_the_oracle(rules: list[Rule],
                                                requests: list[TraceRequest]) -> None:
    trace = trace_from_requests(requests)
    replay = replay_asm(rules, trace)
    expected = [d.outcome for d in replay_oracle(rules, requests)]
    assert [OUTCOME_NAMES[o] for o in replay.outcome.tolist()] == expected
    collides = bool(colliding_keys(trace.key_names))
    assert replay.engine == ("oracle" if collides else "scan")


def test_unsorted_trace_replays_in_time_order_with_ties_in_file_order() -> None:
    rule = Rule(0, "u", 100, 10, 60, 600)
    requests = [TraceRequest("late", 9.0, ("u",), 0.0, completion_tokens=1),
                TraceRequest("first", 5.0, ("u",), 0.0, completion_tokens=10),
                TraceRequest("second", 5.0, ("u",), 0.0, completion_tokens=10)]
    assert _fast([rule], requests) == [("deny", 0), ("allow", 0), ("deny", 0)]


def test_expiry_boundary_deep_debt_and_reset_by_hand() -> None:
    rule = Rule(0, "k", 100, 10, 60, 50)
    requests = [TraceRequest(0, 0.0, ("k",), 1.0, completion_tokens=500),  # debt -490
                TraceRequest(1, 50.0, ("k",), 0.0, completion_tokens=1),  # alive at t+TTL
                TraceRequest(2, 50.5, ("k",), 0.0, completion_tokens=1)]  # expired: reset
    trace = trace_from_requests(requests)
    replay = replay_asm([rule], trace)
    assert replay.outcome.tolist() == [0, 1, 0]
    assert replay.balance.tolist() == [10, -490, 10]
    assert replay.deepest.tolist() == [-490]


def test_report_created_at_the_same_instant_goes_before_later_checks() -> None:
    rule = Rule(0, "u", 100, 10, 60, 600)
    requests = [TraceRequest(i, 5.0, ("u",), 0.0, completion_tokens=10) for i in range(3)]
    assert _fast([rule], requests) == [("allow", 0), ("deny", 0), ("deny", 0)]


def test_first_limited_key_ends_the_check_and_later_keys_are_not_created() -> None:
    rules = [Rule(0, "^a$", 10, 1, 60, 600), Rule(1, "^b$", 10, 5, 60, 600)]
    requests = [TraceRequest(0, 0.0, ("a",), 0.0, completion_tokens=5),
                TraceRequest(1, 1.0, ("a", "b"), 0.0, completion_tokens=0),
                TraceRequest(2, 61.0, ("b",), 0.0, completion_tokens=0)]
    replay = replay_asm(rules, trace_from_requests(requests))
    assert replay.outcome.tolist() == [0, 1, 0]
    # "b" was created at 61 (not at 1): a fresh bucket at tokens_per_fill.
    assert replay.balance.tolist() == [1, -4, 5]


def test_invalid_rules_fall_back_to_the_oracle() -> None:
    rule = Rule(0, "u", 500, 10, 0, 600)
    requests = [TraceRequest(0, 3.2, ("u",), 0.1, completion_tokens=40),
                TraceRequest(1, 3.9, ("u",)), TraceRequest(2, 4.0, ("u",))]
    replay = replay_asm([rule], trace_from_requests(requests))
    assert (replay.engine, replay.outcome.tolist()) == ("oracle", [0, 1, 0])


def test_large_trace_keeps_decisions_identical() -> None:
    rng = np.random.default_rng(5)
    rules = [Rule(0, "^r", 200, 50, 30, 300), Rule(1, "^s", 1000, 100, 60, 600)]
    names = [f"r{i}" for i in range(30)] + [f"s{i}" for i in range(10)] + ["x"]
    ts = np.round(np.sort(rng.uniform(0, 3600, 3000)), 1)
    requests = [TraceRequest(i, float(ts[i]), (names[rng.integers(len(names))],),
                             float(rng.choice([0.0, 1.5, 30.0])), 0, int(rng.integers(0, 300)), 0)
                for i in range(3000)]
    expected = [(d.outcome, d.rule) for d in replay_oracle(rules, requests)]
    got = _fast(rules, requests)
    assert got == expected
    assert 0 < sum(o == "deny" for o, _ in got) < 3000
