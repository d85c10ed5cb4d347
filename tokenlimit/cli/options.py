"""Options shared by several commands, defined once."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from tokenlimit.bucket.reserve import EstimatePolicy, parse_estimate_policy
from tokenlimit.errors import ConfigError
from tokenlimit.rules import LoadedRules, Severity, load_rules, require_valid

if TYPE_CHECKING:
    from tokenlimit.sim.log_fields import FieldMap

RULES_HELP = ("Rules: a JSON or YAML file, a Kubernetes manifest that sets RATE_LIMIT_CONFIG, "
              "or - for stdin.")
RulesOption = Annotated[
    str | None, typer.Option("--rules", "-r", metavar="SOURCE", help=RULES_HELP),
]


def rules_option_with_default(default: str) -> Any:
    """``--rules`` for a command that has rules without it: the help says which."""
    return typer.Option("--rules", "-r", metavar="SOURCE",
                        help=f"{RULES_HELP.removesuffix('.')}; default: {default}")


ConfigJsonOption = Annotated[
    str | None,
    typer.Option("--config-json", metavar="TEXT", help="Rules as a raw JSON string."),
]
FromEnvOption = Annotated[
    bool,
    typer.Option("--from-env", help="Read rules from the RATE_LIMIT_CONFIG environment variable."),
]
EstimateOption = Annotated[
    list[str] | None,
    typer.Option(
        "--estimate", metavar="N|avg:N|RULE=N",
        help="Reserve mode's estimate: N (fixed), avg:N (the key's running average, from N), "
        "RULE_INDEX=N. Repeatable.",
    ),
]
FormatOption = Annotated[
    str,
    typer.Option("--format", "-f", help="Output format: text or json."),
]


def read_rules(source: str | None, config_json: str | None, from_env: bool) -> LoadedRules:
    """Load rules from whichever single source the user gave."""
    return load_rules(source, config_json=config_json, from_env=from_env)


def estimate_policy(values: list[str] | None) -> EstimatePolicy:
    """The ``--estimate`` values as a policy; a malformed one is a usage error."""
    try:
        return parse_estimate_policy(values or [])
    except ConfigError as exc:
        raise typer.BadParameter(str(exc).removeprefix("--estimate "),
                                 param_hint="--estimate") from None


def runnable(loaded: LoadedRules) -> LoadedRules:
    """``loaded``, if the service would run it: rules with error findings are refused
    (``RulesRejected``, exit 1); each warning goes to stderr as one line, as validate says it."""
    for finding in require_valid(loaded):
        if finding.severity is Severity.WARNING:
            typer.echo(finding.one_line(), err=True)
    return loaded


LogPresetOption = Annotated[
    str | None,
    typer.Option(
        "--from", metavar="PRESET",
        help="Read a gateway's log: asm (or istio), higress, envoy-ai-gateway, litellm, kong.",
    ),
]
FieldMapOption = Annotated[
    str | None,
    typer.Option(
        "--map", metavar="ts=FIELD,key=FIELD,...",
        help="Which log field holds each trace field (over --from's), e.g. "
        "key=user_type or ts=started_at:ms,latency=duration:ms. Alone it needs ts and key; "
        "other fields come from columns of their own names.",
    ),
]


def read_field_map(preset: str | None, mapping: str | None,
                   key_options: bool) -> FieldMap | None:
    """The ``--from`` / ``--map`` field map; usage errors (exit 2) for bad ones."""
    from tokenlimit.sim.log_fields import field_map

    try:
        fields = field_map(preset, mapping)
    except ConfigError as exc:
        raise typer.BadParameter(str(exc), param_hint="--from/--map") from None
    if fields is not None and key_options:
        raise typer.BadParameter("a log's key comes from --map key=FIELD, not --key-field or "
                                 "--key-template", param_hint="--from/--map")
    return fields


def trace_key_options(key_field: str | None, key_template: list[str] | None,
                      preset: str | None, mapping: str | None) -> FieldMap | None:
    """Where a replay's keys come from: refuses ``--key-field`` with ``--key-template``, and
    either with ``--from``/``--map`` (usage errors); the log's field map, if any."""
    if key_field is not None and key_template:
        raise typer.BadParameter("give --key-field or --key-template, not both",
                                 param_hint="--key-field")
    return read_field_map(preset, mapping, bool(key_field or key_template))
