"""What ``tokenlimit simulate`` shows a user: the text report's cells, the charts' labels."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.conftest import SAMPLES
from tokenlimit.cli.main import app

runner = CliRunner()


def _run(*args: str) -> Any:
    return runner.invoke(app, list(args))


def _rules(tmp_path: Path, regex: str) -> str:
    path = tmp_path / "rules.json"
    path.write_text(json.dumps([{"rate_limit_key_regex": regex, "max_tokens": 200,
                                 "tokens_per_fill": 50, "fill_interval_second": 30,
                                 "redis_expired_seconds": 300}]))
    return str(path)


def test_keys_regexes_and_paths_are_shown_as_written_not_as_markup(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keys come from clients' headers and regexes hold classes: before, ``user[/]`` was a
    MarkupError traceback, ``[b]vip[/b]`` read ``vip`` and ``^[a-z]+-user`` read ``^+-user``."""
    monkeypatch.chdir(tmp_path)
    trace = Path("[b]t.jsonl")
    keys = ["user[/]", "user[/]", "[b]vip[/b]-user", "[red]x-user"]
    trace.write_text("".join(json.dumps({"ts": 1700000000 + i, "key": key,
                                         "completion_tokens": 100}) + "\n"
                             for i, key in enumerate(keys)))
    rules = _rules(tmp_path, r"^[a-z]+.*|\[")
    result = _run("simulate", str(trace), "-r", rules)
    assert result.exit_code == 0, result.output
    cells = [cell.strip() for line in result.stdout.splitlines() for cell in line.split("│")]
    for shown in ("user[/]", "[b]vip[/b]-user", "[red]x-user", r"^[a-z]+.*|\[", str(trace)):
        assert shown in cells, shown
    sweep = _run("simulate", str(trace), "-r", rules, "--set", "rules[*].max_tokens=100")
    assert sweep.exit_code == 0, sweep.output
    assert "rules[*].max_tokens=100" in sweep.stdout


def test_a_chart_is_named_png(tmp_path: Path) -> None:
    """--plot writes PNG bytes: before, ``--plot chart.pdf`` wrote a PNG named .pdf (exit 0),
    which PDF viewers refuse."""
    for name in ("chart.pdf", "chart.svg", "chart"):
        result = _run("simulate", str(SAMPLES / "trace.csv"), "-r", str(SAMPLES / "rules.json"),
                      "--plot", str(tmp_path / name))
        assert result.exit_code == 2, result.output
        assert "the chart is a PNG image: name the file .png" in result.output
        assert not (tmp_path / name).exists()
    result = _run("simulate", str(SAMPLES / "trace.csv"), "-r", str(SAMPLES / "rules.json"),
                  "--plot", str(tmp_path / "chart.PNG"), "-f", "json")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "chart.PNG").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_charts_say_which_limiter_decided(monkeypatch: pytest.MonkeyPatch,
                                          tmp_path: Path) -> None:
    """A ``--semantics gcra`` chart was titled as the service's own (``asm``) one, and a
    sweep's chart did not say which tokens it counted."""
    import tokenlimit.sim.replay_plot as replay_plot

    saved: list[Any] = []
    monkeypatch.setattr(replay_plot, "save_png", lambda figure, path: saved.append(figure))
    trace, rules = str(SAMPLES / "trace.csv"), str(SAMPLES / "rules.json")
    for extra in ((), ("--set", "rules[0].max_tokens=100,200")):
        result = _run("simulate", trace, "-r", rules, "--semantics", "gcra", "--charge", "total",
                      "--plot", str(tmp_path / "c.png"), "-f", "json", *extra)
        assert result.exit_code == 0, result.output
    replay, sweep = saved
    assert replay.get_suptitle().splitlines()[0] == (
        f"simulate {trace} with {rules} (--semantics gcra, total tokens charged)")
    assert sweep.get_suptitle() == (
        f"simulate {trace} with {rules} (--semantics gcra): each --set setting")
    assert [a.get_xlabel() for a in sweep.axes] == ["limited %", "total tokens admitted"]
    result = _run("simulate", trace, "-r", rules, "--plot", str(tmp_path / "c.png"), "-f", "json")
    assert result.exit_code == 0, result.output
    assert saved[-1].get_suptitle().splitlines()[0] == (
        f"simulate {trace} with {rules} (completion tokens charged)")


def test_the_spend_line_reads_in_plain_dollars() -> None:
    """The line read ``$0.00 (508,301 tokens at $1e-07/1K)`` and ``... at
    $1000000000.0/1K``."""
    trace, rules = str(SAMPLES / "trace.jsonl"), str(SAMPLES / "rules.json")
    lines = []
    for price in ("0.0000001", "1e9", "0.015"):
        result = _run("simulate", trace, "-r", rules, "--price", price)
        assert result.exit_code == 0, result.output
        lines.append(result.stdout.splitlines()[-1])
    assert lines == [
        "estimated spend of admitted requests: $0.0000508 (508,301 tokens at $0.0000001/1K)",
        "estimated spend of admitted requests: $508,301,000,000.00 (508,301 tokens at "
        "$1,000,000,000/1K)",
        "estimated spend of admitted requests: $7.62 (508,301 tokens at $0.015/1K)"]


def test_help_says_what_decisions_set_and_top_accept() -> None:
    """The help left out compressed decisions, rules[*] and combinations, and --plot's four."""
    result = _run("simulate", "--help")
    assert result.exit_code == 0
    text = " ".join(line.strip("│ ") for line in result.stdout.splitlines())
    text = " ".join(text.split())
    for said in ("JSON Lines (.gz or .zst after .csv or .jsonl compresses)",
                 "(rules[*]: every rule; repeatable: every combination)",
                 "Keys shown in the per-key table (--plot draws the first 4)"):
        assert said in text, said


def test_a_sweep_warns_and_counts_recorded_429_as_a_replay_does() -> None:
    """A sweep of a log whose keys no rule matches showed 0.0% limited for every setting with
    no warning, and neither its table nor its JSON said a request was answered 429."""
    kong = str(SAMPLES / "logs" / "kong-ai-audit.jsonl")
    rules = str(SAMPLES / "rules.json")
    result = _run("simulate", kong, "--from", "kong", "-r", rules,
                  "--set", "rules[0].max_tokens=10,100")
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith("warning: no request has a key that a rule matches "
                                    "(keys such as 'alice', 'bob')")
    assert result.stdout.splitlines()[-1] == (
        "1 request was answered 429 when recorded: replayed as demand, its usage imputed")
    result = _run("simulate", kong, "--from", "kong", "-r", rules, "-f", "json",
                  "--set", "rules[0].max_tokens=10,100")
    report = json.loads(result.stdout)
    assert (report["trace"], report["recorded_429"]) == (kong, 1)
    assert [s["setting"] for s in report["sweep"]] == [
        "rules[0].max_tokens=10", "rules[0].max_tokens=100"]


def test_a_sped_up_chart_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """At --speed 100 the hour-long sample was drawn as 36 seconds, titled as at its own pace."""
    import tokenlimit.sim.replay_plot as replay_plot

    saved: list[Any] = []
    monkeypatch.setattr(replay_plot, "save_png", lambda figure, path: saved.append(figure))
    trace, rules = str(SAMPLES / "trace.csv"), str(SAMPLES / "rules.json")
    for extra in ((), ("--chunk-rows", "500"), ("--set", "rules[0].max_tokens=100,200")):
        result = _run("simulate", trace, "-r", rules, "--speed", "100", "-f", "json",
                      "--plot", str(tmp_path / "c.png"), *extra)
        assert result.exit_code == 0, result.output
    whole, streamed, sweep = (figure.get_suptitle().splitlines()[0] for figure in saved)
    assert whole == streamed == (
        f"simulate {trace} with {rules} (--speed 100, completion tokens charged)")
    assert sweep == f"simulate {trace} with {rules} (--speed 100): each --set setting"
    assert saved[0].axes[-1].get_xlabel() == "seconds since the first request"


def test_a_chart_of_no_top_keys_is_a_usage_error(tmp_path: Path) -> None:
    """--top 0 --plot drew "no request's key matches a rule" over a trace whose every request
    matched one."""
    trace, rules = str(SAMPLES / "trace.csv"), str(SAMPLES / "rules.json")
    for extra in ((), ("--chunk-rows", "500")):
        result = _run("simulate", trace, "-r", rules, "--top", "0",
                      "--plot", str(tmp_path / "c.png"), *extra)
        assert result.exit_code == 2, result.output
        assert "the chart draws --top keys: give 1 or more" in result.output
        assert not (tmp_path / "c.png").exists()
    sweep = _run("simulate", trace, "-r", rules, "--top", "0", "--plot", str(tmp_path / "s.png"),
                 "--set", "rules[0].max_tokens=100,200", "-f", "json")
    assert sweep.exit_code == 0, sweep.output  # a sweep's chart draws no keys
