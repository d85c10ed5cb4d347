"""``loadtest --plot``: the figure's structure, read from matplotlib's objects."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import matplotlib.pyplot as plt
import pytest

from tokenlimit.load.run_plot import build_figure
from tokenlimit.load.run_report import LoadReport, merge_reports
from tokenlimit.load.run_stats import RunStats
from tokenlimit.rules.model import Rule

RULES = [Rule(0, "regular-user.*", 200, 50, 30, 300), Rule(1, "subscriber.*", 1000, 100, 60, 600)]


def _report(started: float, seconds: float, load: str) -> LoadReport:
    """A run from ``started`` for ``seconds``: 20 answers a second, mostly limited."""
    stats = RunStats(started=started, finished=started + seconds)
    n = int(seconds * 20)
    for i in range(n):
        done = started + (i + 0.5) / 20
        key = "regular-user" if i % 4 else "subscriber"
        allowed = i % 7 == 0
        stats.sent += 1
        stats.record(key, "allowed" if allowed else "limited", 200, 0.001 + i * 1e-5, done,
                     30 if allowed else 0)
    return LoadReport(stats, "http://127.0.0.1:8080", "service", load)


@pytest.fixture
def ramp() -> Iterator[Any]:
    # Starts 0.7 s into a wall-clock second, as a ramp does: the first second is partial.
    fig = build_figure(_report(1000.7, 3.6, "open loop, ramp 20/s for 4s"), RULES)
    fig.canvas.draw()
    yield fig
    plt.close(fig)


def test_no_bar_before_the_start_or_past_the_end_and_none_touches_the_frame(ramp: Any) -> None:
    bars = ramp.axes[0].patches
    assert len(bars) == 3 * 5  # allowed, limited, errors stacked over 5 partial/whole seconds
    assert min(b.get_x() for b in bars) == 0.0
    assert max(b.get_x() + b.get_width() for b in bars) == pytest.approx(3.6)
    tops = [b.get_y() + b.get_height() for b in bars]
    assert ramp.axes[0].get_ylim()[1] > max(tops) * 1.1
    assert [round(b.get_width(), 6) for b in bars[:5]] == [0.3, 1.0, 1.0, 1.0, 0.3]


def test_panels_share_the_run_span_and_are_labelled(ramp: Any) -> None:
    axes = ramp.axes
    assert [a.get_xlim() for a in axes] == [(0.0, pytest.approx(3.6 * 1.01))] * 3
    assert [a.get_ylabel() for a in axes] == ["answers", "latency (ms)", "tokens"]
    assert axes[2].get_xlabel() == "seconds since start"
    assert ramp.get_suptitle() == ("Load test: open loop, ramp 20/s for 4s; "
                                   "http://127.0.0.1:8080")


def test_legends_stand_right_of_the_panels(ramp: Any) -> None:
    renderer = ramp.canvas.get_renderer()
    for axis in ramp.axes:
        legend = axis.get_legend()
        assert legend.get_window_extent(renderer).x0 >= axis.get_window_extent(renderer).x1
    assert [t.get_text() for t in ramp.axes[2].get_legend().get_texts()] == [
        "regular-user", "subscriber", "admitted", "rule's budget"]


def test_merged_runs_share_one_time_range_with_a_gap_between_them() -> None:
    first = _report(1000.7, 2.0, "closed loop, 1 users")
    second = _report(1010.2, 3.0, "replay")
    fig = build_figure(merge_reports([first, second]), RULES)
    try:
        span = 1013.2 - 1000.7
        assert [a.get_xlim() for a in fig.axes] == [(0.0, pytest.approx(span * 1.01))] * 3
        xs = fig.axes[1].lines[0].get_xdata()
        assert sum(math.isnan(x) for x in xs) == 1  # the latency line breaks at the gap
        assert len(fig.axes[2].get_legend().get_texts()) == 4  # 2 keys + 2 styles, not 4 + 4
    finally:
        plt.close(fig)


def test_a_run_with_no_answers_says_so() -> None:
    stats = RunStats(started=1000.0, finished=1001.0, sent=5)
    fig = build_figure(LoadReport(stats, "http://127.0.0.1:9", "gateway", "constant 5/s"), RULES)
    try:
        for axis in fig.axes:
            assert axis.get_legend() is None
            assert [t.get_text() for t in axis.texts] == ["no answers in this run"]
    finally:
        plt.close(fig)


def test_answers_are_counted_in_whole_numbers_on_a_short_run() -> None:
    # Found by looking at the plot of `loadtest --replay samples/logs/asm-access.jsonl --from
    # asm`: at most two answers in a second put ticks at 0.25, 0.50, ... answers.
    fig = build_figure(_report(1000.0, 0.1, "open loop, replay of 2 requests at 1x"), RULES)
    try:
        fig.canvas.draw()
        ticks = [t for t in fig.axes[0].get_yticks() if 0 <= t <= fig.axes[0].get_ylim()[1]]
        assert ticks == [0.0, 1.0, 2.0]
    finally:
        plt.close(fig)
