"""The what-if algorithms against hand-worked timelines, and the registry."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenlimit.rules.model import Rule
from tokenlimit.sim import TraceRequest
from tokenlimit.sim.algorithms import ALGORITHMS
from tokenlimit.sim.meters import (
    METERS,
    FixedWindow,
    Gcra,
    LeakyBucket,
    PrepaidTokenBucket,
    SlidingWindow,
    TokenBucket,
)
from tokenlimit.sim.trace_table import trace_from_requests

# M = 100 tokens, F = 10 per I = 10 s: 1 token/s; windows W = M * I / F = 100 s.
RULE = Rule(0, "u", 100, 10, 10, 60)


def test_registry_names_drive_the_choices() -> None:
    assert list(ALGORITHMS) == ["asm", "asm-reserve", "token-bucket", "token-bucket-prepaid",
                                "gcra", "sliding-window", "fixed-window", "leaky-bucket"]
    assert set(METERS) == set(ALGORITHMS) - {"asm", "asm-reserve"}


def test_token_bucket_refills_continuously_and_caps_at_max() -> None:
    bucket = TokenBucket(RULE)
    assert bucket.admit(0.0) == (True, 100.0, 0.0)
    assert bucket.settle(2.0, 130, 0.0) == -30.0        # full (capped) then charged
    assert bucket.admit(30.0) == (False, -2.0, 0.0)      # +28 over 28 s
    assert bucket.admit(32.5) == (True, 0.5, 0.0)
    assert bucket.admit(1000.0) == (True, 100.0, 0.0)    # never above max_tokens


def test_prepaid_bucket_holds_an_estimate_and_settles_the_difference() -> None:
    bucket = PrepaidTokenBucket(RULE)
    assert bucket.admit(0.0) == (True, 90.0, 10.0)       # first estimate: F = 10
    assert bucket.settle(1.0, 40, 10.0) == 61.0          # 90 + 1 s of refill + 10 - 40
    assert bucket.estimate() == 40.0                     # the mean charge so far
    assert bucket.admit(1.0) == (True, 21.0, 40.0)
    assert bucket.admit(1.0) == (False, 21.0, 0.0)       # 21 < 40: refused up front
    bucket.release(40.0)
    assert bucket.tokens == 61.0
    assert bucket.admit(2.0) == (True, 22.0, 40.0)
    assert bucket.settle(500.0, 0, 40.0) == 100.0        # full again: the refund is capped


def test_gcra_tolerance_and_theoretical_arrival_time() -> None:
    gcra = Gcra(RULE)                                    # 1 s per token, tolerance 100 s
    assert gcra.admit(0.0) == (True, 100.0, 0.0)
    assert gcra.settle(0.0, 150, 0.0) == -50.0           # TAT = 150
    assert gcra.admit(49.0) == (False, -1.0, 0.0)        # 101 s ahead
    assert gcra.admit(51.0) == (True, 1.0, 0.0)          # 99 s ahead


def test_sliding_window_forgets_reports_older_than_the_window() -> None:
    window = SlidingWindow(RULE)                         # W = 100 s, limit 100
    assert window.settle(5.0, 60, 0.0) == 40.0
    assert window.settle(50.0, 50, 0.0) == -10.0
    assert window.admit(104.9) == (False, -10.0, 0.0)    # 60 @5 still in (4.9, 104.9]
    assert window.admit(105.0) == (True, 50.0, 0.0)      # 5 <= 105 - 100: gone
    assert window.admit(150.0) == (True, 100.0, 0.0)


def test_fixed_window_resets_on_aligned_boundaries() -> None:
    window = FixedWindow(RULE)                           # windows [0,100), [100,200), ...
    assert window.settle(99.0, 120, 0.0) == -20.0
    assert window.admit(99.9) == (False, -20.0, 0.0)
    assert window.admit(100.0) == (True, 100.0, 0.0)


def test_leaky_bucket_drains_at_the_sustained_rate() -> None:
    bucket = LeakyBucket(RULE)
    assert bucket.admit(0.0) == (True, 100.0, 0.0)
    assert bucket.settle(0.0, 130, 0.0) == -30.0         # level 130
    assert bucket.admit(29.0) == (False, -1.0, 0.0)      # level 101
    assert bucket.admit(31.0) == (True, 1.0, 0.0)


def _outcomes(name: str, requests: list[TraceRequest], rules: list[Rule]) -> list[int]:
    return ALGORITHMS[name].replay(rules, trace_from_requests(requests)).outcome.tolist()


@pytest.mark.parametrize(("name", "expected"), [
    # new bucket at F = 10; -119 at 7; 3 whole intervals at 31 give -89; expired at 101
    ("asm", [0, 0, 0, 1, 1, 0]),
    # starts at 100: -24 after the report at 6, -23 at 7, +1 at 31
    ("token-bucket", [0, 0, 0, 1, 0, 0]),
    # holds the mean charge (43 once r1 has reported): -22 at 7, 2 at 31, 72 at 101
    ("token-bucket-prepaid", [0, 0, 0, 1, 1, 0]),
    # TAT 130 after r1's report: 123 s ahead at 7, 99 s at 31
    ("gcra", [0, 0, 0, 1, 0, 0]),
    # 129 reported in the window; at 101 only r0's 9 (at 1) has left it
    ("sliding-window", [0, 0, 0, 1, 1, 1]),
    # 129 in [0, 100); a fresh window at 101
    ("fixed-window", [0, 0, 0, 1, 1, 0]),
    # level 124 after the report at 6, 123 at 7, 99 at 31
    ("leaky-bucket", [0, 0, 0, 1, 0, 0]),
])
def test_one_timeline_through_every_algorithm(name: str, expected: list[int]) -> None:
    requests = [TraceRequest(0, 0.0, ("u",), 1.0, completion_tokens=9),
                TraceRequest(1, 1.0, ("u",), 5.0, completion_tokens=120),
                TraceRequest(2, 2.0, ("u",), 0.0, completion_tokens=0),
                TraceRequest(3, 7.0, ("u",), 0.0, completion_tokens=0),
                TraceRequest(4, 31.0, ("u",), 0.0, completion_tokens=0),
                TraceRequest(5, 101.0, ("u",), 0.0, completion_tokens=0)]
    assert _outcomes(name, requests, [RULE]) == expected


def test_a_denied_multi_key_request_releases_its_reservations() -> None:
    rules = [Rule(0, "^a$", 100, 10, 10, 60), Rule(1, "^b$", 0, 1, 10, 60)]
    requests = [TraceRequest(0, 0.0, ("a", "b"), 0.0, completion_tokens=5),
                TraceRequest(1, 0.0, ("a",), 0.0, completion_tokens=5)]
    replay = ALGORITHMS["token-bucket-prepaid"].replay(rules, trace_from_requests(requests))
    assert replay.outcome.tolist() == [1, 0]
    assert replay.rule.tolist() == [1, 0]
    assert replay.balance.tolist() == [0, 90]            # "a" got its 10 back, then 10 held


@st.composite
def _timelines(draw: st.DrawFn) -> tuple[Rule, list[TraceRequest]]:
    # Rate 1 token/s and half-second times keep every float exact, so equal means equal.
    fill = draw(st.integers(1, 20))
    rule = Rule(0, "u", draw(st.integers(0, 60)), fill, fill, 600)
    requests = [TraceRequest(i, draw(st.integers(0, 120)) / 2, ("u",),
                             draw(st.integers(0, 20)) / 2, 0, draw(st.integers(0, 50)), 0)
                for i in range(draw(st.integers(1, 30)))]
    return rule, requests


@settings(max_examples=200, deadline=None)
@given(_timelines())
def test_bucket_gcra_and_leaky_meter_decide_alike(case: tuple[Rule, list[TraceRequest]]) -> None:
    rule, requests = case
    outcomes = {name: _outcomes(name, requests, [rule])
                for name in ("token-bucket", "gcra", "leaky-bucket")}
    assert outcomes["token-bucket"] == outcomes["gcra"] == outcomes["leaky-bucket"]


@settings(max_examples=200, deadline=None)
@given(_timelines())
def test_balances_never_exceed_the_bucket(case: tuple[Rule, list[TraceRequest]]) -> None:
    rule, requests = case
    trace = trace_from_requests(requests)
    for name in ("asm", "token-bucket", "token-bucket-prepaid", "leaky-bucket"):
        balance = ALGORITHMS[name].replay([rule], trace).balance
        # ASM starts a new bucket at tokens_per_fill, which may exceed max_tokens.
        ceiling = max(rule.max_tokens, rule.tokens_per_fill) if name == "asm" else rule.max_tokens
        assert int(balance.max()) <= ceiling, name
