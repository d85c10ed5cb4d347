"""``tokenlimit serve``: the drop-in rate-limit service."""

from __future__ import annotations

import dataclasses
import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from tokenlimit.bucket.types import Charge
from tokenlimit.cli.options import EstimateOption, estimate_policy, rules_option_with_default
from tokenlimit.errors import ConfigError
from tokenlimit.rules import ENV_VAR, LoadedRules, load_rules
from tokenlimit.service.backends import BACKENDS

if TYPE_CHECKING:  # the service (asyncio, uvloop) loads when `serve` runs
    from tokenlimit.service.app import FailMode, Mode


def _rules_loader(source: str | None) -> LoadedRules:
    if source is not None:
        return load_rules(source)
    if ENV_VAR not in os.environ:
        raise ConfigError(f"no rules: give --rules SOURCE or set {ENV_VAR} (the example exits "
                          "at start-up without it)")
    return load_rules(from_env=True)


def serve(
    rules: Annotated[str | None, rules_option_with_default(
        f"the {ENV_VAR} environment variable, as the example reads it.")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on; 0.0.0.0 in a container.")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option(
        "--port", "-p", metavar="PORT", help="Port to listen on (the example's is 8080).")] = 8080,
    backend: Annotated[str | None, typer.Option(
        help=f"{'|'.join(BACKENDS)}; default: redis when --redis-url or REDIS_ADDRESS is set, "
        "else memory.")] = None,
    redis_url: Annotated[str | None, typer.Option(
        metavar="URL", help="redis://:PASSWORD@HOST:PORT/DB (password and db optional); "
        "default: REDIS_ADDRESS, REDIS_PASSWORD, REDIS_DB_INDEX.")] = None,
    redis_timeout: Annotated[float, typer.Option(
        help="Seconds before a Redis call counts as failed.")] = 1.0,
    mode: Annotated[str, typer.Option(
        help="compat (the example) or reserve (reserve an estimate at check time).")] = "compat",
    estimate: EstimateOption = None,
    shadow: Annotated[bool, typer.Option(
        help="Decide and count, but always answer allow.")] = False,
    fail_open: Annotated[bool, typer.Option(
        "--fail-open", help="Backend errors allow (the example answers 400).")] = False,
    fail_closed: Annotated[bool, typer.Option(
        "--fail-closed", help="Backend errors deny.")] = False,
    charge: Annotated[str, typer.Option(
        help="Tokens a report charges: completion (the example) or total.")] = "completion",
    strict_input: Annotated[bool, typer.Option(
        help="Malformed keys or bodies and negative counts: 400 with a JSON error.")] = False,
    rate_headers: Annotated[bool, typer.Option(
        help="Add x-ratelimit-remaining-tokens and retry-after to answers.")] = False,
    max_body_bytes: Annotated[int, typer.Option(
        help="Larger report bodies get 413.")] = 1 << 20,
    clock_offset: Annotated[float, typer.Option(
        help="Debugging: run this many seconds ahead of the real clock (the time is passed to "
        "the scripts instead of Redis TIME).")] = 0.0,
    stop_grace: Annotated[float, typer.Option(
        help="On SIGTERM/SIGINT: seconds to answer requests already read before exiting.")]
    = 5.0,
    idle_timeout: Annotated[float, typer.Option(
        help="Seconds an idle keep-alive connection is kept (above Envoy's 1 h default).")]
    = 3900.0,
    request_timeout: Annotated[float, typer.Option(
        help="Seconds a client has to send a whole request once it has begun.")] = 60.0,
    max_in_flight: Annotated[int, typer.Option(
        help="Requests read but not yet answered, over all connections (reading pauses "
        "beyond; 64 per connection).")] = 2048,
    max_memory_mb: Annotated[int, typer.Option(
        help="Memory backend: megabytes its keys may take; past it new keys fail as Redis's "
        "maxmemory does (checks 400, reports 500), so the process stays in its limit.")]
    = 64,
    workers: Annotated[int, typer.Option(
        help="Processes sharing the port (Redis backends only; metrics are per worker).")] = 1,
    redis_client: Annotated[str, typer.Option(
        hidden=True, help="auto, builtin or redis-py (benchmarks compare the two).")] = "auto",
    stop_after: Annotated[float | None, typer.Option(
        hidden=True, help="Stop after this many seconds (tests and benchmarks).")] = None,
) -> None:
    """Run the rate-limit service: the ASM example's API, rules and Redis layout.

    Example: REDIS_ADDRESS=127.0.0.1:6379 tokenlimit serve --rules samples/rules.json
    """
    if mode not in ("compat", "reserve"):
        raise typer.BadParameter("choose compat or reserve", param_hint="--mode")
    if charge not in ("completion", "total"):
        raise typer.BadParameter("choose completion or total", param_hint="--charge")
    if fail_open and fail_closed:
        raise typer.BadParameter("give only one of --fail-open and --fail-closed")
    if not 0 < port < 65536:
        raise typer.BadParameter("must be 1-65535", param_hint="--port")
    if not math.isfinite(clock_offset):
        raise typer.BadParameter("must be a finite number of seconds",
                                 param_hint="--clock-offset")
    if clock_offset < 0:
        raise typer.BadParameter("must not be negative: Redis would expire keys before the "
                                 "scripts expect", param_hint="--clock-offset")
    if not (math.isfinite(redis_timeout) and redis_timeout > 0):
        raise typer.BadParameter("must be a finite number of seconds > 0",
                                 param_hint="--redis-timeout")
    if max_body_bytes < 0:
        raise typer.BadParameter("must not be negative", param_hint="--max-body-bytes")
    if backend is not None and backend not in BACKENDS:
        raise typer.BadParameter(f"choose one of {', '.join(BACKENDS)}", param_hint="--backend")
    if estimate and mode != "reserve":
        raise typer.BadParameter("estimates are used only with --mode reserve",
                                 param_hint="--estimate")
    if workers < 1:
        raise typer.BadParameter("must be at least 1", param_hint="--workers")
    for value, hint in ((stop_grace, "--stop-grace"), (idle_timeout, "--idle-timeout"),
                        (request_timeout, "--request-timeout")):
        if not (math.isfinite(value) and value >= 0):
            raise typer.BadParameter("must be a finite number of seconds >= 0", param_hint=hint)
    if max_memory_mb < 1:
        raise typer.BadParameter("must be at least 1", param_hint="--max-memory-mb")
    if max_in_flight < 1:
        raise typer.BadParameter("must be at least 1", param_hint="--max-in-flight")
    import asyncio

    from tokenlimit.eventloop import new_event_loop
    from tokenlimit.service.app import RateLimitApp, ServiceOptions
    from tokenlimit.service.http import Limits
    from tokenlimit.service.reuseport import run_workers
    from tokenlimit.service.runner import (
        backend_config,
        build_store,
        check_rules,
        json_logger,
        listen_failure,
        log_findings,
        serve_forever,
    )

    fail: FailMode = "open" if fail_open else "closed" if fail_closed else "compat"
    policy = estimate_policy(estimate)
    loaded = _rules_loader(rules)
    warnings = check_rules(loaded)
    if redis_client not in ("auto", "builtin", "redis-py"):
        raise typer.BadParameter("choose auto, builtin or redis-py", param_hint="--redis-client")
    chosen = dataclasses.replace(
        backend_config(backend, redis_url, timeout=redis_timeout,
                       client="redis-py" if redis_client == "redis-py" else "auto"),
        memory_limit=max_memory_mb << 20)
    if workers > 1 and chosen.kind == "memory":
        raise ConfigError("--workers > 1 needs a Redis backend: memory state is per process")
    log = json_logger()
    log("starting", backend=chosen.describe(), rules=loaded.origin)
    log_findings(log, warnings)
    mode_value: Mode = "reserve" if mode == "reserve" else "compat"
    charge_value: Charge = "total" if charge == "total" else "completion"
    options = ServiceOptions(mode_value, policy, shadow, fail, charge_value, strict_input,
                             rate_headers, max_body_bytes)
    watch = Path(rules) if rules not in (None, "-") else None
    reload = (lambda: _rules_loader(rules)) if rules != "-" else None

    def run_one(worker: int) -> None:
        clock = (lambda: time.time() + clock_offset) if clock_offset else None
        store = build_store(chosen, loaded.rules, clock)
        app = RateLimitApp(store, loaded.rules, options, log=log)
        loop = new_event_loop()
        try:
            loop.run_until_complete(serve_forever(
                app, host, port, reload=reload, watch=watch, log=log, stop_after=stop_after,
                reuse_port=workers > 1, stop_grace=stop_grace,
                limits=Limits(idle_timeout, request_timeout, min(64, max_in_flight),
                              max_in_flight)))
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port}: {listen_failure(exc)}") from exc
        finally:
            loop.close()
            asyncio.set_event_loop(None)

    if workers == 1:
        run_one(0)
    elif run_workers(workers, run_one) != 0:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
