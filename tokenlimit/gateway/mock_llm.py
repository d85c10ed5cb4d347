"""A mock OpenAI-compatible chat-completion upstream with seeded, observable token usage.

Paths: ``POST /v1/chat/completions``, ``/compatible-mode/v1/chat/completions`` (DashScope's) and
``/`` (the ASM guide's curl posts there). ``GET /__stats`` answers what it has produced so far.

Prompt tokens, a simple documented rule (not a real tokenizer): every message costs
``4 + ceil(characters / 4)``, where characters counts the message's text content (a string, or
the ``text`` of each content part). Completion tokens: fixed, or drawn from a seeded
distribution (see :class:`TokenDraw`), capped by ``max_tokens`` / ``max_completion_tokens``
(then ``finish_reason`` is ``length``). Latency: ``ttft`` seconds before the first token, then
``tokens_per_second`` (0: all at once).

>>> prompt_tokens([{"role": "user", "content": "hello world!"}])
7
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import re
import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

from tokenlimit.errors import ConfigError
from tokenlimit.gateway.asgi import (
    ClientGone,
    Receive,
    Scope,
    Send,
    read_body,
    respond_json,
)

CHAT_PATHS = frozenset({"/", "/v1/chat/completions", "/compatible-mode/v1/chat/completions"})
STATS_PATH = "/__stats"
KEPT_COMPLETIONS = 100_000
_WORDS = ("lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit")


def prompt_tokens(messages: list[Any]) -> int:
    """The mock's prompt token count for ``messages`` (the rule in the module docstring)."""
    total = 0
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            content = "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
        text = content if isinstance(content, str) else ""
        total += 4 + math.ceil(len(text) / 4)
    return total


MAX_COMPLETION_TOKENS = 1_000_000
"""The longest answer the mock writes (its text is built in memory)."""


@dataclass(frozen=True, slots=True)
class TokenDraw:
    """How many completion tokens an answer has.

    Spec strings: ``"60"`` (always 60), ``"20-80"`` (uniform integers, both ends included),
    ``"exp:50"`` (exponential with mean 50, rounded, at least 1).

    >>> TokenDraw.parse("20-80")
    TokenDraw(kind='uniform', low=20, high=80, mean=0.0)
    """

    kind: str
    low: int = 0
    high: int = 0
    mean: float = 0.0

    @classmethod
    def parse(cls, spec: str) -> TokenDraw:
        """Parse a spec string; a bad one is a :class:`ConfigError`."""
        draw = cls._parse(spec)
        if max(draw.high, draw.mean) > MAX_COMPLETION_TOKENS:
            raise ConfigError(f"--completion-tokens {spec!r}: at most "
                              f"{MAX_COMPLETION_TOKENS:,} tokens per answer")
        return draw

    @classmethod
    def _parse(cls, spec: str) -> TokenDraw:
        text = spec.strip()
        if re.fullmatch(r"\d+", text):
            return cls("fixed", int(text), int(text))
        if m := re.fullmatch(r"(\d+)\s*-\s*(\d+)", text):
            low, high = int(m.group(1)), int(m.group(2))
            if low <= high:
                return cls("uniform", low, high)
        if (m := re.fullmatch(r"exp:(\d+(?:\.\d+)?)", text)) and float(m.group(1)) > 0:
            return cls("exp", mean=float(m.group(1)))
        raise ConfigError(f"--completion-tokens {spec!r}: give N, LOW-HIGH or exp:MEAN "
                          "(e.g. 60, 20-80, exp:50)")

    def draw(self, rng: random.Random) -> int:
        """One completion length."""
        if self.kind == "fixed":
            return self.low
        if self.kind == "uniform":
            return rng.randint(self.low, self.high)
        return min(MAX_COMPLETION_TOKENS, max(1, round(rng.expovariate(1 / self.mean))))


@dataclass(frozen=True, slots=True)
class MockSettings:
    """The mock's knobs."""

    completion: TokenDraw = TokenDraw("fixed", 60, 60)
    seed: int = 0
    ttft: float = 0.0
    tokens_per_second: float = 0.0
    model: str = "mock-llm"


@dataclass(frozen=True, slots=True)
class Completion:
    """What the mock produced for one request (its ``usage``), in arrival order."""

    id: str
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    stream: bool


@dataclass(frozen=True, slots=True)
class Received:
    """A request as the mock received it (kept in-process only: headers may carry secrets)."""

    method: str
    path: str
    query: bytes
    headers: tuple[tuple[str, str], ...]
    body: bytes


def _error(message: str, param: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error",
                      "param": param, "code": None}}


def _parse_request(body: bytes) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(request, None) or (None, OpenAI-style error body)."""
    try:
        request = json.loads(body)
    except ValueError as exc:
        return None, _error(f"We could not parse the JSON body of your request. ({exc})", None)
    if not isinstance(request, dict):
        return None, _error("The request body must be a JSON object.", None)
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        return None, _error("'messages' is a required property and must be a non-empty array.",
                            "messages")
    return request, None


class MockLLM:
    """A raw ASGI app answering chat completions."""

    def __init__(self, settings: MockSettings | None = None) -> None:
        self.settings = settings or MockSettings()
        self.rng = random.Random(self.settings.seed)
        self.completions: deque[Completion] = deque(maxlen=KEPT_COMPLETIONS)
        self.received: deque[Received] = deque(maxlen=KEPT_COMPLETIONS)
        self.requests = 0

    def stats(self) -> dict[str, Any]:
        """What ``GET /__stats`` answers."""
        return {"requests": self.requests,
                "completions": [asdict(c) for c in self.completions]}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                from tokenlimit.gateway.asgi import run_lifespan

                await run_lifespan(receive, send)
            return
        try:
            body = await read_body(receive)
        except ClientGone:
            return
        path, method = scope["path"], scope["method"]
        self.received.append(Received(
            method, path, scope.get("query_string", b""),
            tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]), body))
        if path == STATS_PATH and method == "GET":
            await respond_json(send, 200, self.stats())
        elif path not in CHAT_PATHS:
            await respond_json(send, 404, _error(f"Unknown path {path}.", None))
        elif method != "POST":
            await respond_json(send, 405, _error(f"Use POST for {path}.", None))
        else:
            await self.complete(body, send)

    def _draw(self, request: dict[str, Any]) -> tuple[Completion, str]:
        self.requests += 1
        limit = request.get("max_completion_tokens", request.get("max_tokens"))
        completion = self.settings.completion.draw(self.rng)
        finish = "stop"
        if isinstance(limit, int) and not isinstance(limit, bool) and 0 < limit < completion:
            completion, finish = limit, "length"
        prompt = prompt_tokens(request["messages"])
        done = Completion(f"chatcmpl-mock-{self.requests}", prompt, completion,
                          prompt + completion, request.get("stream") is True)
        self.completions.append(done)
        return done, finish

    async def complete(self, body: bytes, send: Send) -> None:
        """Answer one chat-completion request."""
        request, error = _parse_request(body)
        if request is None:
            await respond_json(send, 400, error)
            return
        done, finish = self._draw(request)
        model = str(request.get("model") or self.settings.model)
        if done.stream:
            options = request.get("stream_options")
            usage = isinstance(options, dict) and options.get("include_usage") is True
            await self._stream(done, finish, model, usage, send)
            return
        await self._pause(self.settings.ttft)
        await self._pause(self._generation_time(done.completion_tokens))
        words = " ".join(_WORDS[i % len(_WORDS)] for i in range(done.completion_tokens))
        await respond_json(send, 200, {
            "id": done.id, "object": "chat.completion", "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": words},
                         "finish_reason": finish}],
            "usage": self._usage(done),
        })

    @staticmethod
    def _usage(done: Completion) -> dict[str, int]:
        return {"prompt_tokens": done.prompt_tokens, "completion_tokens": done.completion_tokens,
                "total_tokens": done.total_tokens}

    def _generation_time(self, tokens: int) -> float:
        rate = self.settings.tokens_per_second
        return tokens / rate if rate > 0 else 0.0

    @staticmethod
    async def _pause(seconds: float) -> None:
        if seconds > 0:
            await asyncio.sleep(seconds)

    async def _stream(self, done: Completion, finish: str, model: str, include_usage: bool,
                      send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]})
        base = {"id": done.id, "object": "chat.completion.chunk", "created": int(time.time()),
                "model": model}
        extra: dict[str, Any] = {"usage": None} if include_usage else {}

        async def event(value: Any) -> None:
            data = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
            await send({"type": "http.response.body", "body": f"data: {data}\n\n".encode(),
                        "more_body": True})

        await self._pause(self.settings.ttft)
        await event({**base, "choices": [{"index": 0, "delta": {"role": "assistant",
                                                                 "content": ""},
                                          "finish_reason": None}], **extra})
        gap = self._generation_time(1)
        for i in range(done.completion_tokens):
            await self._pause(gap)
            word = ("" if i == 0 else " ") + _WORDS[i % len(_WORDS)]
            await event({**base, "choices": [{"index": 0, "delta": {"content": word},
                                              "finish_reason": None}], **extra})
        await event({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}],
                     **extra})
        if include_usage:
            await event({**base, "choices": [], "usage": self._usage(done)})
        await event("[DONE]")
        await send({"type": "http.response.body", "body": b"", "more_body": False})
