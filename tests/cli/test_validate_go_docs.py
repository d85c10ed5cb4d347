"""docs/validate.md's "Exactly what Go 1.22 reads" examples are what validate really prints."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import REPO
from tokenlimit.cli.main import app

PAGE = (REPO / "docs" / "validate.md").read_text(encoding="utf-8")
SECTION = PAGE.split("## Exactly what Go 1.22 reads")[1].split("\n## ")[0]
BLOCKS = [block.split("```")[0] for block in SECTION.split("```console\n")[1:]]


def _outputs() -> list[tuple[str, str]]:
    """(command line, printed output) for each ``$`` line of the section's example blocks."""
    parts = [part for block in BLOCKS for part in block.split("$ ")[1:]]
    return [(part.split("\n", 1)[0], part.split("\n", 1)[1]) for part in parts]


def test_the_example_block_has_both_commands() -> None:
    assert [command.split()[0] for command, _ in _outputs()] == ["tokenlimit", "printf"]


def test_the_github_example_is_the_real_output() -> None:
    command, printed = _outputs()[0]
    result = CliRunner().invoke(app, shlex.split(command)[1:])
    assert result.exit_code == 1
    assert result.output == printed


def test_the_bom_example_is_the_real_output(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    command, printed = _outputs()[1]
    assert command == "printf '\\xef\\xbb\\xbf[]' > bom.json && tokenlimit validate bom.json"
    (tmp_path / "bom.json").write_bytes(b"\xef\xbb\xbf[]")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["validate", "bom.json"], env={"NO_COLOR": "1"})
    assert result.exit_code == 1
    assert result.output == printed
