"""``tokenlimit mock-llm``: an OpenAI-compatible upstream with seeded, observable token usage."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tokenlimit.gateway.addresses import LOOPBACK

if TYPE_CHECKING:  # asyncio and httptools load when a server runs, not at every start-up
    from tokenlimit.gateway.mock_llm import MockLLM, MockSettings

FORMATS = ("text", "json")

CompletionTokensOption = Annotated[str, typer.Option(
    "--completion-tokens", metavar="SPEC",
    help="Completion tokens per answer: N, LOW-HIGH (uniform) or exp:MEAN.")]
SeedOption = Annotated[int, typer.Option("--seed", help="Seed of the completion-token draw.")]
TtftOption = Annotated[float, typer.Option(
    "--ttft", metavar="SECONDS", min=0, help="Time to the first token.")]
RateOption = Annotated[float, typer.Option(
    "--tokens-per-second", metavar="RATE", min=0,
    help="Generation speed after the first token (0: all at once).")]
DurationOption = Annotated[float | None, typer.Option(
    "--duration", metavar="SECONDS", min=0, help="Stop by itself after this long.")]
FormatOption = Annotated[str, typer.Option("--format", "-f", help="text or json.")]
HostOption = Annotated[str, typer.Option("--host", help="Address to listen on.")]


def check_format(output_format: str) -> None:
    """Usage error (exit 2) for an unknown --format."""
    if output_format not in FORMATS:
        raise typer.BadParameter(f"choose one of {', '.join(FORMATS)}", param_hint="--format")


def mock_settings(completion_tokens: str, seed: int, ttft: float,
                  tokens_per_second: float) -> MockSettings:
    """The mock's settings from the shared options."""
    from tokenlimit.gateway.mock_llm import MockSettings, TokenDraw

    for value, option in ((ttft, "--ttft"), (tokens_per_second, "--tokens-per-second")):
        if not math.isfinite(value):
            raise typer.BadParameter("must be a finite number", param_hint=option)
    return MockSettings(completion=TokenDraw.parse(completion_tokens), seed=seed, ttft=ttft,
                        tokens_per_second=tokens_per_second)


def mock_summary(mock: MockLLM) -> dict[str, Any]:
    """What the mock produced, for the closing report."""
    done = list(mock.completions)
    return {"requests": mock.requests, "completions": len(done),
            "prompt_tokens": sum(c.prompt_tokens for c in done),
            "completion_tokens": sum(c.completion_tokens for c in done)}


def mock_llm(
    host: HostOption = LOOPBACK,
    port: Annotated[int, typer.Option("--port", "-p", min=0, max=65535, metavar="PORT",
                                      help="Port to listen on (0: any free port).")] = 9000,
    completion_tokens: CompletionTokensOption = "60",
    seed: SeedOption = 0,
    ttft: TtftOption = 0.0,
    tokens_per_second: RateOption = 0.0,
    duration: DurationOption = None,
    output_format: FormatOption = "text",
) -> None:
    """Serve a mock OpenAI-style chat-completion API with seeded token usage until Ctrl-C
    (or --duration).

    Paths: POST /v1/chat/completions, / and /compatible-mode/v1/chat/completions; GET /__stats.

    Example: tokenlimit mock-llm --port 9000 --completion-tokens 20-80 --seed 1
    """
    from tokenlimit.gateway.mock_llm import MockLLM
    from tokenlimit.gateway.server import Listener, bind, run_foreground

    check_format(output_format)
    mock = MockLLM(mock_settings(completion_tokens, seed, ttft, tokens_per_second))
    listener = Listener("mock-llm", mock, bind(host, port))

    def started() -> None:
        if output_format == "json":
            typer.echo(json.dumps({"mock_llm": listener.url}))
        else:
            typer.echo(f"mock LLM listening on {listener.url} (Ctrl-C to stop)")

    run_foreground([listener], duration, started)
    summary = mock_summary(mock)
    if output_format == "json":
        typer.echo(json.dumps({"stopped": True, **summary}))
    else:
        typer.echo(f"stopped: {summary['requests']} requests, "
                   f"{summary['completion_tokens']} completion tokens produced")


def register(app: typer.Typer) -> None:
    app.command("mock-llm")(mock_llm)
