"""``tokenlimit loadtest merge``: one report from the JSON reports of several runs; and
``register``, which adds ``loadtest`` with its ``merge`` subcommand to the app.

``loadtest`` takes a target URL as its argument, so ``merge`` is dispatched by the command
itself (``LoadtestCommand``) rather than by a group: ``tokenlimit loadtest URL ...`` works as it
always did, and ``tokenlimit loadtest merge --help`` is merge's own help.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from tokenlimit.cli.help_layout import TokenlimitCommand, reflow_help
from tokenlimit.cli.loadtest import loadtest

_merge_app = typer.Typer(add_completion=False)


@_merge_app.command("merge", cls=TokenlimitCommand)
def merge(
    reports: Annotated[list[str], typer.Argument(
        metavar="REPORT.json...", help="Reports written by loadtest --output.")],
    output: Annotated[str | None, typer.Option("--output", "-o", metavar="FILE",
                                               help="Write the merged JSON report here.")] = None,
    plot: Annotated[str | None, typer.Option("--plot", metavar="FILE.png",
                                             help="Write a plot of the merged runs.")] = None,
    output_format: Annotated[str, typer.Option(
        "--format", "-f", metavar="TEXT", help="text or json.")] = "text",
    top: Annotated[int, typer.Option("--top", min=1, metavar="INTEGER",
                                     help="Keys in the text report's table, most requests "
                                     "first (the JSON report has every key).")] = 10,
    strict: Annotated[bool, typer.Option(
        "--strict", help="Exit 1 when conformance found the limiter off its rules.")] = False,
) -> None:
    """Merge loadtest reports exactly: counts add up, latency histograms merge, percentiles
    are those of the whole.

    Example: tokenlimit loadtest merge a.json b.json -o all.json
    """
    from tokenlimit.cli.loadtest import FORMATS, _finish
    from tokenlimit.load.run_report import merge_reports, read_report

    if output_format not in FORMATS:
        raise typer.BadParameter(f"choose one of {', '.join(FORMATS)}", param_hint="--format")
    report = merge_reports([read_report(path) for path in reports])
    _finish(report, output, plot, output_format, None, strict, top, merged=True)


def merge_command() -> Any:
    """The ``merge`` subcommand as a Click command."""
    info = _merge_app.registered_commands[0]
    if info.help is None and merge.__doc__:
        info.help = reflow_help(merge.__doc__)
    return typer.main.get_command(_merge_app)


class LoadtestCommand(TokenlimitCommand):
    """``loadtest``, which hands ``loadtest merge ...`` to the ``merge`` subcommand."""

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None,
                     **extra: Any) -> Any:
        if args and args[0] == "merge":
            # Named "loadtest merge" under loadtest's parent: a context for loadtest itself
            # would put its TARGET_URL in merge's usage line.
            return merge_command().make_context(f"{info_name} merge", args[1:], parent=parent,
                                                **extra)
        return super().make_context(info_name, args, parent, **extra)


def register(app: typer.Typer) -> None:
    app.command("loadtest", cls=LoadtestCommand)(loadtest)
