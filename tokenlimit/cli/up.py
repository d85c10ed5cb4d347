"""``tokenlimit up``: the rate-limit service, a mock LLM and the gateway on loopback, at once."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tokenlimit.cli.gateway import (
    FailOption,
    HostMatchOption,
    KeyTemplateOption,
    ShowRequestsOption,
    describe_config,
    event_printer,
    show_gateway_logs,
)
from tokenlimit.cli.mock_llm import (
    CompletionTokensOption,
    DurationOption,
    FormatOption,
    HostOption,
    RateOption,
    SeedOption,
    TtftOption,
    check_format,
    mock_settings,
    mock_summary,
)
from tokenlimit.cli.options import rules_option_with_default, runnable
from tokenlimit.gateway.addresses import LOOPBACK
from tokenlimit.gateway.config import build_config, load_plugin
from tokenlimit.rules import LoadedRules, load_rules, parse_rules_text

if TYPE_CHECKING:  # the servers' libraries load when `up` runs, not at every start-up
    from tokenlimit.service.runner import BackendConfig

GUIDE_HOST = "dashscope.aliyuncs.com"
GUIDE_USERS = ("regular-user", "subscriber")
GUIDE_BODY = {"messages": [{"role": "user", "content": "Who are you?"}]}
# The documentation's example rules, for an installed copy without the samples/ folder.
GUIDE_RULES = json.dumps([
    {"rate_limit_key_regex": "regular-user.*", "redis_expired_seconds": 300,
     "fill_interval_second": 30, "tokens_per_fill": 50, "max_tokens": 200},
    {"rate_limit_key_regex": "subscriber.*", "redis_expired_seconds": 600,
     "fill_interval_second": 60, "tokens_per_fill": 100, "max_tokens": 1000},
])
SAMPLE_RULES = Path(__file__).resolve().parents[2] / "samples" / "rules.json"
BUILT_IN_ORIGIN = "<built-in: the ASM guide's rules>"

PortOption = Annotated[int, typer.Option(min=0, max=65535)]


def guide_rules(source: str | None) -> LoadedRules:
    """The rules given, else samples/rules.json, else the same rules built in."""
    if source is not None:
        loaded = load_rules(source)
    elif SAMPLE_RULES.is_file():
        loaded = load_rules(str(SAMPLE_RULES))
    else:  # a user who never wrote --config-json must not be told the rules came from it
        loaded = parse_rules_text(GUIDE_RULES, BUILT_IN_ORIGIN, fmt="json")
    return runnable(loaded)


def describe_backend(backend: BackendConfig) -> str:
    """Short: where the buckets live."""
    return "memory store" if backend.kind == "memory" else backend.describe()


def curl_commands(gateway_url: str, host: str) -> list[str]:
    """The guide's two requests, aimed at the local gateway."""
    return [" ".join([
        "curl", "-s", shlex.quote(f"{gateway_url}/"),
        "-H", shlex.quote(f"Host: {host}"),
        "-H", shlex.quote("Content-Type: application/json"),
        "-H", shlex.quote(f"user-type: {user}"),
        "-d", shlex.quote(json.dumps(GUIDE_BODY)),
    ]) for user in GUIDE_USERS]


def format_guide(urls: dict[str, str], backend: str, loaded: LoadedRules,
                 gateway: dict[str, Any], curls: list[str]) -> str:
    """The start-up text: where everything listens and what to try."""
    hosts = ", ".join(gateway["host_match"]) or "every host"
    mode = "fail-open" if gateway["fail_open"] else "fail-closed"
    return "\n".join([
        "tokenlimit up: the ASM LLM token rate-limiting system on loopback",
        f"  rate-limit service  {urls['service']}  ({backend}; {len(loaded.rules)} rules "
        f"from {loaded.origin})",
        f"  mock LLM            {urls['mock_llm']}",
        f"  gateway             {urls['gateway']}  (limits {hosts} by "
        f"{' '.join(gateway['key_templates'])}, {mode})",
        "",
        "Send the guide's requests a few times each: regular-user is limited (HTTP 429,",
        "'regular-user is being rate-limited') before subscriber is.",
        "",
        *curls,
        "",
        "Ctrl-C stops all three.",
    ])


def up(
    rules: Annotated[str | None, rules_option_with_default(
        "samples/rules.json, else the ASM guide's rules built in.")] = None,
    redis_url: Annotated[str | None, typer.Option(
        "--redis-url", metavar="URL",
        help="Keep buckets in Redis (redis://:PASSWORD@HOST:PORT/DB); default: memory.")]
    = None,
    host: HostOption = LOOPBACK,
    gateway_port: Annotated[int, typer.Option(
        "--gateway-port", min=0, max=65535, metavar="PORT",
        help="Gateway port (0: any free port).")] = 10000,
    service_port: Annotated[int, typer.Option(
        "--service-port", min=0, max=65535, metavar="PORT",
        help="Service port (0: any free port).")] = 8080,
    mock_port: Annotated[int, typer.Option(
        "--mock-port", min=0, max=65535, metavar="PORT",
        help="Mock LLM port (0: any free port).")] = 9000,
    host_match: HostMatchOption = None,
    key_template: KeyTemplateOption = None,
    fail_open: FailOption = None,
    plugin: Annotated[str | None, typer.Option(
        "--plugin", metavar="WASMPLUGIN.yaml",
        help="Take hosts, keys and failStrategy from a WasmPlugin manifest (its "
        "rateLimitService is replaced by the local service).")] = None,
    completion_tokens: CompletionTokensOption = "60",
    seed: SeedOption = 0,
    ttft: TtftOption = 0.0,
    tokens_per_second: RateOption = 0.0,
    show_requests: ShowRequestsOption = True,
    duration: DurationOption = None,
    output_format: FormatOption = "text",
) -> None:
    """Run the rate-limit service, a mock LLM and the gateway on loopback until Ctrl-C (or
    --duration).

    Prints the ASM guide's two curl commands, aimed at the local gateway.

    Example: tokenlimit up --rules samples/rules.json
    """
    from tokenlimit.gateway.mock_llm import MockLLM
    from tokenlimit.gateway.proxy import Gateway
    from tokenlimit.gateway.server import Listener, bind, run_foreground
    from tokenlimit.service.app import ServiceOptions
    from tokenlimit.service.runner import backend_config, running_service

    check_format(output_format)
    ports = [p for p in (gateway_port, service_port, mock_port) if p]
    if len(set(ports)) != len(ports):
        raise typer.BadParameter("--gateway-port, --service-port and --mock-port must differ "
                                 "(or be 0)", param_hint="--gateway-port")
    loaded = guide_rules(rules)
    backend = backend_config(None, redis_url, environ={})
    mock = MockLLM(mock_settings(completion_tokens, seed, ttft, tokens_per_second))
    settings = load_plugin(plugin) if plugin else None
    hosts = list(host_match or (settings.hosts if settings else ()) or [GUIDE_HOST])
    with running_service(loaded, host=host, port=service_port, backend=backend,
                         options=ServiceOptions(rate_headers=True)) as service:
        mock_listener = Listener("mock-llm", mock, bind(host, mock_port))
        config = build_config(upstream=mock_listener.url, service=service.url,
                              key_templates=key_template or (), hosts=hosts,
                              fail_open=fail_open, plugin=settings)
        if service.backend_error is not None:
            then = "lets requests through" if config.fail_open else "answers 503"
            typer.echo(f"warning: {service.backend_error}: every check fails until it "
                       f"answers, and the gateway {then}", err=True)
        gateway = Gateway(config,
                          on_event=event_printer(output_format) if show_requests else None)
        gateway_listener = Listener("gateway", gateway, bind(host, gateway_port))
        urls = {"service": service.url, "mock_llm": mock_listener.url,
                "gateway": gateway_listener.url}
        curls = curl_commands(gateway_listener.url, hosts[0])
        show_gateway_logs()

        def started() -> None:
            if output_format == "json":
                typer.echo(json.dumps({**urls, "backend": backend.kind,
                                       "rules": [r.to_config() for r in loaded.rules],
                                       **describe_config(config), "curl": curls}))
            else:
                typer.echo(format_guide(urls, describe_backend(backend), loaded,
                                        describe_config(config), curls))

        # Listed mock first: the gateway stops first, sending its last reports meanwhile.
        run_foreground([mock_listener, gateway_listener], duration, started)
    stats, produced = gateway.stats.to_dict(), mock_summary(mock)
    if output_format == "json":
        typer.echo(json.dumps({"stopped": True, "gateway": stats, "mock_llm": produced}))
    else:
        typer.echo(f"stopped: {stats['allowed']} allowed, {stats['limited']} limited, "
                   f"{stats['reports']} usage reports; all three servers shut down")


def register(app: typer.Typer) -> None:
    app.command("up")(up)
