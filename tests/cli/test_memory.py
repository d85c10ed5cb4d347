"""A trace that will not fit in memory: warned before reading, and running out of memory is one
line naming --chunk-rows, never a traceback (the real CLI, in process)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.conftest import SAMPLES
from tokenlimit.cli.main import app

runner = CliRunner()
RULES = str(SAMPLES / "rules.json")


def _trace(tmp_path: Path, rows: int) -> str:
    path = tmp_path / "t.csv"
    path.write_text("ts,key,completion_tokens\n" + "".join(
        f"{i / 100},regular-user-{i % 7},20\n" for i in range(rows)))
    return str(path)


def test_a_trace_larger_than_the_memory_left_is_warned_of_and_still_replayed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trace = _trace(tmp_path, 20_000)  # under a MiB: its lines are counted (with the header)
    monkeypatch.setattr("tokenlimit.sim.trace_size.available_memory", lambda root="/": 2**20)
    result = runner.invoke(app, ["simulate", trace, "-r", RULES, "--format", "json"])
    assert result.exit_code == 0
    assert result.stderr == (
        f"warning: {trace}: about 20,001 requests need about 3 MiB of memory to replay "
        "whole, and 1 MiB is available: --chunk-rows 2000000 streams them in batches "
        "instead\n")
    assert json.loads(result.stdout)["totals"]["requests"] == 20_000


def test_a_trace_that_fits_gets_no_warning(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    trace = _trace(tmp_path, 200)
    monkeypatch.setattr("tokenlimit.sim.trace_size.available_memory", lambda root="/": 2**30)
    result = runner.invoke(app, ["simulate", trace, "-r", RULES, "--format", "json"])
    assert (result.exit_code, result.stderr) == (0, "")


def _no_memory(*args: Any, **kwargs: Any) -> Any:
    raise MemoryError("Unable to allocate 74.5 GiB for an array")


@pytest.mark.parametrize("stage", ["tokenlimit.sim.simulation.simulate_trace",
                                   "tokenlimit.sim.writers.write_decisions"])
def test_running_out_of_memory_is_one_line_naming_chunk_rows(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stage: str) -> None:
    trace = _trace(tmp_path, 50)
    monkeypatch.setattr(stage, _no_memory)
    decisions = tmp_path / "d.csv"
    result = runner.invoke(app, ["simulate", trace, "-r", RULES, "--decisions",
                                 str(decisions)])
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == (
        f"error: {trace}: out of memory reading and replaying the whole trace: --chunk-rows "
        "2000000 streams it in batches instead\n")
    assert not decisions.exists()


def test_any_command_out_of_memory_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tokenlimit.cli.validate.validate_rules", _no_memory)
    result = runner.invoke(app, ["validate", RULES])
    assert (result.exit_code, result.stdout, result.stderr) == (1, "", "error: out of memory\n")


def test_converting_a_log_larger_than_the_memory_left_is_warned_of_too(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trace = _trace(tmp_path, 20_000)
    monkeypatch.setattr("tokenlimit.sim.trace_size.available_memory", lambda root="/": 2**20)
    out = tmp_path / "t.parquet"
    result = runner.invoke(app, ["trace", "convert", trace, "-o", str(out)])
    assert result.exit_code == 0
    assert result.stderr == (
        f"warning: {trace}: about 20,001 requests need about 3 MiB of memory to convert "
        "whole, and 1 MiB is available: --chunk-rows 2000000 streams them in batches "
        f"instead\nwrote 20,000 requests for 7 keys to {out}\n")
    streamed = runner.invoke(app, ["trace", "convert", trace, "-o", str(out), "--chunk-rows",
                                   "5000"])
    assert (streamed.exit_code, streamed.stderr) == (
        0, f"wrote 20,000 requests for 7 keys to {out}\n")


@pytest.mark.parametrize("command", [
    ["diff", RULES, str(SAMPLES / "rules-proposed.json"), "--format", "json", "--trace"],
    ["tune", "--rules", RULES, "--rule", "0", "--goal", "limited <= 100%", "--format", "json",
     "--trace"]])
def test_diff_and_tune_warn_of_a_trace_larger_than_the_memory_left(
        command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """diff and tune read the whole trace (they do not stream): the warning says so instead
    of naming --chunk-rows, which they do not have, and they go on."""
    trace = _trace(tmp_path, 20_000)
    monkeypatch.setattr("tokenlimit.sim.trace_size.available_memory", lambda root="/": 2**20)
    result = runner.invoke(app, [*command, trace])
    assert result.exit_code == 0, result.output
    doing = command[0]
    assert result.stderr.startswith(
        f"warning: {trace}: about 20,001 requests need about 3 MiB of memory to {doing} "
        f"whole, and 1 MiB is available: {doing} reads the whole trace: give it a shorter "
        "stretch (a day's files of a folder, say)\n")
    assert json.loads(result.stdout)
