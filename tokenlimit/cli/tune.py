"""``tokenlimit tune``: rule numbers that meet stated goals on recorded traffic."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tokenlimit.bucket.key_templates import parse_key_templates
from tokenlimit.bucket.types import CHARGES, Charge
from tokenlimit.cli import batch
from tokenlimit.cli.options import (
    ConfigJsonOption,
    FieldMapOption,
    FromEnvOption,
    LogPresetOption,
    RulesOption,
    read_rules,
    runnable,
    trace_key_options,
)
from tokenlimit.errors import ConfigError, TraceError
from tokenlimit.files import check_writable
from tokenlimit.rules import RuleMatcher
from tokenlimit.rules.model import INT_FIELDS, Rule

if TYPE_CHECKING:
    from rich.console import Group

    from tokenlimit.sim.conditions import Condition
    from tokenlimit.sim.log_fields import FieldMap
    from tokenlimit.sim.trace_table import Trace
    from tokenlimit.sim.tune_goals import Scores
    from tokenlimit.sim.tuning import Candidate, TuneResult

FORMATS = ("text", "json")


def _target(text: str, rules: Sequence[Rule]) -> int:
    """``--rule``: an index, or a regex equal to a rule's, or a key that a rule matches."""
    if text.isdigit() and int(text) < len(rules):
        return int(text)
    for rule in rules:
        if rule.regex == text:
            return rule.index
    index = RuleMatcher(rules).index_for(text)
    if index is None:
        raise ConfigError(f"--rule {text!r}: no rule has that index or regex, or matches it "
                          "as a key")
    return index


def _bounds(texts: Sequence[str]) -> dict[str, tuple[int, int]]:
    out = {}
    for text in texts:
        field, sep, span = text.partition("=")
        low, dots, high = span.partition("..")
        if not (sep and dots and low.strip().isdigit() and high.strip().isdigit()):
            raise typer.BadParameter(f"{text!r}: expected FIELD=LOW..HIGH (whole numbers)",
                                     param_hint="--range")
        if field not in INT_FIELDS:
            raise typer.BadParameter(f"{text!r}: FIELD is one of {', '.join(INT_FIELDS)}",
                                     param_hint="--range")
        out[field] = (int(low), int(high))
    return out


@contextmanager
def _progress() -> Iterator[Callable[[int, int], None]]:
    """A candidate bar on stderr, only when stderr is a terminal."""
    if not sys.stderr.isatty():
        yield lambda _done, _total: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("replaying candidates"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("tune", total=None)

        def step(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield step


def _measure(goal: Condition, value: float) -> str:
    if goal.percent:
        return f"{value:.2f}%"
    if goal.metric == "key_usd_per_day":
        return f"${value:,.2f}"
    return f"{value:,.0f}"


def _scores_cells(result: TuneResult, scores: Scores) -> list[str]:
    return [*(_measure(g, v) for g, v in zip(result.goals, scores.measured, strict=True)),
            f"{scores.limited:,} ({scores.limited_pct:.2f}%)", f"{scores.tokens_admitted:,}"]


_SHORT = {"max_tokens": "max", "tokens_per_fill": "fill", "fill_interval_second": "every (s)",
          "redis_expired_seconds": "TTL (s)"}


def format_result(result: TuneResult, rules: Sequence[Rule], top: int) -> Group:
    """The best candidates (and the rules as given, for comparison) as a Rich table."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    shown = result.ranked[:top]
    table = Table(title=f"Best {len(shown)} of {len(result.ranked)} distinct candidates meeting "
                  f"every goal ({len(result.candidates)} replayed)", title_justify="left")
    table.add_column("#")
    several = len({d.rule for d in result.dimensions}) > 1
    # Headings as Text, never markup: a regex or class such as '[a-z]+-user' is anyone's.
    for dimension in result.dimensions:
        short = _SHORT[dimension.field]
        table.add_column(Text(f"{rules[dimension.rule].regex} {short}" if several else short),
                         justify="right")
    for goal in result.goals:
        value = f"{goal.value:g}{'%' if goal.percent else ''}"
        where = f"{goal.group}\n" if goal.group else ""
        table.add_column(Text(f"{where}{goal.metric}\n{goal.op} {value}"), justify="right")
    table.add_column("limited (all)", justify="right")
    table.add_column("tokens admitted", justify="right")
    current = [f"{getattr(rules[d.rule], d.field):,}" for d in result.dimensions]
    table.add_row("current", *current, *_scores_cells(result, result.current))
    for rank, candidate in enumerate(shown, 1):
        table.add_row(str(rank), *(f"{v:,}" for v in candidate.values),
                      *_scores_cells(result, candidate.scores))
    return Group(table)


def _candidate_json(result: TuneResult, candidate: Candidate) -> dict[str, Any]:
    return {
        "values": {d.label(candidate.rules): v
                   for d, v in zip(result.dimensions, candidate.values, strict=True)},
        "goals": {str(g): v for g, v in zip(result.goals, candidate.scores.measured,
                                            strict=True)},
        "limited": candidate.scores.limited, "limited_pct": round(candidate.scores.limited_pct, 3),
        "tokens_admitted": candidate.scores.tokens_admitted,
        "rules": [r.to_config() for r in candidate.rules],
    }


def _idle_targets(trace: Trace, rules: Sequence[Rule], chosen: Sequence[int],
                  fields: FieldMap | None, key_field: str | None) -> list[str]:
    """Warnings for tuned rules that no request's key takes: their numbers change nothing on
    the trace, so candidates tie and the smallest numbers are proposed, a proposal the trace
    says nothing about. When no key takes any rule, simulate's warning, which says where the
    keys came from (a gateway log read with ``--from`` and no ``--map key=FIELD``)."""
    from tokenlimit.cli.simulate_hints import no_rule_message
    from tokenlimit.sim.engine import key_rules

    taken = set(key_rules(rules, trace.key_names).tolist())
    if not taken - {-1}:
        return [no_rule_message(trace.key_names, fields, key_field)]
    return [f"warning: no request in {trace.path} has a key that rule {i} ({rules[i].regex!r}) "
            "takes: its numbers change nothing on this trace" for i in chosen
            if i not in taken]


def _write_rules(path: str, rules: Sequence[Rule]) -> None:
    from tokenlimit.files import write_atomic

    text = json.dumps([r.to_config() for r in rules], indent=2) + "\n"
    write_atomic(path, text.encode("utf-8"))


def tune(
    trace_path: Annotated[str, typer.Option("--trace", "-t", metavar="TRACE", help=(
        "Trace: JSON Lines, CSV or Parquet (.gz or .zst too), a path, a URL, or a folder or "
        "glob of files read as one, as simulate reads."))],
    goals: Annotated[list[str], typer.Option(
        "--goal", "-g", metavar="[CLASS: ]METRIC OP N[%]",
        help="A goal every printed candidate meets (repeatable): limited (requests; % of the "
        "class's), key_tokens_per_hour, key_tokens_per_day, key_usd_per_day (needs --price), "
        "e.g. 'subscriber.*: limited <= 1%'.")],
    targets: Annotated[list[str], typer.Option(
        "--rule", metavar="RULE", help="A rule to tune: its index, its regex, or a key it "
        "matches (repeatable).")],
    rules_source: RulesOption = None,
    config_json: ConfigJsonOption = None,
    from_env: FromEnvOption = False,
    fields: Annotated[list[str] | None, typer.Option(
        "--field", metavar="FIELD", help="A number to search (repeatable): tokens_per_fill, "
        "max_tokens, fill_interval_second, redis_expired_seconds; default the first two.")]
    = None,
    ranges: Annotated[list[str] | None, typer.Option(
        "--range", metavar="FIELD=LOW..HIGH", help="Bounds of a field (default: an eighth "
        "to eight times its current value).")] = None,
    prefer: Annotated[str, typer.Option(
        help="Among candidates meeting the goals: fewer-limited (then fewer tokens) or "
        "less-spend (fewest tokens admitted, then fewer limited).")] = "fewer-limited",
    budget: Annotated[int, typer.Option(
        min=1, max=10_000, help="Candidates replayed at most.")] = 60,
    top: Annotated[int, typer.Option(min=1, help="Candidates printed.")] = 5,
    price: Annotated[float | None, typer.Option(
        metavar="USD", help="Price per 1K total tokens, for key_usd_per_day.")] = None,
    charge: Annotated[str, typer.Option(
        help="Tokens a report deducts: completion (the service) or total.")] = "completion",
    key_template: Annotated[list[str] | None, typer.Option(
        "--key-template", metavar="TEMPLATE",
        help="Render keys from each line's headers, as simulate does (repeatable).")] = None,
    key_field: Annotated[str | None, typer.Option(help="Take the key from this field.")] = None,
    preset: LogPresetOption = None,
    mapping: FieldMapOption = None,
    seed: Annotated[int, typer.Option(min=0, help="Seed for imputed completion tokens.")] = 0,
    plot: Annotated[str | None, typer.Option(
        metavar="FILE.png", help="Chart the trade-off between the goals.")] = None,
    output: Annotated[str | None, typer.Option(
        "--output", "-o", metavar="FILE", help="Write the best candidate's rules (JSON).")]
    = None,
    output_format: Annotated[str, typer.Option("--format", "-f", help="text or json.")]
    = "text",
) -> None:
    """Search rule numbers that meet goals on a recorded trace, and print the best.

    Every candidate is replayed exactly, never estimated, so a search takes about --budget
    replays of the trace: the 1,823-request sample, about 30 ms a candidate (two to three
    seconds for the default 60); a million requests, about 0.1 CPU-seconds a candidate
    (bench/tune.py; up to half a second of wall-clock on a busy machine), after reading the
    trace once. A progress bar shows on a terminal.

    Example: tokenlimit tune --trace samples/trace.jsonl --rules samples/rules.json
    --rule 'subscriber.*' --goal 'subscriber.*: limited <= 2%'
    --goal 'subscriber.*: key_tokens_per_hour <= 12000' --prefer less-spend -o tuned.json
    """
    batch.begin()
    if output_format not in FORMATS:
        raise typer.BadParameter(f"choose one of {', '.join(FORMATS)}", param_hint="--format")
    if charge not in CHARGES:
        raise typer.BadParameter(f"choose one of {', '.join(CHARGES)}", param_hint="--charge")
    from tokenlimit.sim.tune_goals import PREFERENCES, parse_goal

    if prefer not in PREFERENCES:
        raise typer.BadParameter(f"choose one of {', '.join(PREFERENCES)}",
                                 param_hint="--prefer")
    if price is not None and not (math.isfinite(price) and price >= 0):
        raise typer.BadParameter("must be a finite number >= 0", param_hint="--price")
    if sum((rules_source is not None, config_json is not None, from_env)) != 1:
        raise typer.BadParameter("give exactly one of --rules SOURCE, --config-json or "
                                 "--from-env", param_hint="--rules")
    for path, option in ((output, "--output"), (plot, "--plot")):
        if path == "-":
            raise typer.BadParameter("stdout carries the report: give a file", param_hint=option)
        if path is not None:
            check_writable(path)  # before the search, not after it
    try:
        parsed = [parse_goal(text, price) for text in goals]
    except ConfigError as exc:
        raise typer.BadParameter(str(exc), param_hint="--goal") from None
    bounds = _bounds(ranges or [])
    try:
        templates = parse_key_templates(key_template or [])
    except ConfigError as exc:
        raise typer.BadParameter(str(exc), param_hint="--key-template") from None
    log_fields = trace_key_options(key_field, key_template, preset, mapping)
    rules = runnable(read_rules(rules_source, config_json, from_env)).rules
    try:
        chosen = sorted({_target(text, rules) for text in targets})
    except ConfigError as exc:
        raise typer.BadParameter(str(exc), param_hint="--rule") from None
    from tokenlimit.cli.simulate import read_trace
    from tokenlimit.cli.simulate_hints import warn_if_too_large
    from tokenlimit.sim.tuning import dimensions_for
    from tokenlimit.sim.tuning import tune as search

    searched = list(dict.fromkeys(fields or ["tokens_per_fill", "max_tokens"]))
    unsearched = [field for field in bounds if field not in searched]
    if unsearched:  # else its bounds would be ignored without a word
        raise typer.BadParameter(f"{unsearched[0]} is not searched (the fields searched: "
                                 f"{', '.join(searched)}); name it with --field too",
                                 param_hint="--range")
    try:
        dimensions = dimensions_for(rules, chosen, searched, bounds)
    except ConfigError as exc:
        raise typer.BadParameter(str(exc), param_hint="--field") from None
    warn_if_too_large(trace_path, "tune", log=log_fields is not None)
    trace = read_trace(trace_path, key_templates=templates, key_field=key_field, seed=seed,
                       fields=log_fields)
    if len(trace) == 0:
        raise TraceError("no requests in the trace", path=trace_path)
    for warning in _idle_targets(trace, rules, chosen, log_fields, key_field):
        typer.echo(warning, err=True)
    from tokenlimit.cli.simulate_hints import empty_class_warnings

    for warning in empty_class_warnings(trace, [g.group for g in parsed if g.group is not None],
                                        "a goal on it is measured on no requests, as 0"):
        typer.echo(warning, err=True)
    charged: Charge = "total" if charge == "total" else "completion"
    with _progress() as step:
        result = search(trace, rules, dimensions, parsed, charge=charged, price_per_1k=price,
                        prefer=prefer, budget=budget, on_candidate=step)
    if plot:
        from tokenlimit.sim.tune_plot import plot_tradeoff

        plot_tradeoff(plot, result, trace.path)
    best = result.best
    if best is not None and output:
        _write_rules(output, best.rules)
    if output_format == "json":
        typer.echo(json.dumps({
            "trace": trace.path, "replayed": len(result.candidates), "budget": budget,
            "prefer": prefer, "goals": [str(g) for g in result.goals],
            "met": len(result.ranked),
            "current": {"goals": {str(g): v for g, v in zip(result.goals,
                                                            result.current.measured,
                                                            strict=True)},
                        "limited": result.current.limited,
                        "tokens_admitted": result.current.tokens_admitted},
            "candidates": [_candidate_json(result, c) for c in result.ranked[:top]],
        }, indent=2))
    elif best is not None:
        from tokenlimit.cli.simulate import stdout_console

        console = stdout_console()
        console.print(format_result(result, rules, top))
        if output:
            console.print(f"best rules written to {output}")
        else:
            typer.echo("best rules (write them with -o FILE):")
            typer.echo(json.dumps([r.to_config() for r in best.rules], indent=2))
    if best is None:
        _no_candidate(result)


def _no_candidate(result: TuneResult) -> None:
    """No candidate met every goal: say how close the search came, exit 1."""
    from tokenlimit.sim.tune_goals import shortfall

    closest = min(result.candidates, key=lambda c: shortfall(result.goals, c.scores))
    missed = [f"{g} (got {_measure(g, v)})"
              for g, v in zip(result.goals, closest.scores.measured, strict=True)
              if not g.holds(v)]
    several = len({d.rule for d in result.dimensions}) > 1  # then name each value's rule
    values = ", ".join(f"{d.label(closest.rules) if several else d.field}={v}"
                       for d, v in zip(result.dimensions, closest.values, strict=True))
    typer.echo(f"error: no candidate met every goal in {len(result.candidates)} replays; "
               f"the closest ({values}) misses {'; '.join(missed)}. Widen --range, raise "
               "--budget, or relax a goal.", err=True)
    raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("tune")(tune)
