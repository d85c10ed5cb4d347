"""Options shared by several commands, defined once."""

from __future__ import annotations

from typing import Annotated

import typer

from tokenlimit.rules import LoadedRules, load_rules

RulesOption = Annotated[
    str | None,
    typer.Option(
        "--rules", "-r", metavar="SOURCE",
        help="Rules: a JSON or YAML file, a Kubernetes manifest that sets RATE_LIMIT_CONFIG, "
        "or - for stdin.",
    ),
]
ConfigJsonOption = Annotated[
    str | None,
    typer.Option("--config-json", metavar="TEXT", help="Rules as a raw JSON string."),
]
FromEnvOption = Annotated[
    bool,
    typer.Option("--from-env", help="Read rules from the RATE_LIMIT_CONFIG environment variable."),
]
FormatOption = Annotated[
    str,
    typer.Option("--format", "-f", help="Output format: text or json."),
]


def read_rules(source: str | None, config_json: str | None, from_env: bool) -> LoadedRules:
    """Load rules from whichever single source the user gave."""
    return load_rules(source, config_json=config_json, from_env=from_env)
