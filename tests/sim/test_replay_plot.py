"""``simulate --plot``: the figure's structure, read from matplotlib's objects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pytest

from tests.conftest import SAMPLES
from tokenlimit.rules import load_rules
from tokenlimit.sim.readers import read_trace
from tokenlimit.sim.replay_plot import replay_figure
from tokenlimit.sim.simulation import simulate_trace

RULES = "samples/rules.json"


def _figure(trace_path: Path, top: int) -> Any:
    rules = load_rules(SAMPLES / "rules.json").rules
    trace = read_trace(trace_path)
    result = simulate_trace(trace, rules, top=top)
    assert result.replay is not None
    keys = [k for k, _, _ in result.summaries[0][1].keys]
    return replay_figure(result.rules, trace, result.replay, keys, rules_origin=RULES, top=top)


@pytest.fixture
def figure() -> Any:
    fig = _figure(SAMPLES / "trace.csv", 10)
    fig.canvas.draw()
    yield fig
    plt.close(fig)


def test_titled_with_trace_and_rules_and_a_note_for_the_keys_left_out(figure: Any) -> None:
    assert figure.get_suptitle() == (
        f"simulate {SAMPLES / 'trace.csv'} with {RULES} (completion tokens charged)\n"
        "4 of the 10 keys --top asks for are drawn (a plot draws at most 4)")


def test_axes_are_labelled_and_share_one_time_range(figure: Any) -> None:
    axes = figure.axes
    assert len(axes) == 8
    assert [a.get_ylabel() for a in axes] == ["balance (tokens)", "tokens per minute"] * 4
    assert [a.get_xlabel() for a in axes[-2:]] == ["minutes since the first request"] * 2
    assert {a.get_xlim() for a in axes} == {(0.0, 60.0)}  # the trace spans 59.9 minutes
    assert axes[1].get_title() == ("regular-user-00005: tokens admitted per minute "
                                   "(rule 0, sustained 100/min)")


def test_one_legend_below_every_panel_none_on_the_data(figure: Any) -> None:
    assert all(a.get_legend() is None for a in figure.axes)
    (legend,) = figure.legends
    assert [t.get_text() for t in legend.get_texts()] == [
        "balance at check", "limited check", "completion tokens admitted in the minute",
        "the rule's sustained rate"]
    renderer = figure.canvas.get_renderer()
    box = legend.get_window_extent(renderer)
    assert all(box.y1 <= a.get_window_extent(renderer).y0 for a in figure.axes)


def test_the_note_says_when_the_trace_has_fewer_keys_than_top(tmp_path: Path) -> None:
    trace = tmp_path / "three.csv"
    trace.write_text("ts,key,completion_tokens\n" + "".join(
        f"{i},{name},10\n" for i, name in enumerate(["regular-user-a", "regular-user-b",
                                                     "subscriber-c"] * 3)))
    fig = _figure(trace, 10)
    try:
        assert fig.get_suptitle().splitlines()[1] == (
            "all 3 keys that a rule matches are drawn (--top 10)")
        assert len(fig.axes) == 6
    finally:
        plt.close(fig)
    fig = _figure(trace, 3)
    try:
        assert "\n" not in fig.get_suptitle()  # all that --top asks for is drawn: no note
    finally:
        plt.close(fig)


def test_a_log_whose_keys_match_no_rule_says_so_instead_of_empty_axes() -> None:
    # Found by looking at `simulate samples/logs/asm-access.jsonl --from asm --plot`: the
    # keys (the authority, llm.example.com) match no rule, yet the chart drew that key's two
    # empty panels under the note "all 1 keys that a rule matches are drawn".
    from tokenlimit.sim.log_fields import field_map

    rules = load_rules(SAMPLES / "rules.json").rules
    trace = read_trace(SAMPLES / "logs" / "asm-access.jsonl", fields=field_map("asm", None))
    result = simulate_trace(trace, rules, top=10)
    assert result.replay is not None
    keys = [k for k, _, _ in result.summaries[0][1].keys]
    fig = replay_figure(result.rules, trace, result.replay, keys, rules_origin=RULES, top=10)
    try:
        assert keys == []
        assert fig.get_suptitle() == (f"simulate {trace.path} with {RULES} (completion tokens "
                                      "charged)")
        (axis,) = fig.axes
        assert not axis.axison
        assert [t.get_text() for t in axis.texts] == [
            "no request's key matches a rule: no balance or admitted tokens to draw"]
        assert fig.legends == []
    finally:
        plt.close(fig)


def test_the_note_for_one_key_is_singular(tmp_path: Path) -> None:
    trace = tmp_path / "one.csv"
    trace.write_text("ts,key,completion_tokens\n0,regular-user-a,10\n1,nobody,10\n")
    fig = _figure(trace, 10)
    try:
        assert fig.get_suptitle().splitlines()[1] == (
            "the only key that a rule matches is drawn (--top 10)")
        assert len(fig.axes) == 2
    finally:
        plt.close(fig)


def test_a_sweep_chart_names_its_trace_and_rules(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # It said "sweep: the same trace under each setting", naming neither.
    from typer.testing import CliRunner

    from tokenlimit.cli.main import app
    from tokenlimit.sim import replay_plot

    drawn: list[Any] = []
    monkeypatch.setattr(replay_plot, "save_png", lambda figure, path: drawn.append(figure))
    trace, rules = str(SAMPLES / "trace.jsonl"), str(SAMPLES / "rules.json")
    result = CliRunner().invoke(app, ["simulate", trace, "-r", rules, "--set",
                                      "rules[0].max_tokens=100,400", "--plot",
                                      str(tmp_path / "sweep.png")])
    assert result.exit_code == 0, result.output
    [figure] = drawn
    assert figure.get_suptitle() == f"simulate {trace} with {rules}: each --set setting"
    assert [t.get_text() for t in figure.axes[0].get_yticklabels()] == [
        "rules[0].max_tokens=100", "rules[0].max_tokens=400"]


def test_the_time_axis_is_in_a_unit_the_trace_s_length_reads_in(tmp_path: Path) -> None:
    """A ten-hour trace runs in hours, a bar an hour at its mean per minute (in minutes, a
    month's 43,200 bars were too thin to see against a y-axis scaled for them); a trace of
    seconds runs in seconds (it was a sliver at the start of one minute)."""
    trace = tmp_path / "hours.csv"
    trace.write_text("ts,key,completion_tokens\n0,regular-user-a,600\n36000,regular-user-a,600\n")
    fig = _figure(trace, 1)
    try:
        left, right = fig.axes
        assert [a.get_xlabel() for a in (left, right)] == ["hours since the first request"] * 2
        assert {a.get_xlim() for a in (left, right)} == {(0.0, 11.0)}
        assert right.get_ylabel() == "tokens per minute, hourly mean"
        bars = right.patches
        assert [b.get_height() for b in bars] == [10.0] + [0.0] * 9 + [10.0]
        assert {b.get_width() for b in bars} == {1.0}
        assert [t.get_text() for t in fig.legends[0].get_texts()][2] == (
            "completion tokens admitted per minute, mean over each hour")
    finally:
        plt.close(fig)
    trace.write_text("ts,key,completion_tokens\n0,regular-user-a,6\n1.5,regular-user-a,6\n")
    fig = _figure(trace, 1)
    try:
        assert {a.get_xlabel() for a in fig.axes} == {"seconds since the first request"}
        assert {a.get_xlim() for a in fig.axes} == {(0.0, 2.0)}
        assert [b.get_height() for b in fig.axes[1].patches] == [12.0]
        assert fig.axes[1].get_ylabel() == "tokens per minute"
    finally:
        plt.close(fig)


def test_a_long_key_is_cut_in_the_middle_in_its_panels_titles(tmp_path: Path) -> None:
    """A 150-character key's title ran across the next panel and hid its title."""
    key = "regular-user-" + "x" * 150 + "-00005"
    trace = tmp_path / "long.csv"
    trace.write_text(f"ts,key,completion_tokens\n0,{key},10\n")
    fig = _figure(trace, 1)
    try:
        assert [a.get_title() for a in fig.axes] == [
            "regular-user-xxx…x-00005: balance",
            "regular-user-xxx…x-00005: tokens admitted per minute (rule 0, sustained 100/min)"]
    finally:
        plt.close(fig)
