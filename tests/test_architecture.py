"""Structure the style guide promises: a pure core, a sorted public API, documented commands."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import tokenlimit
from tests.conftest import REPO

FORBIDDEN_IN_CORE = {"typer", "rich", "httpx", "redis", "click"}


def _imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_rules_and_sim_import_no_terminal_http_or_redis_library() -> None:
    offenders = []
    for package in ("rules", "sim"):
        for path in sorted((REPO / "tokenlimit" / package).rglob("*.py")):
            bad = _imported_top_levels(path) & FORBIDDEN_IN_CORE
            if bad:
                offenders.append(f"{path.relative_to(REPO)}: {sorted(bad)}")
    assert offenders == []


def test_the_check_walks_real_files() -> None:
    # The walk above must see the core's modules, or it proves nothing.
    assert "re2" in _imported_top_levels(REPO / "tokenlimit" / "rules" / "gomatch.py")


def test_public_api_is_sorted_and_complete() -> None:
    assert list(tokenlimit.__all__) == sorted(tokenlimit.__all__)
    for name in tokenlimit.__all__:
        assert hasattr(tokenlimit, name), name


def test_every_command_is_in_the_readme() -> None:
    from typer.main import get_command

    from tokenlimit.cli.main import app

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    group = get_command(app)
    names = sorted(group.commands)  # type: ignore[attr-defined]
    assert names, "no commands registered"
    missing = [n for n in names if not re.search(rf"tokenlimit {re.escape(n)}\b", readme)]
    assert missing == []

