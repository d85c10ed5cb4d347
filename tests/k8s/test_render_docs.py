"""docs/render.md's `render --check` example runs on a file the repository ships; its output is
compared by tests/test_docs.py, its exit status here."""

from __future__ import annotations

import sys

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


def test_render_check_example_says_what_it_prints_without_the_k8s_extra(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The README installs no extras, so a reader ran the example and got other findings than
    # the page showed (a TL405 warning, 3 errors not 5), with no word on why.
    monkeypatch.setitem(sys.modules, "kubernetes_validate", None)  # import fails, as uninstalled
    monkeypatch.chdir(REPO)
    result = CliRunner().invoke(app, COMMAND.split()[1:], env={"COLUMNS": "400"})
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0].startswith("samples/k8s-deploy.yaml:4:1: warning TL405 core kinds were not "
                               "checked")
    assert " TL404 " not in result.output
    after = " ".join(PAGE.split(f"$ {COMMAND}\n")[1].split("```", 2)[1].split())
    assert after.startswith(
        "It exits with status 1: there are errors. The two TL404 findings come from the `k8s` "
        "extra (`pip install 'tokenlimit[k8s]'`, below); without it, as after the README's "
        "`pip install .`, a TL405 warning takes their place and the last line is "
        f"`{lines[-1]}`.")
