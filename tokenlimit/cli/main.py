"""The ``tokenlimit`` command: one Typer app; each command lives in its own module.

Only this package imports typer and rich. Every ``TokenlimitError`` becomes one line on
stderr and exit status 1; usage errors exit 2 (click's convention); no traceback reaches a user.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
from typing import Any

import typer
from typer.core import TyperCommand

from tokenlimit import __version__
from tokenlimit.cli import batch
from tokenlimit.cli.help_layout import TidyGroup, TokenlimitCommand, reflow_help
from tokenlimit.errors import TokenlimitError


class TokenlimitGroup(TidyGroup):
    """Turns tokenlimit's own errors (and running out of memory) into one clear stderr line
    and exit status 1."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except TokenlimitError as exc:
            message = " ".join(str(exc).split())
            typer.echo(f"error: {message}", err=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None
        except MemoryError:
            typer.echo("error: out of memory", err=True)
            raise typer.Exit(1) from None


app = typer.Typer(
    cls=TokenlimitGroup,
    name="tokenlimit",
    help="Author, test and operate LLM token rate-limiting rules (ASM / Istio).",
    no_args_is_help=True,
    # --install-completion and --show-completion: Typer's shell completion (bash, zsh, fish,
    # PowerShell).
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tokenlimit {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Author, test and operate LLM token rate-limiting rules (ASM / Istio)."""


def _register() -> None:
    # Each command module adds itself to ``app``; --help lists the commands in this order, then
    # the groups of subcommands (trace, render) in theirs.
    from tokenlimit.cli import (
        diff,
        gateway,
        loadtest_merge,
        mock_llm,
        render,
        simulate,
        trace,
        tune,
        up,
        validate,
    )
    from tokenlimit.cli import inspect as inspect_command
    from tokenlimit.cli import serve as serve_command

    validate.register(app)
    simulate.register(app)
    diff.register(app)
    tune.register(app)
    trace.register(app)
    serve_command.register(app)
    inspect_command.register(app)
    gateway.register(app)
    mock_llm.register(app)
    up.register(app)
    loadtest_merge.register(app)  # loadtest, with its merge subcommand
    render.register(app)


def _reflow_commands(typer_app: typer.Typer) -> None:
    # Also gives every command tokenlimit's help layout (tokenlimit.cli.help_layout).
    for info in typer_app.registered_commands:
        if info.help is None and info.callback is not None and info.callback.__doc__:
            info.help = reflow_help(info.callback.__doc__)
        if info.cls in (None, TyperCommand):
            info.cls = TokenlimitCommand
    for group in typer_app.registered_groups:
        if isinstance(group.typer_instance, typer.Typer):
            _reflow_commands(group.typer_instance)


_register()
_reflow_commands(app)


def _build_only_the_command_that_runs(argv: list[str]) -> None:
    """Typer builds every command (each one's options from its signature) before it parses
    the command line: 0.035 s of each start. When the first word names a command or group,
    only that one is built; nothing of the others shows in what it prints (its help and
    errors name only itself). Shell completion, which lists the others, builds them all."""
    if not argv or any(name.endswith("_COMPLETE") for name in os.environ):
        return
    commands = [info for info in app.registered_commands
                if info.name == argv[0]]
    groups = [info for info in app.registered_groups if info.name == argv[0]]
    if commands or groups:
        app.registered_commands, app.registered_groups = commands, groups


def run() -> None:
    """Console-script entry point."""
    # tokenlimit.cli let Ctrl-C end the process while modules loaded; from here on it is a
    # KeyboardInterrupt again, which TokenlimitGroup turns into "interrupted" and exit 130.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    # The objects the modules made live as long as the process: set aside, the cycle
    # collector no longer walks them all at each full collection (0.09 s of a 0.34 s
    # `validate --format json`, 0.14 s of `simulate` on ten million requests).
    gc.freeze()
    batch.forget()
    _build_only_the_command_that_runs(sys.argv[1:])
    try:
        app()
    except SystemExit as exc:
        batch.leave_if_asked(exc.code)
        raise
