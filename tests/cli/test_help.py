"""Every command's --help, rendered by the real CLI, reads as help.

No type labels of Typer's own (``<bool>``, ``<list[str]>``, ``<int range>``), no doubled or
braced argument names in usage lines (``[[SOURCE]]``, ``{TRACE}``), a usage line naming the
command, and every option that has a default shows it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from tokenlimit.cli.main import app

runner = CliRunner()
WIDE = {"COLUMNS": "400", "NO_COLOR": "1", "TERM": "dumb"}


def _command_paths(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        if not sub.hidden:
            yield from _command_paths(sub, (*path, name))


PATHS = [*_command_paths(typer.main.get_command(app)), ("loadtest", "merge")]


def _command(path: tuple[str, ...]) -> Any:
    if path == ("loadtest", "merge"):
        from tokenlimit.cli.loadtest_merge import merge_command

        return merge_command()
    command: Any = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]
    return command


def test_every_command_is_listed() -> None:
    assert set(PATHS) >= {
        (), ("validate",), ("simulate",), ("trace",), ("trace", "generate"), ("serve",),
        ("gateway",), ("mock-llm",), ("up",), ("loadtest",), ("loadtest", "merge"),
        ("render",), ("render", "wasmplugin"), ("render", "service"), ("render", "all"),
        ("render", "check")}


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "tokenlimit")
def test_help_is_clean(path: tuple[str, ...]) -> None:
    result = runner.invoke(app, [*path, "--help"], env=WIDE)
    assert result.exit_code == 0, result.output
    text = result.output
    usage = next(line.strip() for line in text.splitlines() if "Usage:" in line)
    assert usage.startswith(" ".join(("Usage: tokenlimit", *path)) + " [OPTIONS]"), usage
    assert not re.findall(r"<[a-z][a-z \[\]|]*>", text)  # <bool>, <str>, <list[str]>...
    assert "[[" not in usage and "]]" not in usage and "{" not in usage
    assert " range" not in text.replace("a range", "")


def _shown_default(option: Any) -> str | None:
    """What ``[default: ...]`` should say, or None where an option has no default."""
    if option.hidden or option.default is None or option.default in ((), [], False):
        return None
    if option.is_flag and option.secondary_opts:
        names = option.opts if option.default else option.secondary_opts
        return names[0].lstrip("-")
    return str(option.default)


@pytest.mark.parametrize("path", [p for p in PATHS if p not in {(), ("trace",), ("render",)}],
                         ids=lambda p: " ".join(p))
def test_every_default_is_shown(path: tuple[str, ...]) -> None:
    text = runner.invoke(app, [*path, "--help"], env=WIDE).output
    flat = " ".join(text.replace("│", " ").split())
    missing = []
    for option in _command(path).params:
        expected = _shown_default(option)
        if (expected is not None and option.name != "help"
                and f"[default: {expected}]" not in flat):
            missing.append(f"{option.opts[0]} (default {expected})")
    assert missing == []


def test_flags_show_no_value_and_the_version_flag_works() -> None:
    text = runner.invoke(app, ["--help"], env=WIDE).output
    version_line = next(line for line in text.splitlines() if "--version" in line)
    assert version_line.split("│")[1].split() == [
        "--version", "Print", "the", "version", "and", "exit."]
    assert runner.invoke(app, ["--version"]).output == "tokenlimit 0.1.0\n"


def test_shell_completion_is_offered() -> None:
    text = runner.invoke(app, ["--help"], env=WIDE).output
    assert "--install-completion" in text and "--show-completion" in text
    shown = runner.invoke(app, ["--show-completion", "bash"], env=WIDE)
    assert shown.exit_code == 0
    assert "complete -o default -F _tokenlimit_completion tokenlimit" in shown.output


def test_bash_completes_command_names() -> None:
    # What the script --show-completion prints asks the command for, as bash would.
    env = {**os.environ, "_TOKENLIMIT_COMPLETE": "complete_bash",
           "COMP_WORDS": "tokenlimit render ch", "COMP_CWORD": "2"}
    installed = str(Path(sys.executable).parent / "tokenlimit")  # the name completion keys on
    done = subprocess.run([installed], env=env, capture_output=True,
                          text=True, timeout=60)
    assert (done.returncode, done.stdout.split()) == (0, ["check"])


def _flag_meanings(flag: str) -> dict[str, str]:
    """For each command that has ``flag`` (visible), the long name it stands for."""
    found = {}
    for path in PATHS:
        for param in _command(path).params:
            if flag in param.opts and not getattr(param, "hidden", False):
                found[" ".join(path)] = next(o for o in param.opts if o.startswith("--"))
    return found


def test_one_meaning_per_flag_across_commands() -> None:
    assert set(_flag_meanings("-k").values()) == {"--key"}
    assert set(_flag_meanings("-k")) == {"validate", "loadtest"}
    assert _flag_meanings("-p") == {"serve": "--port", "gateway": "--port", "mock-llm": "--port"}
    # --host is an address to listen on wherever it shows; render's LLM host is --llm-host.
    assert set(_flag_meanings("--host")) == {"serve", "gateway", "mock-llm", "up"}
    assert set(_flag_meanings("--llm-host")) == {"render wasmplugin", "render all"}


def test_serve_takes_p_for_its_port() -> None:
    result = runner.invoke(app, ["serve", "-p", "0"])
    assert result.exit_code == 2
    assert "Invalid value for --port: must be 1-65535" in result.output


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "tokenlimit")
def test_every_option_help_is_shown_whole(path: tuple[str, ...]) -> None:
    # Rich reads "[...]" in a help string as markup and drops it (a "[default: x]" written
    # by hand vanished): each option's help must appear as written.
    text = runner.invoke(app, [*path, "--help"], env=WIDE).output
    flat = " ".join(text.replace("│", " ").split())
    missing = [param.opts[0] for param in _command(path).params
               if param.help and not getattr(param, "hidden", False)
               and " ".join(param.help.split()) not in flat]
    assert missing == []


@pytest.mark.parametrize(("command", "default"), [
    ("up", "default: samples/rules.json, else the ASM guide's rules built in."),
    ("serve", "default: the RATE_LIMIT_CONFIG environment variable, as the example reads it."),
])
def test_rules_help_says_what_runs_without_it(command: str, default: str) -> None:
    # Both run without --rules (up: the guide's rules; serve: the environment, as the example),
    # yet their --rules help read as validate's, where a source is required.
    text = runner.invoke(app, [command, "--help"], env=WIDE).output
    rules_line = next(line for line in text.splitlines() if line.startswith("│ --rules"))
    assert rules_line.split("│")[1].split("SOURCE", 1)[1].strip() == (
        "Rules: a JSON or YAML file, a Kubernetes manifest that sets RATE_LIMIT_CONFIG, or - "
        f"for stdin; {default}")


@pytest.mark.parametrize("command", ["diff", "tune"])
def test_trace_help_names_every_format_simulate_reads(command: str) -> None:
    # diff and tune read traces with simulate's reader (Parquet and .zst included), yet their
    # help said "JSON Lines or CSV (.gz too)", and later nothing of folders, globs and URLs.
    text = runner.invoke(app, [command, "--help"], env=WIDE).output
    trace_line = next(line for line in text.splitlines() if line.startswith("│ *  --trace"))
    assert trace_line.split("TRACE", 1)[1].split("│")[0].strip() == (
        "Trace: JSON Lines, CSV or Parquet (.gz or .zst too), a path, a URL, or a folder or "
        "glob of files read as one, as simulate reads. [required]")


def test_trace_generate_help_gives_the_units_and_defaults() -> None:
    # RATE's unit (per tier, per second) and what runs without --tier, --duration, --start
    # or --seed were only in docs/simulate.md; a reader guessed requests per user.
    from tokenlimit.sim.generate import DEFAULT_TIERS, TraceSpec

    text = runner.invoke(app, ["trace", "generate", "--help"], env=WIDE).output
    flat = " ".join(text.replace("│", " ").split())
    regular, subscriber = DEFAULT_TIERS
    spec = TraceSpec()
    for shown in (
            "RATE is requests/s for the whole tier; ARRIVAL is poisson (the default), bursty or "
            f"diurnal. Default: the spec's, else {regular.users} {regular.name} keys at "
            f"{regular.rate}/s and {subscriber.users} {subscriber.name} keys, "
            f"{subscriber.arrival}, at {subscriber.rate}/s.",
            f"Seconds of traffic (default: the spec's, else {spec.duration:.0f}).",
            f"Unix time of the start (default: the spec's, else {spec.start:.0f}).",
            f"Random seed, same seed same file (default: the spec's, else {spec.seed})."):
        assert shown in flat


@pytest.mark.parametrize("columns", ["80", "60"])
@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "tokenlimit")
def test_nothing_is_cut_in_a_narrow_terminal(path: tuple[str, ...], columns: str) -> None:
    # Typer's own panel cut option names and help at 80 columns ("--service-time…",
    # "'{{request.headers.user-typ…"): every option's names and help are shown whole.
    text = runner.invoke(app, [*path, "--help"],
                         env={"COLUMNS": columns, "NO_COLOR": "1", "TERM": "dumb"}).output
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= int(columns)
    words = " ".join(text.replace("│", " ").split()).split()
    for param in _command(path).params:
        if getattr(param, "hidden", False):
            continue
        for name in (*param.opts, *param.secondary_opts):
            if name.startswith("--"):
                assert any(word.strip(",") == name for word in words), name
