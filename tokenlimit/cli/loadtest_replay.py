"""``loadtest``'s keys: a ``--replay`` trace read as simulate reads it, and the warning for
``--unique-keys`` under an anchored rule."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import typer

from tokenlimit.bucket.key_templates import parse_key_templates
from tokenlimit.errors import ConfigError
from tokenlimit.rules import Rule
from tokenlimit.sim.records import TraceRequest

if TYPE_CHECKING:
    from tokenlimit.sim.log_fields import FieldMap


def read_replay(path: str, templates: list[str], key_field: str | None,
                seed: int, fields: FieldMap | None = None,
                rules: list[Rule] | None = None) -> tuple[TraceRequest, ...]:
    """``--replay``: the trace through the simulator's readers (every format simulate reads);
    with ``rules``, simulate's warning on stderr when no request's key matches a rule."""
    from tokenlimit.cli.simulate_hints import no_rule_message
    from tokenlimit.load.loadtest import replay_requests
    from tokenlimit.rules.regex import RuleMatcher
    from tokenlimit.sim.readers import TraceKeys, read_trace

    try:
        parsed = parse_key_templates(templates)
        TraceKeys(parsed)  # refuses, before reading, an attribute no trace line carries
    except ConfigError as exc:
        raise typer.BadParameter(str(exc), param_hint="--key-template") from None
    trace = read_trace(path, key_templates=parsed, key_field=key_field, seed=seed,
                       fields=fields)
    requests = replay_requests(trace)
    if rules:
        matcher = RuleMatcher(rules)
        if all(matcher.index_for(k) is None for k in trace.key_names):  # distinct keys
            typer.echo(no_rule_message(trace.key_names, fields, key_field), err=True)
    return requests


def warn_lost_rules(keys: Iterable[str], suffix: str, rules: list[Rule]) -> None:
    """``--unique-keys`` with an anchored rule (``^regular-user$``): the suffixed key matches
    no rule, so the run limits nothing and conformance agrees at 100 %; say so on stderr."""
    from tokenlimit.rules.regex import RuleMatcher

    matcher = RuleMatcher(rules)
    for key in keys:
        index = matcher.index_for(key)
        if index is not None and matcher.index_for(key + suffix) is None:
            typer.echo(f"warning: --unique-keys: {key + suffix!r} matches no rule, where "
                       f"{key!r} matches rule {index} ({rules[index].regex!r}): "
                       "its requests are never limited; run without --unique-keys on keys "
                       "with no state in the service", err=True)
            return
