"""``tokenlimit gateway``: the plug-in's behaviour (check, forward, report) as a reverse proxy."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tokenlimit.cli.mock_llm import DurationOption, FormatOption, HostOption, check_format
from tokenlimit.gateway.addresses import LOOPBACK
from tokenlimit.gateway.config import GatewayConfig, build_config, load_plugin
from tokenlimit.gateway.health import GatewayEvent

if TYPE_CHECKING:  # httptools loads when the gateway runs, not at every start-up
    from tokenlimit.gateway.proxy import Gateway

KeyTemplateOption = Annotated[list[str] | None, typer.Option(
    "--key-template", metavar="TEMPLATE",
    help="Rate-limit key template, repeatable, e.g. '{{request.headers.user-type}}' "
    "(the default).")]
HostMatchOption = Annotated[list[str] | None, typer.Option(
    "--host-match", metavar="HOST",
    help="Exact host to limit, repeatable; requests to other hosts pass untouched.")]
FailOption = Annotated[bool | None, typer.Option(
    "--fail-open/--fail-closed",
    help="When the service is down or answers non-200: let requests through, or answer 503 "
    "(default: fail-open, or the --plugin's failStrategy).")]
PluginOption = Annotated[str | None, typer.Option(
    "--plugin", metavar="WASMPLUGIN.yaml",
    help="Take hosts, keys, service and failStrategy from a WasmPlugin manifest; "
    "options given as well win.")]
ShowRequestsOption = Annotated[bool, typer.Option(
    "--show-requests/--hide-requests",
    help="Print a line for each request's decision and each usage report.")]
ServiceTimeoutOption = Annotated[float, typer.Option(
    "--service-timeout", metavar="SECONDS", min=0.001, max=3600,
    help="Timeout of each call to the rate-limit service.")]


class _StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is at the time of the record (the CLI runner swaps it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            self.handleError(record)


def show_gateway_logs() -> None:
    """Send the gateway's outage warnings to stderr (once: repeated commands share a process)."""
    logger = logging.getLogger("tokenlimit.gateway")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s gateway: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.WARNING)


def format_event(event: GatewayEvent, output_format: str, now: float | None = None) -> str:
    """One live line: a decision or a usage report (JSON: one object per line).

    >>> format_event(GatewayEvent("limited", "POST", "/", "h", ("regular-user",), 429,
    ...                           "regular-user is being rate-limited"), "text", now=0.0)[9:]
    '429 POST / [regular-user] regular-user is being rate-limited'
    """
    stamp = time.time() if now is None else now
    if output_format == "json":
        return json.dumps({"event": event.kind, "time": round(stamp, 3), "method": event.method,
                           "path": event.path, "host": event.host, "keys": list(event.keys),
                           "status": event.status, "detail": event.detail})
    parts = [time.strftime("%H:%M:%S", time.localtime(stamp))]
    keys = "[" + ", ".join(event.keys) + "]"
    if event.kind in ("reported", "report_failed"):
        parts += ["reported" if event.kind == "reported" else "report FAILED", keys, event.detail]
        return " ".join(parts)
    parts += ["---" if event.status is None else str(event.status), event.method, event.path]
    if event.kind == "unmatched":
        parts.append(f"(host {event.host!r} not limited)")
    else:
        parts.append(keys)
    notes = {"failed_open": "(service down: fail-open)",
             "failed_closed": "(service down: fail-closed)"}
    note = notes.get(event.kind, event.detail)
    if note and event.kind != "unmatched":
        parts.append(note)
    return " ".join(parts)


def event_printer(output_format: str) -> Callable[[GatewayEvent], None]:
    """An ``on_event`` sink that prints each event at once."""

    def show(event: GatewayEvent) -> None:
        typer.echo(format_event(event, output_format))

    return show


def describe_config(config: GatewayConfig) -> dict[str, Any]:
    """The gateway's settings as JSON-ready values."""
    return {"upstream": config.upstream, "service": config.service,
            "key_templates": config.key_templates, "host_match": list(config.hosts),
            "fail_open": config.fail_open}


def gateway(
    upstream: Annotated[str, typer.Option("--upstream", "-u", metavar="URL",
                                          help="The LLM API to forward to.")],
    service: Annotated[str | None, typer.Option(
        "--service", "-s", metavar="URL",
        help="The rate-limit service (required unless --plugin names one).")] = None,
    key_template: KeyTemplateOption = None,
    host_match: HostMatchOption = None,
    fail_open: FailOption = None,
    plugin: PluginOption = None,
    service_timeout: ServiceTimeoutOption = 2.0,
    show_requests: ShowRequestsOption = False,
    host: HostOption = LOOPBACK,
    port: Annotated[int, typer.Option("--port", "-p", min=0, max=65535, metavar="PORT",
                                      help="Port to listen on (0: any free port).")] = 10000,
    duration: DurationOption = None,
    output_format: FormatOption = "text",
) -> None:
    """Proxy LLM requests as the ASM plug-in does: check, forward or answer 429, report usage.

    Each matched request is checked with the rate-limit service before it is forwarded.

    Example: tokenlimit gateway -u http://127.0.0.1:9000 -s http://127.0.0.1:8080
    """
    from tokenlimit.gateway.proxy import Gateway
    from tokenlimit.gateway.server import Listener, bind, run_foreground

    check_format(output_format)
    settings = load_plugin(plugin) if plugin else None
    config = build_config(upstream=upstream, service=service, key_templates=key_template or (),
                          hosts=host_match or (), fail_open=fail_open, plugin=settings,
                          service_timeout=service_timeout)
    app = Gateway(config, on_event=event_printer(output_format) if show_requests else None)
    listener = Listener("gateway", app, bind(host, port))
    show_gateway_logs()

    def started() -> None:
        if output_format == "json":
            typer.echo(json.dumps({"gateway": listener.url, **describe_config(config)}))
            return
        hosts = ", ".join(config.hosts) or "every host"
        typer.echo(f"gateway listening on {listener.url} -> {config.upstream}\n"
                   f"  limits {hosts} with keys {config.key_templates} "
                   f"(service {config.service}, "
                   f"{'fail-open' if config.fail_open else 'fail-closed'}); Ctrl-C to stop")

    run_foreground([listener], duration, started)
    typer.echo(format_stats(app, output_format))


def format_stats(app: Gateway, output_format: str) -> str:
    """The gateway's closing report."""
    stats = app.stats.to_dict()
    if output_format == "json":
        return json.dumps({"stopped": True, "stats": stats})
    return "stopped: " + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in stats.items())


def register(app: typer.Typer) -> None:
    app.command("gateway")(gateway)
