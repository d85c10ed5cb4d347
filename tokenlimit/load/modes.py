"""What one request is in each mode: gateway (chat completions) and service (check + report).

A mode turns the n-th planned request into HTTP exchanges, records the outcome in
``RunStats`` and, when conformance is asked for, one ``Observation``: when the check was
written and answered, what was decided, and the window in which its usage report reached
the service.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import re
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote

from tokenlimit.errors import ConfigError
from tokenlimit.load.client import Pool, Response, Target, TransportError, build_request
from tokenlimit.load.observation import Observation
from tokenlimit.load.run_stats import Answer, RunStats

Mode = Literal["gateway", "service"]
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP header name (RFC 9110 token)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def has_control(text: str) -> bool:
    """Whether ``text`` holds a control character (CR, LF, NUL, ...): it cannot go in a header.

    >>> has_control("a\\r\\nX-Injected: 1"), has_control("regular-user")
    (True, False)
    """
    return _CONTROL.search(text) is not None
MODES: tuple[Mode, ...] = ("gateway", "service")
BAD_ANSWER = "bad-answer"  # the error kind of a 200 whose body is not the service's answer


@dataclass(frozen=True, slots=True)
class KeySpec:
    """A weighted key: ``--key user-type=regular-user:3`` (header, value, weight)."""

    header: str
    value: str
    weight: float

    @classmethod
    def parse(cls, text: str, default_header: str = "user-type") -> KeySpec:
        """``header=value:weight``; the header and the weight are optional.

        >>> KeySpec.parse("user-type=regular-user:3")
        KeySpec(header='user-type', value='regular-user', weight=3.0)
        >>> KeySpec.parse("subscriber")
        KeySpec(header='user-type', value='subscriber', weight=1.0)
        """
        body, weight = text, 1.0
        head, sep, tail = text.rpartition(":")
        if sep:
            try:
                weight = float(tail)
                body = head
            except ValueError:
                body = text
        header, sep, value = body.partition("=")
        if not sep:
            header, value = default_header, body
        header = header.strip()
        if not header or not value or not 0 < weight < math.inf:
            raise ConfigError(f"--key {text!r}: write HEADER=VALUE:WEIGHT with a weight > 0 "
                              "(e.g. user-type=regular-user:3)")
        if not _TOKEN.fullmatch(header):
            raise ConfigError(f"--key {text!r}: {header!r} is not an HTTP header name")
        if has_control(value):
            raise ConfigError(f"--key {text!r}: the value holds a control character")
        return cls(header, value, weight)


@dataclass(frozen=True, slots=True)
class Range:
    """An inclusive range a value is drawn from uniformly (``lo == hi``: fixed)."""

    lo: float
    hi: float

    @classmethod
    def parse(cls, text: str, option: str) -> Range:
        """``'50'`` or ``'20-200'``.

        >>> Range.parse("20-200", "--tokens")
        Range(lo=20.0, hi=200.0)
        """
        lo_text, sep, hi_text = text.partition("-")
        try:
            lo = float(lo_text)
            hi = float(hi_text) if sep else lo
        except ValueError:
            raise ConfigError(f"{option} {text!r}: give N or LO-HI") from None
        if not 0 <= lo <= hi < math.inf:
            raise ConfigError(f"{option} {text!r}: need finite numbers 0 <= LO <= HI")
        return cls(lo, hi)


@dataclass(frozen=True, slots=True)
class Planned:
    """The n-th request: its key (header, value), simulated tokens and latency."""

    header: str
    key: str
    completion_tokens: int
    prompt_tokens: int
    latency: float


class Planner:
    """Draws planned requests from a weighted key mix and token/latency ranges (seeded)."""

    def __init__(self, keys: tuple[KeySpec, ...], tokens: Range, prompt_tokens: int,
                 latency: Range, seed: int) -> None:
        if not keys:
            raise ConfigError("give at least one --key")
        self.keys = keys
        self.weights = [k.weight for k in keys]
        self.cum = [sum(self.weights[: i + 1]) for i in range(len(keys))]
        self.tokens = tokens
        self.prompt_tokens = prompt_tokens
        self.latency = latency
        self.rng = random.Random(seed)

    def plan(self, n: int) -> Planned:
        rng = self.rng
        spec = self.keys[0] if len(self.keys) == 1 else rng.choices(
            self.keys, cum_weights=self.cum)[0]
        tokens = round(rng.uniform(self.tokens.lo, self.tokens.hi))
        latency = rng.uniform(self.latency.lo, self.latency.hi)
        return Planned(spec.header, spec.value, tokens, self.prompt_tokens, latency)


class ServiceMode:
    """The plug-in's calls: a check, then (allowed) a usage report after the latency."""

    def __init__(self, target: Target, pool: Pool, stats: RunStats,
                 observations: list[Observation] | None) -> None:
        self.target, self.pool, self.stats, self.observations = target, pool, stats, observations
        self.check_raw: dict[str, bytes] = {}
        self.reports: set[asyncio.Task[None]] = set()
        self.wait_until_wall: Callable[[float], Awaitable[None]] = _sleep_until_wall
        # A replay keeps the trace's order of a key's reports and checks (below): per key,
        # (report due, settled once it was applied or will never be) of requests under way.
        self.ordered = False
        self.unsettled: dict[str, list[tuple[float, asyncio.Future[None]]]] = {}

    def _check_request(self, key: str) -> bytes:
        raw = self.check_raw.get(key)
        if raw is None:
            query = quote(json.dumps([key], separators=(",", ":")), safe="")
            raw = build_request("GET", self.target,
                                f"{self.target.path}/ratelimit?ratelimit_keys={query}", {})
            self.check_raw[key] = raw
        return raw

    async def execute(self, n: int, plan: Planned, intended: float, open_loop: bool) -> None:
        if not self.ordered:
            await self._execute(n, plan, intended, open_loop)
            return
        # ASM's replay order: a report due at or before a check of its key is applied first,
        # even one whose own check is still being answered (requests at one instant, latency
        # 0). The check waits for it (the wait shows as send lateness), so the service sees
        # the trace's order and decides as simulate does.
        pending = self.unsettled.setdefault(plan.key, [])
        earlier = [f for due, f in pending if due <= intended and not f.done()]
        settled: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (intended + plan.latency, settled)
        pending.append(entry)
        try:
            if earlier:
                await asyncio.wait(earlier)
            await self._execute(n, plan, intended, open_loop)
        finally:
            settled.set_result(None)
            pending.remove(entry)
            if not pending:
                del self.unsettled[plan.key]

    async def _execute(self, n: int, plan: Planned, intended: float, open_loop: bool) -> None:
        stats = self.stats
        stats.sent += 1
        try:
            response, sent = await self.pool.request(self._check_request(plan.key))
        except TransportError as exc:
            now = time.time()
            stats.record(plan.key, "error", _error_name(exc), now - intended, now)
            return
        done = time.time()
        if open_loop:
            stats.lateness.record(sent - intended)
        outcome = _service_outcome(response)
        if outcome != "allowed":
            # A 200 that is not the service's answer ({"allow": true|false}) is an error kind.
            status: int | str = BAD_ANSWER if outcome == "error" and response.status == 200 \
                else response.status
            stats.record(plan.key, outcome, status, done - intended, done)
            self._observe(n, plan, sent, done, outcome)
            return
        stats.record(plan.key, "allowed", response.status, done - intended, done,
                     plan.completion_tokens)
        # The report is due ``latency`` after the check's intended send time (a replay's
        # recorded start + latency), not after the answer: that keeps the trace's order of
        # checks and reports however fast the replay runs.
        try:
            await self.wait_until_wall(intended + plan.latency)
        except asyncio.CancelledError:  # the run ended first: the report was never sent
            self._observe(n, plan, sent, done, "allowed")
            raise
        body = json.dumps({"ratelimit_keys": [plan.key], "prompt_tokens": plan.prompt_tokens,
                           "completion_tokens": plan.completion_tokens,
                           "total_tokens": plan.prompt_tokens + plan.completion_tokens},
                          separators=(",", ":")).encode()
        raw = build_request("POST", self.target, f"{self.target.path}/update_ratelimit_record",
                            {"Content-Type": "application/json"}, body)
        report_sent = time.time()
        try:
            answer, report_sent = await self.pool.request(raw)
            status = answer.status
        except TransportError as exc:
            status = _error_name(exc)
        except asyncio.CancelledError:
            # The run ended with the report on its way: it may still be applied, but after
            # every check of this run was answered, so "by now" is as good as "never".
            self._observe(n, plan, sent, done, "allowed", report_sent, time.time())
            raise
        report_done = time.time()
        stats.record_report(status, report_done - report_sent)
        if status == 200:
            self._observe(n, plan, sent, done, "allowed", report_sent, report_done)
        else:  # the service refused the report: its balance was not charged
            self._observe(n, plan, sent, done, "allowed")

    def _observe(self, n: int, plan: Planned, sent: float, done: float, outcome: Answer,
                 lo: float | None = None, hi: float | None = None) -> None:
        if self.observations is not None:
            self.observations.append(Observation(n, plan.key, sent, done, outcome,
                                                 plan.completion_tokens, lo, hi))


class GatewayMode:
    """OpenAI-style chat completions through a gateway: 200 allowed, 429 limited."""

    def __init__(self, target: Target, pool: Pool, stats: RunStats,
                 observations: list[Observation] | None, *, stream: bool, model: str,
                 report_window: float) -> None:
        self.target, self.pool, self.stats, self.observations = target, pool, stats, observations
        self.path = target.path or "/v1/chat/completions"
        if target.query:  # e.g. Azure OpenAI's ?api-version=..., which the gateway needs
            self.path += "?" + target.query
        self.stream = stream
        self.report_window = report_window
        payload: dict[str, object] = {
            "model": model, "messages": [{"role": "user", "content": "Say hello."}]}
        if stream:
            payload["stream"] = True
            payload["stream_options"] = {"include_usage": True}
        self.body = json.dumps(payload, separators=(",", ":")).encode()
        self.raw: dict[tuple[str, str], bytes] = {}

    async def execute(self, n: int, plan: Planned, intended: float, open_loop: bool) -> None:
        stats = self.stats
        raw = self.raw.get((plan.header, plan.key))
        if raw is None:
            raw = self.raw[(plan.header, plan.key)] = build_request(
                "POST", self.target, self.path,
                {plan.header: plan.key, "Content-Type": "application/json"}, self.body)
        stats.sent += 1
        try:
            response, sent = await self.pool.request(raw)
        except TransportError as exc:
            now = time.time()
            stats.record(plan.key, "error", _error_name(exc), now - intended, now)
            return
        done = time.time()
        if open_loop:
            stats.lateness.record(sent - intended)
        ttfb = None if response.first_byte is None or not self.stream else (
            response.first_byte - intended)
        if response.status == 200:
            tokens = completion_tokens(response.body)
            stats.record(plan.key, "allowed", 200, done - intended, done, tokens or 0, ttfb)
            if self.observations is not None:
                lo, hi = (done, done + self.report_window) if tokens is not None else (None, None)
                self.observations.append(
                    Observation(n, plan.key, sent, done, "allowed", tokens or 0, lo, hi))
            return
        outcome: Answer = "limited" if response.status == 429 else "error"
        stats.record(plan.key, outcome, response.status, done - intended, done, 0, ttfb)
        if self.observations is not None:
            self.observations.append(Observation(n, plan.key, sent, done, outcome, 0))


_COMPLETION = re.compile(rb'"completion_tokens"\s*:\s*(\d+)\s*[,}]')


def completion_tokens(body: bytes) -> int | None:
    """``usage.completion_tokens`` of a chat completion, JSON or Server-Sent Events.

    The last ``"completion_tokens": N`` member wins (the final usage chunk of a stream). A
    member name inside message text cannot match: JSON escapes its quotes. Anything unusual
    (no plain integer) falls back to parsing the JSON.

    >>> completion_tokens(b'{"usage": {"completion_tokens": 7}}')
    7
    >>> completion_tokens(b'data: {"usage": null}\\n\\ndata: {"usage": {"completion_tokens": 3}}'
    ...                   b'\\n\\ndata: [DONE]\\n\\n')
    3
    >>> completion_tokens(b'{"message": {"content": "\\\\"completion_tokens\\\\": 9"}}')
    """
    found = _COMPLETION.findall(body)
    if found:
        return int(found[-1])
    if b"completion_tokens" not in body:
        return None
    return _completion_tokens_json(body)


def _completion_tokens_json(body: bytes) -> int | None:
    texts = [body] if not body.lstrip().startswith(b"data:") else [
        line[5:] for line in body.splitlines() if line.startswith(b"data:") and b"usage" in line]
    found: int | None = None
    for text in texts:
        try:
            usage = json.loads(text).get("usage")
        except (ValueError, AttributeError):
            continue
        if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
            found = usage["completion_tokens"]
    return found


async def _sleep_until_wall(due: float) -> None:
    """Sleep until the wall-clock instant ``due`` (millisecond precision: the driver gives
    each mode its precise timer)."""
    delay = due - time.time()
    if delay > 0:
        await asyncio.sleep(delay)


def _service_outcome(response: Response) -> Answer:
    if response.status != 200:
        return "error"
    try:
        allow = json.loads(response.body).get("allow")
    except (ValueError, AttributeError):
        return "error"
    if allow is True:
        return "allowed"
    return "limited" if allow is False else "error"


def _error_name(exc: TransportError) -> str:
    text = str(exc)
    if isinstance(exc.__cause__, ConnectionRefusedError):
        return "connection-refused"  # nothing listens at the target
    if isinstance(exc.__cause__, ssl.SSLError):
        return "tls-error"  # e.g. a certificate not trusted (--ca-cert, --insecure)
    if text.startswith("cannot connect"):
        return "connect-error"
    if text == "timed out":
        return "timeout"
    return "transport-error"
