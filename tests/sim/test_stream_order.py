"""Batches out of time order: the streamed replay (waiting requests, decisions written back in
file order) decides like the whole replay, or names a request out of order by more than a
batch; a trace in time order is never refused."""

from __future__ import annotations

import io
import itertools
import json

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.sim.test_engine import rule_sets, traces
from tokenlimit.errors import TraceError
from tokenlimit.rules.model import Rule
from tokenlimit.sim import TraceRequest
from tokenlimit.sim.chunked import replay_batches
from tokenlimit.sim.engine import OUTCOME_NAMES, replay_asm
from tokenlimit.sim.replay_stats import summarize
from tokenlimit.sim.stream_order import take
from tokenlimit.sim.trace_table import Trace, trace_from_requests


def _bounds(trace: Trace, cuts: list[int]) -> list[int]:
    return [0, *sorted({c for c in cuts if 0 < c < len(trace)}), len(trace)]


def _disorder_within_a_batch(trace: Trace, cuts: list[int]) -> bool:
    """Every batch no earlier than any request two batches or more before it: enough for
    the streamed replay to take it (requests wait one batch)."""
    spans = [trace.ts[a:b] for a, b in itertools.pairwise(_bounds(trace, cuts))]
    return all(spans[j].min() >= spans[i].max()
               for j in range(len(spans)) for i in range(j - 1))


def _streamed(rules: list[Rule], trace: Trace, cuts: list[int]) -> tuple[list[str], object]:
    bounds = _bounds(trace, cuts)
    batches = ((start, take(trace, np.arange(start, stop)))
               for start, stop in itertools.pairwise(bounds))
    out = io.BytesIO()
    result = replay_batches(batches, rules, out, lambda _batch: None, charge="completion",
                          top=50, price_per_1k=None)
    return out.getvalue().decode().splitlines(), result.summary


def _whole(rules: list[Rule], trace: Trace) -> tuple[list[str], object]:
    replay = replay_asm(rules, trace)
    lines = [json.dumps({"id": trace.id_of(i), "outcome": OUTCOME_NAMES[o],
                         "rule": None if r < 0 else r})
             for i, (o, r) in enumerate(zip(replay.outcome.tolist(), replay.rule.tolist(),
                                            strict=True))]
    return lines, summarize(rules, trace, replay, top=50)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rule_sets(), traces(), st.lists(st.integers(1, 40), max_size=8))
def test_batches_out_of_order_decide_like_the_whole_replay_or_are_refused(
        rules: list[Rule], requests: list[TraceRequest], cuts: list[int]) -> None:
    trace = trace_from_requests(requests)
    expected = _whole(rules, trace)
    try:
        streamed = _streamed(rules, trace, cuts)
    except TraceError as exc:
        assert "not in time order" in exc.message
        assert not _disorder_within_a_batch(trace, cuts)
        return
    assert streamed == expected


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rule_sets(), traces(), st.lists(st.integers(1, 40), max_size=8))
def test_a_log_in_order_of_response_end_streams_exactly(
        rules: list[Rule], requests: list[TraceRequest], cuts: list[int]) -> None:
    """Requests written when they end (start + latency): refused only when a batch spans less
    time than the disorder; in time order by start, never refused."""
    by_end = sorted(requests, key=lambda r: r.ts + r.latency)
    trace = trace_from_requests(by_end)
    expected = _whole(rules, trace)
    try:
        assert _streamed(rules, trace, cuts) == expected
    except TraceError:
        assert not _disorder_within_a_batch(trace, cuts)
    in_order = trace_from_requests(sorted(requests, key=lambda r: r.ts))
    assert _streamed(rules, in_order, cuts) == _whole(rules, in_order)
