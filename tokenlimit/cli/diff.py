"""``tokenlimit diff``: what a rules change does to recorded traffic, with a gate for CI."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated

import typer

from tokenlimit.bucket.key_templates import parse_key_templates
from tokenlimit.bucket.types import CHARGES, Charge
from tokenlimit.cli import batch
from tokenlimit.cli.options import FieldMapOption, LogPresetOption, runnable, trace_key_options
from tokenlimit.errors import ConfigError, TraceError
from tokenlimit.rules import compile_go_regex
from tokenlimit.rules.figures import figures_of, number

if TYPE_CHECKING:  # numpy loads when a diff runs, rich when a table is printed
    from rich.console import Group
    from rich.table import Table

    from tokenlimit.bucket.key_templates import KeyTemplate
    from tokenlimit.rules.model import Rule
    from tokenlimit.sim.conditions import Condition
    from tokenlimit.sim.log_fields import FieldMap
    from tokenlimit.sim.rule_diff import GroupDiff, TraceDiff

FORMATS = ("text", "json", "markdown")
Tabular = tuple[str, list[str], list[list[str]]]


def _when(value: float | None) -> str:
    if value is None:
        return "-"
    from datetime import UTC, datetime

    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _arrow(old: object, new: object) -> str:
    return str(new) if old == new else f"{old} → {new}"


def _rule_cells(old: Rule | None, new: Rule | None) -> list[str]:
    cells = []
    for name in ("max_tokens", "tokens_per_fill", "fill_interval_second",
                 "redis_expired_seconds"):
        before = "-" if old is None else f"{getattr(old, name):,}"
        after = "-" if new is None else f"{getattr(new, name):,}"
        cells.append(_arrow(before, after))
    rates = []
    for rule in (old, new):
        figures = None if rule is None else figures_of(rule)
        rates.append("-" if figures is None else number(figures.tokens_per_minute))
    cells.append(_arrow(*rates))
    return cells


def _share(count: int, requests: int) -> str:
    return f"{count:,} ({100.0 * count / requests:.1f}%)" if requests else "0"


def _group_cells(row: GroupDiff) -> list[str]:
    return [row.label, f"{row.requests:,}", _share(row.old_limited, row.requests),
            _share(row.new_limited, row.requests), f"{row.newly_limited:,}",
            f"{row.newly_admitted:,}", f"{row.newly_limited_tokens:,}",
            f"{row.newly_admitted_tokens:,}", _when(row.first_newly_limited)]


_GROUP_HEADINGS = ["requests", "limited\nbefore", "limited\nafter", "newly\nlimited",
                   "newly\nadmitted", "tokens newly\nlimited", "tokens newly\nadmitted",
                   "first newly\nlimited (UTC)"]


def diff_tables(diff: TraceDiff) -> list[Tabular]:
    """The report as (title, headings, rows): one source for the text and markdown forms."""
    from tokenlimit.sim.trace_table import key_label

    rules = [[c.regex, c.kind + (f" ({', '.join(c.fields)})" if c.fields else ""),
              *_rule_cells(c.old, c.new)] for c in diff.rules]
    tables: list[Tabular] = [("Rules", ["regex", "change", "max", "fill", "every (s)", "TTL (s)",
                                        "tok/min"], rules)]
    tables.append(("By rule", ["rule", *_GROUP_HEADINGS], [_group_cells(g) for g in diff.by_rule]))
    if diff.by_class:
        tables.append(("By key class", ["class", *_GROUP_HEADINGS],
                       [_group_cells(g) for g in diff.by_class]))
    tables.append(("Totals", ["", *_GROUP_HEADINGS], [_group_cells(diff.totals)]))
    keys = [[key_label(k.key), f"{k.requests:,}", _share(k.old_limited, k.requests),
             _share(k.new_limited, k.requests), f"{k.newly_limited:,}", f"{k.newly_admitted:,}"]
            for k in diff.keys]
    tables.append((f"Keys that change most (top {len(keys)})",
                   ["key", *_GROUP_HEADINGS[:5]], keys))
    return tables


def format_text(diff: TraceDiff) -> Group:
    """The text report as Rich tables."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    # Text, never markup: regexes, classes, keys and paths are anyone's ('[a-z]+-user.*'
    # showed as '+-user.*', 'user[/]' ended in a MarkupError).
    parts: list[Table | Text] = []
    for title, headings, rows in diff_tables(diff):
        table = Table(title=Text(title), title_justify="left")
        for i, heading in enumerate(headings):
            table.add_column(heading, justify="left" if i == 0 or heading == "change"
                             else "right")
        for row in rows:
            table.add_row(*(Text(cell) for cell in row))
        parts.append(table)
    parts.append(Text(f"{len(diff.trace):,} requests of {diff.trace.path} replayed through both "
                      f"rule sets (ASM semantics, charge {diff.charge})"))
    return Group(*parts)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ") or " "


def _code(text: str) -> str:
    """A regex or key as a code span: as plain text in a cell, markdown reads its ``*``, ``_``
    and ``\\`` as emphasis and escapes (``.*-pro.*`` shows as ``.-pro.``, half in italics;
    ``api\\.example`` as ``api.example``), so the reviewer reads another regex."""
    fence, pad = ("``", " ") if "`" in text else ("`", "")
    return f"{fence}{pad}{text}{pad}{fence}"


def _first_cell(text: str) -> str:
    """A row's label: the rows of no rule and of all requests, and the empty key, as they read;
    a regex, class or key as code."""
    from tokenlimit.sim.rule_diff import NO_RULE, TOTAL
    from tokenlimit.sim.trace_table import key_label

    return text if text in (NO_RULE, TOTAL, key_label("")) else _code(text)


def format_markdown(diff: TraceDiff, old: str, new: str) -> str:
    """GitHub-flavoured markdown, for a pull-request comment or ``$GITHUB_STEP_SUMMARY``."""
    lines = [f"### Rate-limit rules: `{old}` → `{new}`", "",
             f"{len(diff.trace):,} requests of `{diff.trace.path}` replayed through both rule "
             f"sets (ASM semantics, charge {diff.charge}).", ""]
    for title, headings, rows in diff_tables(diff):
        lines += [f"#### {title}", "", "| " + " | ".join(_cell(h) for h in headings) + " |",
                  "|" + "|".join(":---" if i == 0 or h == "change" else "---:"
                             for i, h in enumerate(headings))
                  + "|"]
        lines += ["| " + " | ".join(_cell(c) for c in [_first_cell(row[0]), *row[1:]]) + " |"
                  for row in rows]
        lines.append("")
    return "\n".join(lines)


def diff(
    old_source: Annotated[str, typer.Argument(metavar="OLD", help=(
        "The current rules: a file (JSON, YAML, manifest), - for stdin, or REV:PATH for a "
        "file at a git revision (e.g. origin/main:rules.json)."))],
    new_source: Annotated[str, typer.Argument(metavar="NEW", help="The proposed rules, as OLD.")],
    trace_path: Annotated[str, typer.Option("--trace", "-t", metavar="TRACE", help=(
        "Trace: JSON Lines, CSV or Parquet (.gz or .zst too), a path, a URL, or a folder or "
        "glob of files read as one, as simulate reads."))],
    classes: Annotated[list[str] | None, typer.Option(
        "--class", metavar="REGEX",
        help="Also report the requests with a key matching REGEX (repeatable).")] = None,
    fail_if: Annotated[list[str] | None, typer.Option(
        "--fail-if", metavar="[CLASS: ]METRIC OP N[%]",
        help="Exit 1 when this holds, e.g. 'subscriber.*: newly_limited > 1%'. METRIC: "
        "newly_limited, newly_admitted, limited (requests; % of the group's requests) or "
        "newly_limited_tokens (% of the tokens the old rules admitted). Without CLASS: any "
        "rule, class or the total (repeatable).")] = None,
    charge: Annotated[str, typer.Option(
        help="Tokens a report deducts: completion (the service) or total.")] = "completion",
    key_template: Annotated[list[str] | None, typer.Option(
        "--key-template", metavar="TEMPLATE",
        help="Render keys from each line's headers, as simulate does (repeatable).")] = None,
    key_field: Annotated[str | None, typer.Option(
        help="Take the key from this field.")] = None,
    preset: LogPresetOption = None,
    mapping: FieldMapOption = None,
    seed: Annotated[int, typer.Option(min=0, help="Seed for imputed completion tokens.")] = 0,
    top: Annotated[int, typer.Option(min=0, help="Keys shown in the keys table.")] = 10,
    output_format: Annotated[str, typer.Option(
        "--format", "-f", help="text, json or markdown.")] = "text",
) -> None:
    """Replay one trace through two rule sets and report what the change does.

    Rules added, removed or changed, with their figures side by side; per rule and per key
    class, requests and tokens newly limited and newly admitted, and when limiting starts;
    the keys that change most. With --fail-if, exit 1 when a threshold is crossed.

    Example: tokenlimit diff origin/main:rules.json rules.json --trace trace.jsonl
    --class 'subscriber.*' --fail-if 'subscriber.*: newly_limited > 1%' --format markdown
    """
    batch.begin()
    if output_format not in FORMATS:
        raise typer.BadParameter(f"choose one of {', '.join(FORMATS)}", param_hint="--format")
    if charge not in CHARGES:
        raise typer.BadParameter(f"choose one of {', '.join(CHARGES)}", param_hint="--charge")
    if old_source == "-" and new_source == "-":
        raise typer.BadParameter("only one side can be read from stdin", param_hint="NEW")
    if trace_path == "-":
        raise typer.BadParameter("a trace is read from a file, not stdin", param_hint="--trace")
    log_fields = trace_key_options(key_field, key_template, preset, mapping)
    from tokenlimit.sim.conditions import parse_condition
    from tokenlimit.sim.rule_diff import METRICS

    try:
        conditions = [parse_condition(text, METRICS) for text in fail_if or []]
    except ConfigError as exc:
        raise typer.BadParameter(str(exc), param_hint="--fail-if") from None
    for pattern in classes or []:
        try:
            compile_go_regex(pattern)
        except ValueError as exc:
            raise typer.BadParameter(f"{pattern!r} is not a valid regex ({exc})",
                                     param_hint="--class") from None
    try:
        templates = parse_key_templates(key_template or [])
    except ConfigError as exc:
        raise typer.BadParameter(str(exc), param_hint="--key-template") from None
    charged: Charge = "total" if charge == "total" else "completion"
    result = _run(old_source, new_source, trace_path, templates, key_field, log_fields, seed,
                  classes or [], charged, top)
    unmatched = _no_rule_matched(result, log_fields, key_field)
    if unmatched:
        typer.echo(unmatched, err=True)
    _warn_of_empty_classes(result, [*(classes or []), *(c.group for c in conditions
                                                         if c.group is not None)])
    if output_format == "json":
        body = result.to_dict()
        body["old"], body["new"] = old_source, new_source
        body["fail_if"] = _breaches_json(result, conditions)
        typer.echo(json.dumps(body, indent=2))
    elif output_format == "markdown":
        typer.echo(format_markdown(result, old_source, new_source))
    else:
        from tokenlimit.cli.simulate import stdout_console

        stdout_console().print(format_text(result))
    _gate(result, conditions)


def _run(old_source: str, new_source: str, trace_path: str, templates: Sequence[KeyTemplate],
         key_field: str | None, log_fields: FieldMap | None, seed: int,
         classes: Sequence[str], charge: Charge, top: int) -> TraceDiff:
    from tokenlimit.cli.simulate import read_trace
    from tokenlimit.cli.simulate_hints import warn_if_too_large
    from tokenlimit.rules.revisions import load_rules_source
    from tokenlimit.sim.rule_diff import diff_rules

    old = runnable(load_rules_source(old_source))
    new = runnable(load_rules_source(new_source))
    warn_if_too_large(trace_path, "diff", log=log_fields is not None)
    trace = read_trace(trace_path, key_templates=templates, key_field=key_field, seed=seed,
                       fields=log_fields)
    if len(trace) == 0:
        raise TraceError("no requests in the trace", path=trace_path)
    return diff_rules(trace, old.rules, new.rules, classes=classes, charge=charge, top=top)


def _no_rule_matched(result: TraceDiff, fields: FieldMap | None,
                     key_field: str | None) -> str | None:
    """simulate's warning when no request has a key that either rule set matches: the report
    then says "no change" (and every gate passes) only because the keys came from the wrong
    field, as with a gateway log read with ``--from`` and no ``--map key=FIELD``."""
    from tokenlimit.cli.simulate_hints import no_rule_message

    if bool((result.old.rule >= 0).any()) or bool((result.new.rule >= 0).any()):
        return None
    return no_rule_message(result.trace.key_names, fields, key_field)


def _warn_of_empty_classes(result: TraceDiff, patterns: Sequence[str]) -> None:
    from tokenlimit.cli.simulate_hints import empty_class_warnings

    for warning in empty_class_warnings(result.trace, patterns, "its figures are of no "
                                        "requests (a --fail-if on it measures 0)"):
        typer.echo(warning, err=True)


def _breaches_json(result: TraceDiff, conditions: Sequence[Condition]) -> list[dict[str, object]]:
    return [{"condition": str(b.condition), "group": b.group, "measured": b.measured}
            for b in result.breaches(conditions)]


def _gate(result: TraceDiff, conditions: Sequence[Condition]) -> None:
    breaches = result.breaches(conditions)
    for breach in breaches:
        typer.echo(f"threshold crossed: {breach}", err=True)
    if breaches:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("diff")(diff)
