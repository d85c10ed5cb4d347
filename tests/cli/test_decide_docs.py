"""docs/decide.md's diff and tune examples are what the commands really print."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import REPO
from tokenlimit.cli.main import app

runner = CliRunner()
SECTION = (REPO / "docs" / "decide.md").read_text(encoding="utf-8")


def _shown(command: str) -> list[str]:
    block = SECTION[SECTION.index(command):]
    block = block[block.index("\n", len(command)) + 1:block.index("```")]
    return block.splitlines()


def _printed(text: str) -> list[str]:
    return [line.rstrip() for line in text.splitlines()]


def test_the_diff_example(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    command = ("$ tokenlimit diff samples/rules.json samples/rules-proposed.json --trace "
               "samples/trace.jsonl --top 3")
    result = runner.invoke(app, command.split()[2:])
    assert result.exit_code == 0, result.output
    assert _printed(result.stdout) == _shown(command)


def test_the_tune_example(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(REPO)
    command = "    --plot tradeoff.png -o tuned.json"
    result = runner.invoke(app, [
        "tune", "--trace", "samples/trace.jsonl", "--rules", "samples/rules.json", "--rule",
        "subscriber.*", "--goal", "subscriber.*: limited <= 5%", "--goal",
        "subscriber.*: key_tokens_per_hour <= 9700", "--plot", str(tmp_path / "tradeoff.png"),
        "-o", str(tmp_path / "tuned.json")])
    assert result.exit_code == 0, result.output
    printed = _printed(result.stdout.replace(str(tmp_path / "tuned.json"), "tuned.json"))
    assert printed == _shown(command)
