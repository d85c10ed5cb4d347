"""docs/render.md's `render --check` example runs on a file the repository ships; its output is
compared by tests/test_docs.py, its exit status here."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from tests.conftest import REPO
from tokenlimit.cli.main import app

PAGE = (REPO / "docs" / "render.md").read_text(encoding="utf-8")
COMMAND = "tokenlimit render --check samples/k8s-deploy.yaml"


def test_render_check_example_runs_on_a_shipped_file_and_fails_as_the_page_says(
        monkeypatch: pytest.MonkeyPatch) -> None:
    block, after = PAGE.split(f"$ {COMMAND}\n")[1].split("```", 1)
    assert after.lstrip().startswith("It exits with status 1")
    monkeypatch.chdir(REPO)
    result = CliRunner().invoke(app, COMMAND.split()[1:], env={"COLUMNS": "400"})
    assert (result.output, result.exit_code) == (block, 1)
