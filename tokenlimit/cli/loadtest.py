"""``tokenlimit loadtest``: drive load against a live limiter and check what it let through."""

from __future__ import annotations

import dataclasses
import json
import math
import secrets
import signal
import sys
import threading
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tokenlimit.cli.options import (
    ConfigJsonOption,
    FieldMapOption,
    FromEnvOption,
    LogPresetOption,
    read_field_map,
    read_rules,
    runnable,
)
from tokenlimit.errors import ConfigError, RemoteError
from tokenlimit.rules import Rule

if TYPE_CHECKING:  # the load machinery (asyncio, numpy) and rich load when a run starts
    from rich.text import Text

    from tokenlimit.load.driver import LoadPlan, Shape
    from tokenlimit.load.run_report import LoadReport
    from tokenlimit.load.run_stats import RunStats
    from tokenlimit.load.schedule import Schedule

FORMATS = ("text", "json")
DEFAULT_REQUESTS = 100
DEFAULT_DURATION = 10.0
REQUESTS_ONLY_DURATION = 60.0


def _format_progress(stats: RunStats, elapsed: float) -> Text:
    from rich.text import Text

    done = stats.answered
    limited = stats.outcomes["limited"]
    p99 = stats.latency.percentile_us(99)
    p99_text = "-" if p99 is None else f"{p99 / 1000:.2f} ms"
    rate = done / elapsed if elapsed > 0 else 0.0
    return Text(f"{elapsed:6.1f} s  sent {stats.sent}  answered {done}  {rate:,.0f}/s  "
                f"errors {stats.outcomes['error']}  limited "
                f"{100 * limited / done if done else 0:.1f}%  p99 {p99_text}")


def _positive(value: float, option: str) -> None:
    """A usage error unless ``value`` is a finite number > 0 (nan and inf are refused)."""
    if not 0 < value < math.inf:
        raise typer.BadParameter(f"must be a finite number > 0, got {value:g}",
                                 param_hint=option)


def _plan(target: str, mode: str, keys: list[str], concurrency: int | None, rate: float | None,
          poisson: bool, ramp: str | None, replay: str | None, speed: float | None,
          duration: float | None, requests: int | None, templates: list[str],
          key_field: str | None, **rest: Any) -> LoadPlan:
    from tokenlimit.cli.loadtest_replay import read_replay, warn_lost_rules
    from tokenlimit.load.driver import LoadPlan
    from tokenlimit.load.modes import MODES, KeySpec
    from tokenlimit.load.schedule import (
        ConstantRate,
        PoissonRate,
        ReplaySchedule,
        parse_ramp,
        ramp_duration,
    )

    if mode not in MODES:
        raise typer.BadParameter(f"choose one of {', '.join(MODES)}", param_hint="--mode")
    shapes = [name for name, given in (("--concurrency", concurrency is not None),
                                       ("--rate", rate is not None), ("--ramp", ramp),
                                       ("--replay", replay is not None)) if given]
    if len(shapes) > 1:
        raise typer.BadParameter(f"give one load shape, not {' and '.join(shapes)}")
    specs = tuple(KeySpec.parse(k) for k in keys) or (KeySpec("user-type", "regular-user", 1),)
    suffix = "-" + secrets.token_hex(4) if rest.pop("unique_keys") else ""
    fields = rest.pop("fields", None)
    rules = rest.pop("rules", None)
    if suffix and rules and replay is None:
        warn_lost_rules([s.value for s in specs], suffix, rules)
    specs = tuple(dataclasses.replace(s, value=s.value + suffix) for s in specs)
    if (templates or key_field) and replay is None:
        raise typer.BadParameter("only with --replay", param_hint="--key-template/--key-field")
    if fields is not None and replay is None:
        raise typer.BadParameter("only with --replay", param_hint="--from/--map")
    if speed is not None and replay is None:
        raise typer.BadParameter("only with --replay", param_hint="--speed")
    speed = 1.0 if speed is None else speed
    schedule: Schedule | None = None
    shape: Shape = "open"
    replayed = None
    if rate is not None:
        _positive(rate, "--rate")
        schedule = PoissonRate(rate, rest["seed"]) if poisson else ConstantRate(rate)
    elif ramp is not None:
        schedule = parse_ramp(ramp)
        duration = duration if duration is not None else ramp_duration(schedule)
    elif replay is not None:  # "" too: an empty path is an error, not a closed loop
        _positive(speed, "--speed")
        replayed = read_replay(replay, templates, key_field, rest["seed"], fields, rules)
        if suffix:  # --unique-keys: the trace's keys too
            if rules:
                warn_lost_rules(dict.fromkeys(k for r in replayed for k in r.keys), suffix,
                                 rules)
            replayed = tuple(dataclasses.replace(r, keys=tuple(k + suffix for k in r.keys))
                             for r in replayed)
        schedule = ReplaySchedule(tuple(r.ts for r in replayed), speed)
        rest["replay_speed"] = speed
        rest["start_fraction"] = replayed[0].ts % 1.0
        if duration is None:  # the trace's span, its last usage report, and a second
            last = max(r.ts + max(r.latency, 0.0) for r in replayed)
            duration = (last - replayed[0].ts) / speed + 1.0
    else:
        shape = "closed"
    if duration is None and requests is None:
        duration, requests = DEFAULT_DURATION, DEFAULT_REQUESTS if replayed is None else None
    elif duration is None:
        duration = REQUESTS_ONLY_DURATION
    _positive(duration, "--duration")
    if requests is not None and requests <= 0:
        raise typer.BadParameter("must be > 0", param_hint="--requests")
    return LoadPlan(
        target, mode=mode,
        keys=specs, shape=shape, concurrency=concurrency or 1, schedule=schedule,
        duration=duration, requests=requests, replay=replayed, **rest)


def loadtest(
    target: Annotated[str, typer.Argument(
        metavar="TARGET_URL", help="The gateway (or LLM) URL, or the rate-limit service's base "
        "URL with --mode service.")],
    mode: Annotated[str, typer.Option("--mode", "-m", help="gateway or service.")] = "gateway",
    rules_source: Annotated[str | None, typer.Option(
        "--rules", "-r", metavar="SOURCE", help="Rules to check conformance against "
        "(any source validate reads).")] = None,
    config_json: ConfigJsonOption = None,
    from_env: FromEnvOption = False,
    keys: Annotated[list[str] | None, typer.Option(
        "--key", "-k", metavar="HEADER=VALUE:WEIGHT",
        help="A weighted key (repeatable), e.g. user-type=regular-user:3.")] = None,
    concurrency: Annotated[int | None, typer.Option(
        "--concurrency", "-c", min=1, help="Closed loop: N users (the default shape, 1).")] = None,
    rate: Annotated[float | None, typer.Option(
        "--rate", help="Open loop: R requests per second.")] = None,
    poisson: Annotated[bool, typer.Option(
        "--poisson", help="With --rate: Poisson arrivals instead of even spacing.")] = False,
    ramp: Annotated[str | None, typer.Option(
        "--ramp", metavar="RxS,...", help="Stepped open loop, e.g. 10x2,50x2,100x5 "
        "(R per second for S seconds).")] = None,
    replay: Annotated[str | None, typer.Option(
        "--replay", metavar="TRACE", help="Send a trace's requests at its times (any trace "
        "simulate reads: JSON Lines, CSV or Parquet, .gz or .zst too; a gateway log with "
        "--from).")] = None,
    key_template: Annotated[list[str] | None, typer.Option(
        "--key-template", metavar="TEMPLATE", help="With --replay: render each line's key from "
        "its headers (and path, host, method), e.g. '{{request.headers.user-type}}'.")] = None,
    key_field: Annotated[str | None, typer.Option(
        "--key-field", metavar="FIELD", help="With --replay: take the key from this field "
        "(e.g. for Mooncake traces).")] = None,
    preset: LogPresetOption = None,
    mapping: FieldMapOption = None,
    speed: Annotated[float | None, typer.Option(
        "--speed", help="With --replay: play the trace N times faster (default 1); in service "
        "mode its recorded latencies (when usage is reported) are divided by N too.")] = None,
    duration: Annotated[float | None, typer.Option(
        "--duration", "-d", help=f"Seconds (default {DEFAULT_DURATION:g}).")] = None,
    requests: Annotated[int | None, typer.Option(
        "--requests", "-n", help=f"Requests at most (default {DEFAULT_REQUESTS}).")] = None,
    workers: Annotated[int, typer.Option("--workers", "-w", min=1, max=64,
                                         help="Processes generating load.")] = 1,
    connections: Annotated[int, typer.Option("--connections", min=1,
                                             help="Open connections at most per worker.")] = 256,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds per request.")] = 10.0,
    stream: Annotated[bool, typer.Option("--stream", help="Gateway mode: streaming "
                                         "requests (SSE); reports time to first byte.")] = False,
    model: Annotated[str, typer.Option("--model", help="Model name sent.")] = "tokenlimit-load",
    unique_keys: Annotated[bool, typer.Option(
        "--unique-keys", help="Append one random suffix to every key value, so the run starts "
        "from fresh buckets (rules match keys by unanchored search).")] = False,
    insecure: Annotated[bool, typer.Option(
        "--insecure", help="https:// targets: do not check the server's certificate.")] = False,
    ca_cert: Annotated[str | None, typer.Option(
        "--ca-cert", metavar="FILE.pem", help="https:// targets: trust this CA (PEM) instead "
        "of the system's.")] = None,
    host_header: Annotated[str | None, typer.Option(
        "--host-header", metavar="HOST", help="Host header to send (e.g. the host a gateway "
        "limits: dashscope.aliyuncs.com).")] = None,
    tokens: Annotated[str, typer.Option("--tokens", metavar="N|LO-HI", help="Service mode: "
                                        "completion tokens reported.")] = "20-200",
    prompt_tokens: Annotated[int, typer.Option("--prompt-tokens", min=0,
                                               help="Service mode: prompt tokens.")] = 20,
    latency: Annotated[str, typer.Option("--latency", metavar="S|LO-HI", help="Service mode: "
                                         "seconds from check to report.")] = "0-0.05",
    report_window: Annotated[float, typer.Option(
        "--report-window", help="Gateway mode: seconds after an answer by which the gateway "
        "has reported its usage (conformance).")] = 0.02,
    tolerance: Annotated[float, typer.Option(
        "--tolerance", help="Seconds of clock uncertainty added to every window.")] = 0.001,
    seed: Annotated[int, typer.Option("--seed", help="Seed for keys, tokens, latency.")] = 0,
    output: Annotated[str | None, typer.Option("--output", "-o", metavar="FILE",
                                               help="Write the JSON report here.")] = None,
    plot: Annotated[str | None, typer.Option("--plot", metavar="FILE.png",
                                             help="Write a plot of the run.")] = None,
    output_format: Annotated[str, typer.Option("--format", "-f", help="text or json.")] = "text",
    top: Annotated[int, typer.Option("--top", min=1, help="Keys in the text report's table, "
                                     "most requests first (the JSON report has every key).")
                   ] = 10,
    strict: Annotated[bool, typer.Option(
        "--strict", help="Exit 1 when conformance finds the limiter off its rules.")] = False,
) -> None:
    """Drive load against a live limiter and check what it let through.

    It sends chat completions through a gateway (--mode gateway, the default) or the plug-in's
    check and report calls straight to the rate-limit service (--mode service): in a closed
    loop (--concurrency), at a steady or Poisson rate (--rate), in steps (--ramp) or as a
    recorded trace (--replay). It reports throughput, latency percentiles, statuses and each
    key's outcomes, and with --rules checks every answer against what the rules allow. A run
    stops by itself after --duration seconds or --requests requests (10 s or 100 by default);
    Ctrl-C stops it early with a partial report (exit 130; SIGTERM: 143). `tokenlimit loadtest merge
    A.json B.json` merges reports exactly (see its --help).

    Example: tokenlimit loadtest http://127.0.0.1:8080 --mode service -r samples/rules.json -n 200
    """
    from tokenlimit.files import check_writable
    from tokenlimit.load.client import Target, tls_context
    from tokenlimit.load.modes import Range, has_control

    if output_format not in FORMATS:
        raise typer.BadParameter(f"choose one of {', '.join(FORMATS)}", param_hint="--format")
    rules: list[Rule] | None = None
    if rules_source is not None or config_json is not None or from_env:
        rules = list(runnable(read_rules(rules_source, config_json, from_env)).rules)
    _positive(timeout, "--timeout")
    for value, option in ((tolerance, "--tolerance"), (report_window, "--report-window")):
        if not 0 <= value < math.inf:
            raise typer.BadParameter(f"must be a finite number >= 0, got {value:g}",
                                     param_hint=option)
    if host_header is not None and (not host_header or has_control(host_header)):
        raise typer.BadParameter("give a host name without control characters",
                                 param_hint="--host-header")
    try:
        parsed_target = Target.parse(target)
        if parsed_target.query and mode == "service":
            raise typer.BadParameter("the service's base URL takes no query (its paths and "
                                     "query are the plug-in's)", param_hint="TARGET_URL")
        if (insecure or ca_cert) and not parsed_target.tls:
            raise typer.BadParameter("only with an https:// target",
                                     param_hint="--insecure/--ca-cert")
        if insecure and ca_cert:
            raise typer.BadParameter("give one of them", param_hint="--insecure/--ca-cert")
        fields = read_field_map(preset, mapping, bool(key_field or key_template))
        plan = _plan(target, mode, keys or [], concurrency, rate, poisson, ramp, replay,
                     speed, duration, requests, key_template or [], key_field, fields=fields,
                     timeout=timeout, connections=connections, seed=seed, stream=stream,
                     model=model, host_header=host_header, unique_keys=unique_keys,
                     tokens=Range.parse(tokens, "--tokens"), prompt_tokens=prompt_tokens,
                     latency=Range.parse(latency, "--latency"), report_window=report_window,
                     observe=rules is not None, rules=rules, insecure=insecure,
                     ca_cert=ca_cert)
    except ConfigError as exc:  # a bad option value (--key, --tokens, --ramp, TARGET_URL)
        raise typer.BadParameter(str(exc)) from None
    if plan.shape == "closed" and workers > plan.concurrency:
        # Each worker runs at least one user: more workers than users ran more users than
        # asked (and the report said the users asked for).
        raise typer.BadParameter(f"{workers} workers for --concurrency {plan.concurrency}: "
                                 "each worker runs one user at least; give --concurrency "
                                 f"{workers} or more, or fewer workers", param_hint="--workers")
    if parsed_target.tls:
        tls_context(insecure=insecure, ca_cert=ca_cert)  # a bad --ca-cert file: exit 1 now
    for path in (output, plot):
        if path:
            check_writable(path)  # before the run, not after it
    report, stopped_by = _run(plan, workers, rules, tolerance)
    _finish(report, output, plot, output_format, rules, strict, top,
            interrupted_status=128 + stopped_by)


def _run(plan: LoadPlan, workers: int, rules: list[Rule] | None,
         tolerance: float) -> tuple[LoadReport, int]:
    """Run ``plan``; the report, and the signal that stopped it (``SIGINT`` when none did).

    ``SIGTERM`` (a cancelled CI job, ``kill``) stops a run as Ctrl-C does: a partial report,
    and no worker left sending load after the command is gone.
    """
    from rich.console import Console
    from rich.live import Live
    from rich.text import Text

    from tokenlimit.load.loadtest import run_loadtest

    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        received.append(signum)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    console = Console(stderr=True)
    try:
        if not sys.stderr.isatty():
            report = run_loadtest(plan, workers=workers, rules=rules, tolerance=tolerance,
                                  stop=stop)
        else:
            with Live(Text("starting..."), console=console, transient=True,
                      refresh_per_second=4) as live:
                report = run_loadtest(
                    plan, workers=workers, rules=rules, tolerance=tolerance, stop=stop,
                    on_tick=lambda s, e: live.update(_format_progress(s, e)))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return report, received[0] if received else signal.SIGINT


def _finish(report: LoadReport, output: str | None, plot: str | None, output_format: str,
            rules: list[Rule] | None, strict: bool, top: int, merged: bool = False,
            interrupted_status: int = 130) -> None:
    """Write and print ``report``, then exit as documented: ``interrupted_status`` when the
    run was stopped (130 for Ctrl-C, 143 for SIGTERM); ``merged``: the report is ``loadtest
    merge``'s, which was not itself interrupted (no such status for a run stopped then)."""
    from tokenlimit.files import write_atomic
    from tokenlimit.load.run_report import format_report

    data = report.to_dict()
    # Printed first: a run's results are not lost when a file cannot be written at the end
    # (its folder removed or the disk full during the run).
    if output_format == "json":
        summary = {k: v for k, v in data.items() if k != "raw"}
        typer.echo(json.dumps(summary, indent=2))
    else:
        typer.echo(format_report(report, top))
    if output:
        write_atomic(output, (json.dumps(data, indent=2) + "\n").encode())
    if plot:
        from tokenlimit.load.run_plot import write_plot

        if rules is None and report.rules:
            from tokenlimit.rules import load_rules

            rules = list(load_rules(config_json=json.dumps(report.rules)).rules)
        write_plot(report, rules, plot)
    if report.interrupted:
        typer.echo("interrupted: a merged run was stopped early (its part is partial)"
                   if merged else "interrupted: the report covers the requests answered so far",
                   err=True)
    if strict and report.conformance is not None and report.conformance.findings():
        raise typer.Exit(1)
    if report.interrupted and not merged:
        raise typer.Exit(interrupted_status)
    stats = report.stats
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(stats.errors.items()))
    if stats.sent and not stats.answered:
        unfinished = stats.sent - stats.completed
        kinds = ", ".join(k for k in (kinds, unfinished and f"unanswered {unfinished}") if k)
        raise RemoteError(f"{report.target}: no request was answered ({kinds})")
    if stats.completed and stats.outcomes["error"] == stats.completed:  # answered, not as asked
        codes = ", ".join(f"HTTP {k} {v}" for k, v in sorted(stats.statuses.items()))
        kinds = ", ".join(k for k in (kinds, codes) if k)
        raise RemoteError(f"{report.target}: every request failed ({kinds})")

