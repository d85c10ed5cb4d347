"""The latency histogram: bucket arithmetic, percentiles within 1/1024, exact merges."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from tokenlimit.load.histogram import LatencyHistogram, bucket_high, bucket_index

values = st.lists(st.integers(min_value=0, max_value=10**9), max_size=300)


def exact_percentile(data: list[int], percent: float) -> int:
    ordered = sorted(data)
    rank = max(1, math.ceil(len(ordered) * percent / 100))
    return ordered[rank - 1]


@given(st.integers(min_value=0, max_value=10**12))
def test_a_value_lies_in_its_bucket_and_the_bucket_is_narrow(value: int) -> None:
    index = bucket_index(value)
    high = bucket_high(index)
    assert value <= high
    assert high - value <= max(value // 1024, 0) + (0 if value < 2048 else 1)
    assert index == 0 or bucket_high(index - 1) < value


@given(values, st.sampled_from([50.0, 90.0, 99.0, 99.9, 100.0]))
def test_percentiles_are_within_a_thousandth_above_the_exact_value(
        data: list[int], percent: float) -> None:
    hist = LatencyHistogram.of(data)
    got = hist.percentile_us(percent)
    if not data:
        assert got is None
        return
    exact = exact_percentile(data, percent)
    assert got is not None
    assert exact <= got <= exact + exact // 1024 + 1
    assert got <= max(data)


@given(values, values)
def test_merge_equals_one_histogram_over_both(a: list[int], b: list[int]) -> None:
    merged = LatencyHistogram.of(a)
    merged.merge(LatencyHistogram.of(b))
    assert merged == LatencyHistogram.of(a + b)


@given(values)
def test_the_dict_form_round_trips(data: list[int]) -> None:
    hist = LatencyHistogram.of(data)
    assert LatencyHistogram.from_dict(hist.to_dict()) == hist


def test_summary_in_milliseconds() -> None:
    hist = LatencyHistogram.of([1000, 2000, 3000, 4000, 100_000])
    # 3000 us falls in the bucket 3000-3001; the top bucket is capped at the exact maximum.
    assert hist.summary_ms() == {"count": 5, "mean": 22.0, "p50": 3.001, "p90": 100.0,
                                 "p99": 100.0, "p99.9": 100.0, "max": 100.0}
    assert LatencyHistogram().summary_ms() == {"count": 0, "mean": None, "p50": None,
                                               "p90": None, "p99": None, "p99.9": None,
                                               "max": None}
