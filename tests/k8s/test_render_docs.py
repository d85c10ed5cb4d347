"""The README's `render --check` example runs on a file the repository ships, and prints what
the README shows."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from tests.conftest import REPO
from tokenlimit.cli.main import app

README = (REPO / "README.md").read_text(encoding="utf-8")
COMMAND = "tokenlimit render --check samples/k8s-deploy.yaml"


def test_readme_render_check_example_is_the_real_output(monkeypatch: pytest.MonkeyPatch) -> None:
    block = README.split(f"$ {COMMAND}\n")[1].split("```")[0]
    shown, status = block.split("$ echo $?\n")
    monkeypatch.chdir(REPO)
    result = CliRunner().invoke(app, COMMAND.split()[1:], env={"COLUMNS": "400"})
    assert (result.output, str(result.exit_code)) == (shown, status.strip())
    assert (REPO / "samples" / "k8s-deploy.yaml").is_file()
