"""``tokenlimit validate``: lint RATE_LIMIT_CONFIG rules."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from tokenlimit.cli.options import ConfigJsonOption, FromEnvOption, read_rules
from tokenlimit.errors import RuleError
from tokenlimit.rules import Finding, Severity, lint
from tokenlimit.rules.sources import LoadedRules

FORMATS = ("text", "json")


def _finding_from_error(exc: RuleError) -> Finding:
    from tokenlimit.rules.model import Location

    where = Location(exc.path or "<rules>", exc.line or 1, exc.column or 1)
    return Finding("TL100", Severity.ERROR, exc.message,
                   "Fix the syntax so the service can decode the configuration.",
                   None, None, where)


def validate(
    source: Annotated[str | None, typer.Argument(
        metavar="[SOURCE]", help="Rules file (JSON, YAML or a Kubernetes manifest); - for stdin.",
    )] = None,
    from_env: FromEnvOption = False,
    config_json: ConfigJsonOption = None,
    output_format: Annotated[str, typer.Option("--format", "-f",
                                               help="text or json.")] = "text",
    strict: Annotated[bool, typer.Option("--strict", help="Warnings fail too.")] = False,
) -> None:
    """Lint RATE_LIMIT_CONFIG rules and explain what the service will really do.

    Example: tokenlimit validate samples/rules.json --format json
    """
    if output_format not in FORMATS:
        raise typer.BadParameter(f"choose one of {', '.join(FORMATS)}", param_hint="--format")
    try:
        loaded = read_rules(source, config_json, from_env)
        findings = lint(loaded)
    except RuleError as exc:
        loaded = LoadedRules((), (), exc.path or "<rules>")
        findings = [_finding_from_error(exc)]
    if output_format == "json":
        typer.echo(json.dumps({
            "rules": [r.to_config() for r in loaded.rules],
            "findings": [f.to_dict() for f in findings],
            "summary": {s: sum(f.severity.value == s[:-1] for f in findings)
                        for s in ("errors", "warnings", "infos")},
        }, indent=2))
    else:
        for finding in findings:
            typer.echo(finding.one_line())
    failing = {Severity.ERROR, Severity.WARNING} if strict else {Severity.ERROR}
    if any(f.severity in failing for f in findings):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("validate")(validate)
