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
from tokenlimit.sim.replay_stats import key_figures
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


def _figures_by_key(counts: np.ndarray, first: np.ndarray, names: tuple[str, ...]
                    ) -> dict[str, tuple[list[int], float]]:
    """Figures rows by key name (the last row: ``""``, no rule)."""
    return {name: (row, at) for name, row, at in
            zip((*names, ""), counts.tolist(), first.tolist(), strict=True)}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rule_sets(), traces(), st.lists(st.integers(0, 40), max_size=6))
def test_any_chunking_adds_up_the_whole_replays_figures(
        rules: list[Rule], requests: list[TraceRequest], cuts: list[int]) -> None:
    """A report-only stream (``feed_figures``: no decisions written) adds up, chunk by chunk,
    the figures of the whole replay's decisions, and leaves the same debts."""
    ordered = sorted(requests, key=lambda r: r.ts)
    stream = StreamingReplay(rules)
    counts, first = np.zeros((0, 6), dtype=np.int64), np.zeros(0)
    bounds = [0, *sorted({c for c in cuts if c <= len(ordered)}), len(ordered)]
    for start, stop in itertools.pairwise(bounds):
        part_counts, part_first = stream.feed_figures(trace_from_requests(ordered[start:stop]))
        grow = part_counts.shape[0] - counts.shape[0]  # new keys come before the no-rule row
        counts = np.insert(counts, counts.shape[0] - 1 if counts.size else 0,
                           np.zeros((grow, 6), dtype=np.int64), axis=0) + part_counts
        first = np.minimum(np.insert(first, first.shape[0] - 1 if first.size else 0,
                                     np.full(grow, np.inf)), part_first)
    deepest = stream.finish()
    trace = trace_from_requests(ordered)
    replay = replay_asm(rules, trace)
    expected = key_figures(trace, replay, "completion", len(trace.key_names))
    assert _figures_by_key(counts, first, stream.key_names) == _figures_by_key(
        *expected, trace.key_names)
    assert dict(zip(stream.key_names, deepest.tolist(), strict=True)) == dict(
        zip(trace.key_names, replay.deepest.tolist(), strict=True))


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
