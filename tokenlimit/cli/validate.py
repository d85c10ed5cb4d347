"""``tokenlimit validate``: lint RATE_LIMIT_CONFIG rules and explain what the service does."""

from __future__ import annotations

import dataclasses
from typing import Annotated

import typer

from tokenlimit import __version__
from tokenlimit.cli.options import ConfigJsonOption, FromEnvOption, read_rules
from tokenlimit.errors import RuleError
from tokenlimit.rules.formats import (
    ValidationReport,
    failed_report,
    format_github,
    format_json,
    format_sarif,
    validate_rules,
)
from tokenlimit.rules.gomatch import go_string

FORMATS = ("text", "json", "sarif", "github")
SEVERITY_RANK = {"info": 0, "warning": 1, "error": 2}
def at_least(report: ValidationReport, min_severity: str) -> ValidationReport:
    """``report`` with only the findings of ``min_severity`` or worse."""
    floor = SEVERITY_RANK[min_severity]
    kept = tuple(f for f in report.findings if SEVERITY_RANK[f.severity.value] >= floor)
    return dataclasses.replace(report, findings=kept)


def print_report(report: ValidationReport, output_format: str) -> None:
    """Write ``report`` to stdout in ``output_format``."""
    if output_format == "json":
        typer.echo(format_json(report))
    elif output_format == "sarif":
        typer.echo(format_sarif(report, __version__))
    elif output_format == "github":
        typer.echo(format_github(report), nl=False)
    else:
        from tokenlimit.cli.validate_text import format_text, plain_rules_table, report_console

        console = report_console()
        plain = None if console.is_terminal or not report.rules else plain_rules_table(
            report, console.width)
        if plain is not None:
            typer.echo(plain + "\n")
        console.print(format_text(report, table=plain is None), soft_wrap=True)


def validate(
    source: Annotated[str | None, typer.Argument(
        metavar="SOURCE", help="Rules file (JSON, YAML or a Kubernetes manifest); - for stdin.",
    )] = None,
    from_env: FromEnvOption = False,
    config_json: ConfigJsonOption = None,
    output_format: Annotated[str, typer.Option(
        "--format", "-f", help="text, json, sarif (GitHub code scanning) or github "
        "(workflow annotations).")] = "text",
    strict: Annotated[bool, typer.Option(
        "--strict", help="Warnings fail too (exit 1).")] = False,
    keys: Annotated[list[str] | None, typer.Option(
        "--key", "-k", metavar="KEY",
        help="Show which rule KEY takes, with its figures (repeatable).")] = None,
    min_severity: Annotated[str, typer.Option(
        "--min-severity", metavar="info|warning|error",
        help="Show only findings this severe or more (the exit status still counts all).",
    )] = "info",
) -> None:
    """Lint RATE_LIMIT_CONFIG rules and explain what the ASM service will really do.

    Exit 0 without errors (--strict: nor warnings), 1 otherwise, 2 for usage errors.

    Example: tokenlimit validate samples/rules.json --key regular-user-42 --format json
    """
    if output_format not in FORMATS:
        raise typer.BadParameter(f"choose one of {', '.join(FORMATS)}", param_hint="--format")
    if min_severity not in SEVERITY_RANK:
        raise typer.BadParameter("choose one of info, warning, error",
                                 param_hint="--min-severity")
    # A key that is not UTF-8 reaches the service inside JSON, where Go reads each bad byte
    # as U+FFFD: show and match the key the service will see.
    wanted = [go_string(key) for key in keys or []]
    if wanted and output_format in ("sarif", "github"):
        raise typer.BadParameter("--key works with --format text or json",
                                 param_hint="--key")
    if sum((source is not None, config_json is not None, from_env)) != 1:
        raise typer.BadParameter("give exactly one of SOURCE, --config-json or --from-env",
                                 param_hint="SOURCE")
    try:
        report = validate_rules(read_rules(source, config_json, from_env), wanted)
    except RuleError as exc:
        report = failed_report(exc, wanted)
    print_report(at_least(report, min_severity), output_format)
    raise typer.Exit(report.exit_status(strict))


def register(app: typer.Typer) -> None:
    app.command("validate")(validate)
