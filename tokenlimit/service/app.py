"""The service's routes: the example's two endpoints, plus health, readiness and metrics.

Compatibility is the default: ``/ratelimit`` and ``/update_ratelimit_record`` answer with the
example's status codes and bodies. Each option beyond the example (``ServiceOptions``) is off
unless asked for.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from tokenlimit.bucket.multikey import CheckResult
from tokenlimit.bucket.reserve import EstimatePolicy
from tokenlimit.bucket.types import Charge
from tokenlimit.errors import StoreError
from tokenlimit.rules.model import Rule
from tokenlimit.service.http import Request, Response
from tokenlimit.service.metrics import Metrics
from tokenlimit.service.protocol import (
    ALLOW_BODY,
    DecodeError,
    decision_body,
    error_body,
    parse_keys_value,
    parse_usage,
    query_value,
    strict_keys_value,
)
from tokenlimit.service.stores.base import Store

FailMode = Literal["compat", "open", "closed"]
Mode = Literal["compat", "reserve"]
Logger = Callable[..., None]

# Go's net/http sniffs the example's JSON answer as text; clients have always seen this type.
TEXT = ("Content-Type", "text/plain; charset=utf-8")
JSON = ("Content-Type", "application/json")
NOT_FOUND = Response(404, b"404 page not found\n", (TEXT, ("X-Content-Type-Options", "nosniff")))
BACKEND_DOWN = "rate limit backend unavailable"
KEYS_CACHE_SIZE = 10_000
KEYS_CACHE_QUERY_BYTES = 1024  # longer queries are decoded every time: the cache stays < 20 MB
LOG_EVERY = 1.0  # seconds between two lines of the same repeating incident


@dataclass(frozen=True, slots=True)
class ServiceOptions:
    """What the service does beyond the example; the defaults are the example's behaviour.

    ``fail``: on a backend or script error, ``compat`` answers 400 with an empty body (the
    example), ``open`` allows, ``closed`` denies. ``strict_input``: malformed queries or
    bodies and negative token counts get a 400 with a JSON error body (the example allows a
    malformed ``ratelimit_keys`` and charges negative counts). ``rate_headers``: answers carry
    ``x-ratelimit-remaining-tokens`` and, when limited, ``retry-after``.
    """

    mode: Mode = "compat"
    estimate: EstimatePolicy = field(default_factory=EstimatePolicy)
    shadow: bool = False
    fail: FailMode = "compat"
    charge: Charge = "completion"
    strict_input: bool = False
    rate_headers: bool = False
    max_body: int = 1 << 20


def _ignore(*_: Any, **__: Any) -> None:
    return None


class RateLimitApp:
    """Answers HTTP requests using a ``Store``; ``set_rules`` swaps rules, keeping state."""

    def __init__(self, store: Store, rules: Sequence[Rule], options: ServiceOptions | None = None,
                 *, log: Logger = _ignore) -> None:
        self.store = store
        self.options = options or ServiceOptions()
        self.log = log
        self.rules = tuple(rules)
        self.metrics = Metrics()
        self._keys_cache: dict[bytes, tuple[str, ...] | DecodeError] = {}
        self._noisy: dict[str, tuple[float, int]] = {}
        self.monotonic: Callable[[], float] = time.monotonic

    def set_rules(self, rules: Sequence[Rule]) -> None:
        """Use ``rules`` from now on; buckets already stored are kept."""
        self.store.set_rules(rules)
        self.rules = tuple(rules)

    async def __call__(self, request: Request) -> Response:
        try:
            return await self.route(request)
        except Exception as exc:  # a bug, not bad input: log it, never show a traceback
            self.log_noisy("internal_error", path=request.path[:200],
                           error=f"{type(exc).__name__}: {exc}"[:500])
            return Response(500)

    async def route(self, request: Request) -> Response:
        """The answer to ``request`` by path (the example's routes accept any method)."""
        path = request.path
        if path == "/ratelimit":
            return await self.ratelimit(request)
        if path == "/update_ratelimit_record":
            return await self.update(request)
        if path == "/healthz":
            return Response(200, b'{"status":"ok"}', (JSON,))
        if path == "/readyz":
            return await self.ready()
        if path == "/metrics":
            keyspace = getattr(self.store, "keyspace", None)
            memory_keys = len(keyspace.values) if keyspace is not None else None
            return Response(200, self.metrics.render(self.rules, memory_keys).encode(),
                            (("Content-Type", "text/plain; version=0.0.4; charset=utf-8"),))
        return NOT_FOUND

    # /ratelimit
    def keys_of(self, query: bytes) -> tuple[str, ...] | DecodeError:
        """The key list of a raw query (cached: plug-ins send the same few lists again and
        again), or the reason it is malformed."""
        cached = self._keys_cache.get(query)
        if cached is not None:
            return cached
        raw = query_value(query, "ratelimit_keys")
        found: tuple[str, ...] | DecodeError
        if self.options.strict_input:
            try:
                found = strict_keys_value(raw)
            except DecodeError as exc:
                found = exc
        else:
            found = parse_keys_value(raw)
        if len(query) <= KEYS_CACHE_QUERY_BYTES:
            if len(self._keys_cache) >= KEYS_CACHE_SIZE:
                self._keys_cache.clear()
            self._keys_cache[query] = found
        return found

    async def ratelimit(self, request: Request) -> Response:
        keys = self.keys_of(request.query)
        if isinstance(keys, DecodeError):
            return self._bad_request(str(keys))
        if not keys:
            self.metrics.checked("allow", None, 0.0)
            return Response(200, ALLOW_BODY, (TEXT,))
        started = time.perf_counter()
        estimate = self.options.estimate if self.options.mode == "reserve" else None
        try:
            result = await self.store.check(keys, estimate)
        except StoreError as exc:
            self.metrics.backend_errors += 1
            result, reason = CheckResult("error"), str(exc)
        else:
            reason = self.store.last_script_error or "the check script failed"
        self.metrics.checked(result.outcome, result.rule, time.perf_counter() - started)
        if result.outcome == "error":
            self.log_noisy("check_failed", keys=list(keys), error=reason, fail=self.options.fail)
        return self._decision(keys, result)

    def _decision(self, keys: Sequence[str], result: CheckResult) -> Response:
        options = self.options
        if result.outcome == "error":
            if options.fail == "open" or options.shadow:
                return Response(200, ALLOW_BODY, (TEXT,))
            if options.fail == "closed":
                return Response(200, decision_body(False, BACKEND_DOWN), (TEXT,))
            return Response(400)
        headers: list[tuple[str, str]] = [TEXT]
        if options.rate_headers and result.remaining is not None:
            headers.append(("x-ratelimit-remaining-tokens", str(max(result.remaining, 0))))
        if result.outcome == "deny":
            if options.shadow:  # a would-be limit is an incident worth a line; a limit is not
                self.log_noisy("shadow_limited", key=result.limited_key, rule=result.rule)
                self.metrics.shadow_limited += 1
                return Response(200, ALLOW_BODY, tuple(headers))
            if options.rate_headers and result.retry_after is not None:
                headers.append(("retry-after", str(result.retry_after)))
            return Response(200, decision_body(False, result.description), tuple(headers))
        return Response(200, ALLOW_BODY, tuple(headers))

    # /update_ratelimit_record
    async def update(self, request: Request) -> Response:
        if request.too_large:
            self.metrics.bad_requests += 1
            self.log_noisy("bad_request", error="body too large",
                           size_limit=self.options.max_body)
            return Response(413, error_body(
                f"body larger than {self.options.max_body} bytes"), (JSON,))
        try:
            usage = parse_usage(request.body)
        except DecodeError as exc:
            return self._bad_request(f"body: {exc}")
        tokens = usage.usage.charged(self.options.charge)
        if self.options.strict_input:
            for name in ("prompt_tokens", "completion_tokens", "total_tokens"):
                if getattr(usage.usage, name) < 0:
                    return self._bad_request(f"{name}: must not be negative")
        try:
            await self.store.report(usage.keys, tokens, settle=self.options.mode == "reserve")
        except StoreError as exc:
            self.metrics.backend_errors += 1
            self.log_noisy("report_failed", keys=list(usage.keys), error=str(exc))
            if self.options.strict_input:
                return Response(500, error_body(BACKEND_DOWN), (JSON,))
            return Response(500)
        self.metrics.reported(tokens)
        return Response(200)

    def _bad_request(self, message: str) -> Response:
        self.metrics.bad_requests += 1
        self.log_noisy("bad_request", error=message)
        if self.options.strict_input:
            return Response(400, error_body(message), (JSON,))
        return Response(400)

    def log_noisy(self, event: str, **fields: Any) -> None:
        """Log an incident that can repeat thousands of times a second (Redis down, a client
        sending garbage): at most one line per event per second, counting the ones left out."""
        now = self.monotonic()
        last, skipped = self._noisy.get(event, (-LOG_EVERY, 0))
        if now - last < LOG_EVERY:
            self._noisy[event] = (last, skipped + 1)
            return
        self._noisy[event] = (now, 0)
        if skipped:
            fields["suppressed"] = skipped
        self.log(event, **fields)

    # /readyz
    async def ready(self) -> Response:
        try:
            await self.store.ping()
        except StoreError as exc:
            return Response(503, error_body(f"{self.store.name}: {exc}"), (JSON,))
        return Response(200, b'{"status":"ready"}', (JSON,))
