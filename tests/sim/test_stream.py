"""The chunked replay equals the whole-trace replay, wherever the chunk boundaries fall."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.sim.test_engine import rule_sets, traces
from tokenlimit.errors import TraceError
from tokenlimit.rules.model import Rule
from tokenlimit.sim import TraceRequest
from tokenlimit.sim.engine import replay_asm
from tokenlimit.sim.stream import StreamingReplay
from tokenlimit.sim.trace_table import trace_from_requests


def _chunked(rules: list[Rule], requests: list[TraceRequest],
             cuts: list[int]) -> tuple[list[tuple[int, int, str, int]], list[int], tuple[str, ...]]:
    """Decisions (outcome, rule, deciding key, balance) and final debts, chunk by chunk."""
    ordered = sorted(requests, key=lambda r: r.ts)  # stable: ties keep file order
    stream = StreamingReplay(rules)
    decided: list[tuple[int, int, str, int]] = []
    bounds = [0, *sorted(set(cuts)), len(ordered)]
    for start, stop in itertools.pairwise(bounds):
        replay = stream.feed(trace_from_requests(ordered[start:stop]))
        names = stream.key_names
        decided += [(int(o), int(r), names[k] if k >= 0 else "", int(b)) for o, r, k, b in
                    zip(replay.outcome, replay.rule, replay.key, replay.balance, strict=True)]
    deepest = stream.finish()
    return decided, deepest.tolist(), stream.key_names


def _whole(rules: list[Rule], requests: list[TraceRequest],
           ) -> tuple[list[tuple[int, int, str, int]], dict[str, int]]:
    ordered = sorted(requests, key=lambda r: r.ts)
    trace = trace_from_requests(ordered)
    replay = replay_asm(rules, trace)
    names = trace.key_names
    decided = [(int(o), int(r), names[k] if k >= 0 else "", int(b)) for o, r, k, b in
               zip(replay.outcome, replay.rule, replay.key, replay.balance, strict=True)]
    return decided, dict(zip(names, replay.deepest.tolist(), strict=True))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rule_sets(), traces(), st.lists(st.integers(0, 40), max_size=6))
def test_any_chunking_decides_like_the_whole_replay(
        rules: list[Rule], requests: list[TraceRequest], cuts: list[int]) -> None:
    cuts = [c for c in cuts if c <= len(requests)]
    decided, deepest, names = _chunked(rules, requests, cuts)
    expected, expected_debt = _whole(rules, requests)
    assert decided == expected
    assert dict(zip(names, deepest, strict=True)) == expected_debt


RULE = Rule(0, "u", 10, 5, 2, 4)  # 10 max, 5 a fill every 2 s, expires 4 s after a refill


@pytest.mark.parametrize("cut", [1, 2, 3, 4, 5])
def test_boundaries_on_ties_report_instants_and_expiry_instants(cut: int) -> None:
    requests = [TraceRequest(0, 0.0, ("u",), 2.0, 0, 12, 0),   # report due at 2.0: -7
                TraceRequest(1, 2.0, ("u",), 0.0, 0, 1, 0),    # a check at that instant
                TraceRequest(2, 2.0, ("u",), 2.0, 0, 3, 0),    # a tie with it
                TraceRequest(3, 4.0, ("u",), 0.0, 0, 1, 0),    # refill to 3, then 2
                TraceRequest(4, 6.0, ("u",), 4.0, 0, 9, 0),    # refill to 7, expiry at 10;
                TraceRequest(5, 10.0, ("u",), 0.0, 0, 1, 0)]   # its report and a check there
    decided, deepest, names = _chunked([RULE], requests, [cut])
    expected, debt = _whole([RULE], requests)
    assert decided == expected
    assert dict(zip(names, deepest, strict=True)) == debt
    assert [(d[0], d[3]) for d in expected] == [(0, 5), (1, -2), (1, -2), (0, 3), (0, 7),
                                                 (0, 8)]


def test_a_chunk_before_the_previous_one_is_refused() -> None:
    stream = StreamingReplay([RULE])
    stream.feed(trace_from_requests([TraceRequest(0, 5.0, ("u",))]))
    with pytest.raises(TraceError, match="not in time order"):
        stream.feed(trace_from_requests([TraceRequest(1, 4.0, ("u",))]))
    assert np.array_equal(stream.finish(), np.zeros(1, dtype=np.int64))
