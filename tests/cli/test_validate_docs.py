"""docs/validate.md tells the truth: real output, every code, the hook."""

from __future__ import annotations

import re

import pytest
import yaml
from typer.testing import CliRunner

from tests.conftest import REPO
from tokenlimit.cli.main import app
from tokenlimit.rules.codes import CODES

SECTION = (REPO / "docs" / "validate.md").read_text(encoding="utf-8")


def test_readme_example_is_the_real_output(monkeypatch: pytest.MonkeyPatch) -> None:
    command = "tokenlimit validate samples/rules.json --key regular-user-7 --key guest"
    block = SECTION.split(f"$ {command}\n")[1].split("```")[0]
    monkeypatch.chdir(REPO)
    result = CliRunner().invoke(app, command.split()[1:], env={"NO_COLOR": "1"})
    assert result.exit_code == 0
    assert result.output == block


def test_readme_lists_every_code_with_its_severity() -> None:
    rows = dict(re.findall(r"^\| (TL\d{3}) \| (\w+) \|", SECTION, flags=re.MULTILINE))
    assert rows == {code.code: code.severity.value for code in CODES}


def test_pre_commit_hook_runs_the_validate_command() -> None:
    hooks = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))
    assert [hook["id"] for hook in hooks] == ["tokenlimit-validate"]
    hook = hooks[0]
    assert (hook["entry"], hook["language"], hook["pass_filenames"]) == (
        "tokenlimit validate", "python", False)
    result = CliRunner().invoke(app, [*hook["entry"].split()[1:], str(REPO / "samples/rules.json"),
                                      "--strict"])
    assert result.exit_code == 0
