"""The documentation tells the truth: every command and option is documented on its page, and
every example that a test can run here is run, its output compared with what the page shows.

An example that cannot run in a test (it needs a live service, a cluster or another program)
is preceded by ``<!-- not run: <reason> -->``; every other ``console`` block runs.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from tests.conftest import REPO, RedisServer
from tokenlimit.cli.main import app

DOCS = REPO / "docs"
# The reference page of each command.
PAGES = {
    "validate": "validate.md",
    "simulate": "simulate.md",
    "trace": "simulate.md",
    "diff": "decide.md",
    "tune": "decide.md",
    "inspect": "decide.md",
    "serve": "serve.md",
    "up": "gateway.md",
    "gateway": "gateway.md",
    "mock-llm": "gateway.md",
    "loadtest": "loadtest.md",
    "render": "render.md",
}
NOT_RUN = re.compile(r"<!-- not run: [^>]+ -->\s*$")


def _commands() -> dict[str, Any]:
    """Every command and subcommand by name (Typer may bring its own copy of Click, so the
    groups are recognised by what they have, not by their class)."""
    group: Any = get_command(app)
    found: dict[str, Any] = {}
    for name, command in group.commands.items():
        found[name] = command
        for sub, subcommand in getattr(command, "commands", {}).items():
            found[f"{name} {sub}"] = subcommand
    return found


def test_every_page_is_linked_from_the_readme() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for page in sorted(DOCS.glob("*.md")):
        assert f"(docs/{page.name})" in readme, page.name


def test_every_command_and_option_is_documented_on_its_page() -> None:
    missing = []
    for name, command in sorted(_commands().items()):
        top = name.split()[0]
        assert top in PAGES, f"map the command {top!r} to its page in PAGES"
        page = (DOCS / PAGES[top]).read_text(encoding="utf-8")
        if f"tokenlimit {name}" not in page:
            missing.append(f"{PAGES[top]}: tokenlimit {name}")
        for param in command.params:
            if param.param_type_name != "option" or param.hidden:
                continue
            spellings = [o for o in param.opts if o not in (
                "--help", "--install-completion", "--show-completion")]
            if spellings and not any(re.search(rf"(?<![\w-]){re.escape(o)}(?![\w-])", page)
                                     for o in spellings):
                missing.append(f"{PAGES[top]}: tokenlimit {name} {max(spellings, key=len)}")
    assert missing == []


def _examples() -> list[tuple[str, int, list[tuple[str, str]]]]:
    """(page, line, [(command, shown output)]) of every console block that runs."""
    found = []
    for page in sorted(DOCS.glob("*.md")):
        lines = page.read_text(encoding="utf-8").splitlines()
        i = 0
        while i < len(lines):
            if lines[i].strip() != "```console":
                i += 1
                continue
            start = i
            end = lines.index("```", i + 1)
            if not (start > 0 and NOT_RUN.search(lines[start - 1])):
                steps: list[tuple[str, str]] = []
                continued = False
                for line in lines[start + 1:end]:
                    if line.startswith("$ ") or continued:
                        text = line[2:] if line.startswith("$ ") and not continued else line
                        if continued:
                            steps[-1] = (steps[-1][0][:-1] + " " + text.strip(), "")
                        else:
                            steps.append((text, ""))
                        continued = line.endswith("\\")
                    elif steps:
                        steps[-1] = (steps[-1][0], steps[-1][1] + line + "\n")
                found.append((page.name, start + 1, steps))
            i = end + 1
    return found


EXAMPLES = _examples()


def test_examples_are_found() -> None:
    assert len(EXAMPLES) >= 3


@pytest.mark.parametrize(("page", "line", "steps"), EXAMPLES,
                         ids=[f"{p}:{n}" for p, n, _ in EXAMPLES])
def test_example_is_the_real_output(page: str, line: int, steps: list[tuple[str, str]],
                                    monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Run where the examples run: beside samples/, in a folder the outputs may be written to.
    (tmp_path / "samples").symlink_to(REPO / "samples")
    monkeypatch.chdir(tmp_path)
    for command, shown in steps:
        args = shlex.split(command)
        assert args[0] == "tokenlimit", (
            f"{page}:{line}: only tokenlimit commands run here; mark the block "
            "<!-- not run: reason -->")
        result = CliRunner().invoke(app, args[1:], env={"NO_COLOR": "1", "COLUMNS": "100"})
        output = "".join(line.rstrip() + "\n" for line in result.output.splitlines())
        assert output == shown, f"{page}:{line}: {command}"


def _tour_lines() -> list[str]:
    """The tokenlimit commands of the README's tour, without what they are piped into."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    tour = readme[readme.index("## A tour"):]
    block = tour[tour.index("```bash\n") + 8:]
    block = block[:block.index("```")]
    return [line.split(" | ")[0] for line in block.splitlines()
            if line.startswith("tokenlimit ")]


def test_every_command_of_the_readme_tour_parses() -> None:
    # The tour's commands start servers or need a cluster, so they are parsed, not run: a
    # renamed or removed option fails here.
    commands = _commands()
    lines = _tour_lines()
    assert len(lines) >= 9
    for line in lines:
        args = shlex.split(line)[1:]
        name = args[0]
        if len(args) > 1 and f"{name} {args[1]}" in commands:
            name = f"{name} {args.pop(1)}"
        command = commands[name]
        context = command.make_context(f"tokenlimit {name}", args[1:])
        assert context.params, line


@pytest.mark.redis
def test_the_readme_tour_inspect_command_runs(redis_server: RedisServer,
                                              monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    # Parsing alone let a tour line without the rules inspect needs pass: it was a usage
    # error (exit 2) for every reader. Run it, against an empty redis-server of its own.
    (line,) = [line for line in _tour_lines() if line.startswith("tokenlimit inspect ")]
    args = shlex.split(line.replace("redis://127.0.0.1:6379", redis_server.url))[1:]
    (tmp_path / "samples").symlink_to(REPO / "samples")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, [*args, "--format", "json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert (shown["redis"], shown["keys"]) == (redis_server.url, [])


def test_the_readme_tour_loadtest_command_agrees_with_the_rules_when_run_again(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Conformance assumes keys the service has no state for; run twice against one service
    # (or after up and the guide's curls), the tour's line reported "FINDING under-admission"
    # of a correct service until it had --unique-keys.
    from tokenlimit.rules import load_rules
    from tokenlimit.service import running_service

    (line,) = [line for line in _tour_lines() if line.startswith("tokenlimit loadtest ")]
    rules = load_rules(REPO / "samples" / "rules.json").rules
    (tmp_path / "samples").symlink_to(REPO / "samples")
    monkeypatch.chdir(tmp_path)
    with running_service(rules, port=0) as service:
        args = shlex.split(line.replace("http://127.0.0.1:8080", service.url)
                           .replace("--duration 10", "--duration 1"))[1:]
        for _ in range(2):
            result = CliRunner().invoke(app, [*args, "--strict", "--format", "json"])
            assert result.exit_code == 0, result.output
            conformance = json.loads(result.stdout)["conformance"]
            assert (conformance["over_admitted"], conformance["under_admitted"]) == (0, 0)
