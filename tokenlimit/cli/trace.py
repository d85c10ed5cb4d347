"""``tokenlimit trace generate``: synthetic traces for planning without recordings."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer
import yaml

from tokenlimit.cli import batch
from tokenlimit.cli.help_layout import TidyGroup
from tokenlimit.cli.options import FieldMapOption, LogPresetOption, read_field_map
from tokenlimit.cli.simulate_hints import warn_if_too_large
from tokenlimit.errors import ConfigError
from tokenlimit.rules.figures import counted

if TYPE_CHECKING:  # numpy loads when a trace is generated, not at every command's start-up
    from tokenlimit.sim.generate import Tier, TraceSpec

trace_app = typer.Typer(cls=TidyGroup, help="Work with traces: generate synthetic ones, "
                        "convert logs.",
                        no_args_is_help=True)


def _tier(text: str) -> Tier:
    from tokenlimit.sim.generate import ARRIVALS, Tier

    parts = text.split(":")
    if not 3 <= len(parts) <= 4:
        raise typer.BadParameter(f"{text!r}: expected NAME:USERS:RATE[:ARRIVAL]",
                                 param_hint="--tier")
    try:
        users, rate = int(parts[1]), float(parts[2])
    except ValueError:
        raise typer.BadParameter(f"{text!r}: USERS is a whole number, RATE a number",
                                 param_hint="--tier") from None
    arrival = parts[3] if len(parts) == 4 else "poisson"
    if arrival not in ARRIVALS:
        raise typer.BadParameter(f"{text!r}: ARRIVAL is one of {', '.join(ARRIVALS)}",
                                 param_hint="--tier")
    return Tier(parts[0], users=users, rate=rate, arrival=arrival)


def _load_spec(path: str) -> TraceSpec:
    from tokenlimit.sim.generate import spec_from_mapping as _spec_from_mapping

    try:
        with open(path, encoding="utf-8") as stream:
            data = yaml.safe_load(stream)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with duration, seed and tiers")
    return _spec_from_mapping(data, path)


@trace_app.command("generate")
def generate(
    output: Annotated[str, typer.Option("--output", "-o", metavar="FILE",
                                        help="Where to write: .parquet, .jsonl or .csv (.gz "
                                        "or .zst compresses text); - for JSON Lines on "
                                        "stdout.")],
    spec_path: Annotated[str | None, typer.Option(
        "--spec", metavar="FILE.yaml", help="A YAML spec: duration, start, seed, tiers.")] = None,
    tier: Annotated[list[str] | None, typer.Option(
        metavar="NAME:USERS:RATE[:ARRIVAL]",
        help="A tier (repeatable): RATE is requests/s for the whole tier; ARRIVAL is poisson "
        "(the default), bursty or diurnal. Default: the spec's, else 20 regular-user keys at "
        "0.4/s and 5 subscriber keys, bursty, at 0.1/s.")] = None,
    duration: Annotated[float | None, typer.Option(
        help="Seconds of traffic (default: the spec's, else 3600).")] = None,
    start: Annotated[float | None, typer.Option(
        help="Unix time of the start (default: the spec's, else 1700000000).")] = None,
    seed: Annotated[int | None, typer.Option(
        help="Random seed, same seed same file (default: the spec's, else 0).")] = None,
) -> None:
    """Generate a synthetic trace: tiers of users with their own arrivals and token sizes.

    Example: tokenlimit trace generate -o trace.jsonl --tier regular-user:50:2 --seed 7
    """
    batch.begin()
    from tokenlimit.sim.generate import DEFAULT_TIERS, TraceSpec, generate_trace
    from tokenlimit.sim.writers import trace_lines, write_trace

    spec = _load_spec(spec_path) if spec_path else TraceSpec()
    tiers = tuple(_tier(t) for t in tier or []) or spec.tiers or DEFAULT_TIERS
    spec = TraceSpec(duration=spec.duration if duration is None else duration,
                     start=spec.start if start is None else start,
                     seed=spec.seed if seed is None else seed, tiers=tiers)
    trace = generate_trace(spec)
    if output == "-":
        for chunk in trace_lines(trace, "jsonl"):
            sys.stdout.write(chunk)
        sys.stdout.flush()
        output = "stdout"
    else:
        write_trace(trace, output)
    import numpy as np

    typer.echo(wrote(len(trace), int(np.unique(trace.key_index).size), output), err=True)


@trace_app.command("convert")
def convert(
    source: Annotated[str, typer.Argument(metavar="LOG", help=(
        "A trace or gateway log: JSON Lines, CSV or Parquet (.gz or .zst too); a path or "
        "a URL (s3://, gs://, https://, file://, ...); or a folder or glob of files read "
        "as one."))],
    output: Annotated[str, typer.Option("--output", "-o", metavar="FILE",
                                        help="Where to write: .parquet, else JSON Lines "
                                        "(.gz or .zst compresses).")],
    preset: LogPresetOption = None,
    mapping: FieldMapOption = None,
    key_field: Annotated[str | None, typer.Option(
        help="Take the key from this field (e.g. for Mooncake traces).")] = None,
    chunk_rows: Annotated[int | None, typer.Option(
        min=1, metavar="N", help="Stream a log larger than memory in batches of about N "
        "requests (parts kept on disk beside the output until it is complete).")] = None,
) -> None:
    """Convert a gateway log (or any trace) into a canonical trace: Parquet or JSON Lines.

    Usage the log does not have (lines answered 429) stays absent, so each replay imputes it.

    Example: tokenlimit trace convert samples/logs/kong-ai-audit.jsonl --from kong -o kong.parquet
    """
    batch.begin()
    from tokenlimit.files import check_writable
    from tokenlimit.sim.convert import convert_in_chunks, convert_whole
    from tokenlimit.sim.writers import output_format

    if output == "-" or output_format(output) == "csv":
        raise typer.BadParameter("write a .parquet or .jsonl file", param_hint="--output")
    fields = read_field_map(preset, mapping, key_field is not None)
    check_writable(output)
    if chunk_rows is None:
        warn_if_too_large(source, "convert", log=fields is not None)
        requests, keys = convert_whole(source, output, key_field=key_field, fields=fields)
    else:
        requests, keys = convert_in_chunks(source, output, chunk_rows, key_field=key_field,
                                           fields=fields)
    typer.echo(wrote(requests, keys, output), err=True)


def wrote(requests: int, keys: int, output: str) -> str:
    """What ``trace generate`` and ``trace convert`` say they wrote.

    >>> wrote(1, 1, "stdout"), wrote(1823, 25, "t.jsonl")
    ('wrote 1 request for 1 key to stdout', 'wrote 1,823 requests for 25 keys to t.jsonl')
    """
    return f"wrote {counted(requests, 'request')} for {counted(keys, 'key')} to {output}"


def register(app: typer.Typer) -> None:
    app.add_typer(trace_app, name="trace")
