"""``tokenlimit simulate``: replay a recorded trace through rules, decision by decision."""

from __future__ import annotations

import contextlib
import json
import math
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tokenlimit.bucket.key_templates import parse_key_templates
from tokenlimit.bucket.types import CHARGES, Charge
from tokenlimit.cli import batch
from tokenlimit.cli.options import (
    ConfigJsonOption,
    EstimateOption,
    FieldMapOption,
    FromEnvOption,
    LogPresetOption,
    RulesOption,
    estimate_policy,
    read_rules,
    runnable,
    trace_key_options,
)
from tokenlimit.cli.simulate_hints import no_rule_matched, out_of_memory, warn_if_too_large
from tokenlimit.cli.simulate_text import format_summary, format_sweep
from tokenlimit.errors import ConfigError, TraceError
from tokenlimit.files import check_writable
from tokenlimit.rules.figures import counted
from tokenlimit.sim.semantics import SEMANTICS
from tokenlimit.sim.sweep import parse_setting

if TYPE_CHECKING:  # numpy loads when a trace is read, rich when a table is printed
    from rich.console import Console

    from tokenlimit.sim.partition import Parallelism
    from tokenlimit.sim.replay_stats import Summary
    from tokenlimit.sim.trace_table import Trace

FORMATS = ("text", "json")


def read_trace(path: str, **options: Any) -> Trace:
    """The simulator's trace reader, ``tokenlimit.sim.readers.read_trace`` (imported here)."""
    from tokenlimit.sim.readers import read_trace as read_any_trace

    return read_any_trace(path, **options)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cycle collector off while the trace is read and replayed: loading numba and
    polars meanwhile sets it off again and again (5% of the CPU on a 10-million-request
    trace) over objects that all stay alive. On the way out, in a process that set the
    start-up's objects aside (the console script, ``cli.main.run``), they are set aside too:
    the first collection after would walk them all (150,000 objects, 0.045 s on one core
    after the replay's threads are done). An in-process caller's collector is left as it was."""
    import gc

    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            if gc.get_freeze_count():
                gc.freeze()
            gc.enable()


@contextmanager
def _progress(total: int) -> Iterator[Callable[[str], None]]:
    """Advance a stage bar on stderr, only when stderr is a terminal."""
    if not sys.stderr.isatty():
        yield lambda _stage: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("reading", total=total)

        def step(stage: str) -> None:
            bar.update(task, advance=1, description=stage)

        yield step


def simulate(
    trace_path: Annotated[str, typer.Argument(metavar="TRACE", help=(
        "Trace file: JSON Lines, CSV or Parquet (.gz or .zst too); canonical or "
        "Mooncake/AIPerf shape. A path or a URL (s3://, gs://, https://, file://, ...); "
        "or a folder or glob of files read as one (a day a file, say)."))],
    rules_source: RulesOption = None,
    config_json: ConfigJsonOption = None,
    from_env: FromEnvOption = False,
    semantics: Annotated[str, typer.Option(
        help=f"Limiter: {', '.join(SEMANTICS)}.")] = "asm",
    charge: Annotated[str, typer.Option(
        help="Tokens a report deducts: completion (the service) or total.")] = "completion",
    estimate: EstimateOption = None,
    key_template: Annotated[list[str] | None, typer.Option(
        "--key-template", metavar="TEMPLATE",
        help="Render keys from each line's headers (and path, host, method), e.g. "
        "'{{request.headers.user-type}}' (repeatable, in rateLimitKeys order).")] = None,
    key_field: Annotated[str | None, typer.Option(
        help="Take the key from this field (e.g. for Mooncake traces).")] = None,
    preset: LogPresetOption = None,
    mapping: FieldMapOption = None,
    seed: Annotated[int, typer.Option(min=0, help="Seed for imputed completion tokens.")] = 0,
    decisions: Annotated[str | None, typer.Option(
        metavar="FILE", help="Write id, outcome and rule per request: .parquet, .csv, else "
        "JSON Lines (.gz or .zst after .csv or .jsonl compresses).")] = None,
    output_format: Annotated[str, typer.Option("--format", "-f", help="text or json.")] = "text",
    plot: Annotated[str | None, typer.Option(
        metavar="FILE.png", help="Write a chart, as PNG.")] = None,
    setting: Annotated[list[str] | None, typer.Option(
        "--set", metavar="rules[N].FIELD=V1,V2", help="Sweep a rule field (rules[*]: every "
        "rule; repeatable: every combination).")] = None,
    price: Annotated[float | None, typer.Option(
        metavar="USD", help="Price per 1K tokens, for the spend estimate.")] = None,
    top: Annotated[int, typer.Option(help="Keys shown in the per-key table (--plot draws the "
                                          "first 4).")] = 10,
    speed: Annotated[float, typer.Option(
        help="Decide as `loadtest --replay --speed N` against a live service does: times "
        "and latencies divided by N.")] = 1.0,
    jobs: Annotated[int | None, typer.Option(
        min=1, metavar="N", help="Replay on N partitions in parallel (keys that share a "
        "request stay together); default: every core (up to 8 locally).")] = None,
    executor: Annotated[str, typer.Option(
        help="Where partitions run: local (threads) or dask (workers read a Parquet trace "
        "themselves when no decisions or plot are asked for).")] = "local",
    scheduler: Annotated[str | None, typer.Option(
        metavar="ADDRESS", help="With --executor dask: the scheduler (default: a local "
        "cluster).")] = None,
    chunk_rows: Annotated[int | None, typer.Option(
        min=1, metavar="N", help="Stream a trace larger than memory (Parquet: a file, folder "
        "or glob; CSV; JSON Lines) in batches of about N requests.")] = None,
) -> None:
    """Replay a recorded trace through rules and report who would be limited, and when.

    Example: tokenlimit simulate samples/trace.jsonl --rules samples/rules.json
    """
    batch.begin()
    if output_format not in FORMATS:
        raise typer.BadParameter(f"choose one of {', '.join(FORMATS)}", param_hint="--format")
    if executor not in ("local", "dask"):
        raise typer.BadParameter("choose one of local, dask", param_hint="--executor")
    if scheduler is not None and executor != "dask":
        raise typer.BadParameter("only with --executor dask", param_hint="--scheduler")
    if semantics not in SEMANTICS:
        raise typer.BadParameter(f"choose one of {', '.join(SEMANTICS)}",
                                 param_hint="--semantics")
    if estimate and semantics != "asm-reserve":
        raise typer.BadParameter("estimates are used only with --semantics asm-reserve",
                                 param_hint="--estimate")
    policy = estimate_policy(estimate)
    if charge not in CHARGES:
        raise typer.BadParameter(f"choose one of {', '.join(CHARGES)}", param_hint="--charge")
    if top < 0:
        raise typer.BadParameter("must be >= 0", param_hint="--top")
    if price is not None and not (math.isfinite(price) and price >= 0):
        raise typer.BadParameter("must be a finite number >= 0", param_hint="--price")
    if not 0 < speed < math.inf:
        raise typer.BadParameter("must be a finite number > 0", param_hint="--speed")
    if trace_path == "-":
        raise typer.BadParameter("a trace is read from a file, not stdin: save it to a file "
                                 "first", param_hint="TRACE")
    fields = trace_key_options(key_field, key_template, preset, mapping)
    if setting and decisions:
        raise typer.BadParameter("a sweep has no single set of decisions; drop --set",
                                 param_hint="--decisions")
    for output, option in ((decisions, "--decisions"), (plot, "--plot")):
        if output == "-":
            raise typer.BadParameter("stdout carries the report: give a file", param_hint=option)
        if output:
            check_writable(output)
    if plot and top == 0 and not setting:  # its chart said no request's key matched a rule
        raise typer.BadParameter("the chart draws --top keys: give 1 or more",
                                 param_hint="--top")
    if plot and not plot.lower().endswith(".png"):  # a PNG named x.pdf or x.svg opens nowhere
        raise typer.BadParameter("the chart is a PNG image: name the file .png",
                                 param_hint="--plot")
    charged: Charge = "total" if charge == "total" else "completion"
    if sum((rules_source is not None, config_json is not None, from_env)) != 1:
        raise typer.BadParameter("give exactly one of --rules SOURCE, --config-json or "
                                 "--from-env", param_hint="--rules")
    loaded = runnable(read_rules(rules_source, config_json, from_env))
    from tokenlimit.sim.readers import TraceKeys
    from tokenlimit.sim.simulation import simulate_on_workers, simulate_trace
    from tokenlimit.sim.trace_sources import is_parquet
    from tokenlimit.sim.writers import write_decisions

    try:
        templates = parse_key_templates(key_template or [])
        TraceKeys(templates)  # refuses, before reading, an attribute no trace line carries
    except ConfigError as exc:
        raise typer.BadParameter(str(exc), param_hint="--key-template") from None
    try:
        settings = [parse_setting(s) for s in setting or []]
    except ConfigError as exc:
        raise typer.BadParameter(str(exc), param_hint="--set") from None
    if chunk_rows is not None:
        _refuse_with_chunks(trace_path, semantics, settings, plot, templates, fields, decisions,
                            speed, jobs, executor)
        _simulate_in_chunks(trace_path, loaded, chunk_rows, charged, key_field,
                            seed, top, price, decisions, output_format, fields, speed, plot)
        return
    parallel = _parallelism(jobs, executor, scheduler)
    if (parallel.executor == "dask" and parallel.jobs > 1 and semantics == "asm"
            and not (settings or decisions or plot or templates or fields) and speed == 1
            and is_parquet(trace_path)):
        on_workers = simulate_on_workers(trace_path, loaded.rules, parallel, charge=charged,
                                         top=top, price_per_1k=price, key_field=key_field,
                                         seed=seed)
        if on_workers is not None:  # else read here, below, and shipped to the workers
            summary, limited = on_workers
            _print_report(summary, trace_path, limited, output_format,
                          no_rule_matched(summary, (), fields, key_field))
            return
    with _collector_paused(), _out_of_memory(trace_path), _progress(
            max(len(settings), 1) + 2) as step:
        if semantics == "asm":
            _load_engine_meanwhile()
        warn_if_too_large(trace_path, log=fields is not None)
        trace = read_trace(trace_path, key_templates=templates, key_field=key_field, seed=seed,
                           fields=fields, ids=decisions is not None).at_speed(speed)
        if len(trace) == 0:
            raise TraceError("no requests in the trace (empty file, or only a header or blank "
                             "lines)", path=trace_path)
        step("replaying")
        result = simulate_trace(trace, loaded.rules, semantics=semantics, charge=charged,
                                settings=settings, top=top, price_per_1k=price,
                                origin=loaded.origin, estimate=policy, on_step=step,
                                parallel=parallel, decisions=bool(decisions or plot))
    if settings:
        summaries = list(result.summaries)
        warning = no_rule_matched(summaries[0][1], trace.key_names, fields, key_field)
        if warning:  # the same in every setting: a sweep changes numbers, never a regex
            typer.echo(warning, err=True)
        _report_sweep(summaries, output_format, plot, trace.path, loaded.origin,
                      semantics, charged, recorded_429(trace), speed)
        return
    replay, summary = result.replay, result.summaries[0][1]
    if decisions:
        assert replay is not None
        with _out_of_memory(trace_path):
            write_decisions(decisions, trace, replay.outcome, replay.rule)
    if plot:
        from tokenlimit.sim.replay_plot import plot_replay

        assert replay is not None
        plot_replay(plot, result.rules, trace, replay, [k for k, _, _ in summary.keys],
                    charged, rules_origin=loaded.origin, top=top, semantics=semantics,
                    speed=speed)
    _print_report(summary, trace.path, recorded_429(trace), output_format,
                  no_rule_matched(summary, trace.key_names, fields, key_field))


def stdout_console() -> Console:
    """The console a text report goes to (160 columns when stdout is not a terminal)."""
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 160)


def _print_report(summary: Summary, path: str, limited: int, output_format: str,
                  warning: str | None = None) -> None:
    if warning:
        typer.echo(warning, err=True)
    if output_format == "json":
        typer.echo(json.dumps({"trace": path, "recorded_429": limited,
                               **summary.to_dict()}, indent=2))
    else:
        console = stdout_console()
        console.print(format_summary(summary, path))
        _print_recorded_429(console, limited)


def _print_recorded_429(console: Console, limited: int) -> None:
    if limited:
        were, their = ("was", "its") if limited == 1 else ("were", "their")
        console.print(f"{counted(limited, 'request')} {were} answered 429 when "
                      f"recorded: replayed as demand, {their} usage imputed")


@contextmanager
def _out_of_memory(trace_path: str) -> Iterator[None]:
    """A whole-trace replay that runs out of memory ends with one line naming
    ``--chunk-rows`` (``TraceError``), not numpy's ``MemoryError``."""
    try:
        yield
    except MemoryError:
        raise TraceError(out_of_memory(), path=trace_path) from None


def _load_engine_meanwhile() -> threading.Thread:
    """Load the compiled replay on a thread while the trace is read (about a third of a
    second that reading, mostly outside Python, can hide).

    Not a daemon: on a short trace the command is done before the thread, and a process
    that then exits as usual (an in-process caller, a console script whose stdout was
    closed) must wait for it, not tear Python down under numba's loader (a segfault, seen
    once in the test suite). The console script's quick exit (``batch``) waits for nothing."""

    # Both imports hold the GIL most of the time: polars first, for the reader waits on it,
    # while loading numba fits in the time polars reads without the GIL.
    import polars  # noqa: F401

    def load() -> None:
        from tokenlimit.sim import key_numbers, replay_stats, scan

        with contextlib.suppress(Exception):  # the replay loads it again and says what fails
            key_numbers.warm_up()  # the reader's last step needs it first
            scan.warm_up()
            replay_stats.warm_up()

    thread = threading.Thread(target=load, name="load-replay")
    thread.start()
    return thread


def _parallelism(jobs: int | None, executor: str, scheduler: str | None) -> Parallelism:
    """``--jobs``: by default every core this process may run on, up to 8 locally (each
    thread keeps bucket state for every key and passes over the whole trace)."""
    from tokenlimit.sim.partition import Parallelism, usable_cores

    if jobs is None:
        jobs = usable_cores() if executor == "dask" else min(usable_cores(), 8)
    return Parallelism(jobs, executor, scheduler)


def _refuse_with_chunks(path: str, semantics: str, settings: list[Any], plot: str | None,
                        templates: Sequence[Any], fields: Any,
                        decisions: str | None, speed: float = 1.0, jobs: int | None = None,
                        executor: str = "local") -> None:
    """Usage errors for what a streamed replay does not do (yet)."""
    refused = [(semantics != "asm", "--semantics", "streams the asm semantics only"),
               ((jobs or 1) > 1 or executor != "local", "--jobs/--executor",
                "replays on one process: every key's state goes from batch to batch"),
               (bool(settings), "--set", "a sweep replays the trace whole"),
               (bool(templates), "--key-template", "reads keys from a key field or a log's "
                "--map key=FIELD, not from templates"),
               (decisions is not None and decisions.lower().endswith(
                   (".parquet", ".pq", ".csv", ".gz", ".zst", ".zstd")), "--decisions",
                "streamed decisions are written as plain JSON Lines")]
    for bad, hint, message in refused:
        if bad:
            raise typer.BadParameter(f"--chunk-rows {message}", param_hint=hint)


def _simulate_in_chunks(path: str, loaded: Any, rows: int, charge: Charge,
                        key_field: str | None, seed: int, top: int, price: float | None,
                        decisions: str | None, output_format: str, fields: Any,
                        speed: float, plot: str | None) -> None:
    from tokenlimit.files import atomic_writer
    from tokenlimit.sim.chunked import simulate_in_chunks

    rules = loaded.rules
    options: dict[str, Any] = {"rows": rows, "charge": charge, "key_field": key_field,
                               "seed": seed, "top": top, "price_per_1k": price,
                               "fields": fields, "speed": speed, "chart": plot is not None}
    if decisions:
        with atomic_writer(decisions) as handle:
            result = simulate_in_chunks(path, rules, decisions=handle, **options)
            _refuse_empty(result.requests, path)  # before the file is published
    else:
        result = simulate_in_chunks(path, rules, **options)
        _refuse_empty(result.requests, path)
    if plot and result.chart is not None:
        from tokenlimit.sim.replay_plot import plot_replay

        trace, replay = result.chart
        plot_replay(plot, rules, trace, replay, [k for k, _, _ in result.summary.keys],
                    charge, rules_origin=loaded.origin, top=top, speed=speed)
    _print_report(result.summary, path, result.recorded_429, output_format,
                  no_rule_matched(result.summary, result.key_names, fields, key_field))


def _refuse_empty(requests: int, path: str) -> None:
    if requests == 0:
        raise TraceError("no requests in the trace", path=path)


def recorded_429(trace: Trace) -> int:
    """How many requests the gateway answered 429 when the log was written."""
    from tokenlimit.sim.log_reader import limited_count

    return limited_count(trace)


def _report_sweep(results: list[tuple[str, Summary]], output_format: str,
                  plot: str | None, trace_path: str, rules_origin: str, semantics: str,
                  charge: Charge, limited: int, speed: float) -> None:
    if plot:
        from tokenlimit.sim.replay_plot import plot_sweep

        plot_sweep(plot, [label for label, _ in results],
                   [s.totals.limited_pct for _, s in results],
                   [s.totals.tokens_admitted for _, s in results], trace_path=trace_path,
                   rules_origin=rules_origin, semantics=semantics, charge=charge, speed=speed)
    if output_format == "json":
        body: list[dict[str, Any]] = [{"setting": label, **s.to_dict()} for label, s in results]
        typer.echo(json.dumps({"trace": trace_path, "recorded_429": limited, "sweep": body},
                              indent=2))
    else:
        console = stdout_console()
        console.print(format_sweep(results))
        _print_recorded_429(console, limited)


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate)
