"""The plug-in's behaviour as a reverse proxy: check, forward, report.

For a request whose host matches: render the keys from the request head and ask the service
(``GET /ratelimit``) before a byte of the body is read. Allowed: forward the request, streaming
its body, and stream the answer back chunk by chunk; then report the answer's ``usage``
(``POST /update_ratelimit_record``) in the background. Limited: answer 429 with the service's
description. Service down or answering non-200: let the request through (fail-open) or answer
503 (fail-closed), logging once per incident. Requests to other hosts pass untouched.

Every token an admitted answer delivers is charged (the README's gateway section documents each
choice): a streaming request without ``stream_options.include_usage`` gets it added, and the
extra usage event is held back from its client; a client that hangs up does not stop the
upstream answer from being read (bounded by ``DRAIN_SECONDS`` and ``DRAIN_BYTES``) so that its
usage is learnt (an answer cut off because the gateway stops is charged what went by); a
2xx answer without usage is charged the estimate of :meth:`UsageReader.estimate`; a report
the service did not take is spooled and retried (:mod:`tokenlimit.gateway.reports`); keys
whose check would not fit the service's request target are refused with 431, never admitted
unchecked.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tokenlimit.bucket.key_templates import render_keys
from tokenlimit.bucket.types import Usage
from tokenlimit.gateway.asgi import ClientGone, Receive, RequestBody, Scope, Send, respond
from tokenlimit.gateway.attributes import RequestAttributes
from tokenlimit.gateway.client import (
    Answer,
    ClientFailure,
    ExchangeFailed,
    HttpClient,
)
from tokenlimit.gateway.config import GatewayConfig
from tokenlimit.gateway.health import EventSink, GatewayEvent, GatewayStats, ServiceHealth
from tokenlimit.gateway.messages import (
    HOP_BY_HOP,
    MAX_CHECK_TARGET,
    MAX_REQUEST_HEAD,
    check_target,
    forwarded_headers,
    head_size,
    host_count,
    http_date,
    request_attributes,
    request_target,
)
from tokenlimit.gateway.reports import Delivery, PendingReport, ReportSpool, deliver_reports
from tokenlimit.gateway.usage import UsageChunkFilter, UsageReader, ask_for_usage

log = logging.getLogger("tokenlimit.gateway")

FAIL_CLOSED_BODY = b"rate-limit service unavailable"
UPSTREAM_DOWN_BODY = (b"upstream connect error or disconnect/reset before headers. "
                      b"reset reason: connection failure")
TOO_LARGE_BODY = b"request header fields too large"
TWO_HOSTS_BODY = b"more than one Host header"
REPORT_DRAIN_SECONDS = 10.0
PEEK_BYTES = 1024 * 1024  # a request body this small is read whole to add include_usage
_HOP_BY_HOP_AND_LENGTH = HOP_BY_HOP | {b"content-length"}
MAX_KEPT_VERDICTS = 1024  # distinct check answers kept parsed (descriptions name keys)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The service's answer: ``allow`` None means it could not be asked."""

    allow: bool | None
    description: str = ""
    headers: tuple[tuple[bytes, bytes], ...] = ()
    status: int | None = None


def _passed_on(name: bytes) -> bool:
    return name.startswith(b"x-ratelimit-") or name == b"retry-after"


class _DisconnectWatch:
    """Notices a client that hangs up once its request body has been read, and then closes the
    upstream answer after ``drain_seconds`` (at once when there is nothing to learn from it).

    An answer that is already whole when its head arrives (most JSON answers) is not watched:
    it is handed over at once, and watching would cost a task per request.
    """

    def __init__(self, receive: Receive, body: RequestBody, answer: Answer,
                 drain_seconds: float) -> None:
        self.gone = False
        self.cut = False  # the answer was closed before its end
        self.answer = answer
        self.drain_seconds = drain_seconds
        self.task: asyncio.Future[Any] | None = None
        self.closing: asyncio.TimerHandle | None = None
        if body.complete and not answer.arrived:
            self.task = asyncio.ensure_future(receive())
            self.task.add_done_callback(self._received)

    def _received(self, task: asyncio.Future[Any]) -> None:
        if self.task is None or task.cancelled() or task.exception() is not None:
            return
        if task.result().get("type") == "http.disconnect":
            self.gone = True
            self.closing = asyncio.get_running_loop().call_later(self.drain_seconds,
                                                                 self._drain_over)

    def _drain_over(self) -> None:
        self.cut = True
        self.answer.close()

    def stop(self) -> None:
        task, self.task = self.task, None
        if task is not None and not task.done():
            task.cancel()
        if self.closing is not None:
            self.closing.cancel()


@dataclass(slots=True)
class _Answer:
    """What the stream back learnt: the usage (or the estimate) and whether the client stayed."""

    usage: Usage | None
    estimate: int
    client_gone: bool


class Gateway:
    """A raw ASGI app; one instance per listening gateway.

    It writes its own ``Date`` header (the upstream's, when there is one), so it is served
    without the server's (``writes_date_header``).
    """

    writes_date_header = True

    def __init__(self, config: GatewayConfig, on_event: EventSink | None = None) -> None:
        self.config = config
        self.on_event = on_event
        self.stats = GatewayStats()
        self.health = ServiceHealth(config.fail_open)
        self.spool = ReportSpool(self._deliver, self.stats, self._reported)
        self._upstream: HttpClient | None = None
        self._service: HttpClient | None = None
        self._handling: set[asyncio.Task[object]] = set()  # requests being answered
        # the service's answers repeat ({"allow":true,"description":"ok"}): each parsed once
        self._verdicts: dict[bytes, Verdict] = {}

    async def _deliver(self, reports: Sequence[PendingReport]) -> list[Delivery]:
        assert self._service is not None
        return await deliver_reports(self._service, reports, self.config.service_timeout,
                                     self.health)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            from tokenlimit.gateway.asgi import run_lifespan

            await run_lifespan(receive, send, self.startup, self.shutdown)
        elif scope["type"] == "http":
            task = asyncio.current_task()
            if task is not None:
                self._handling.add(task)
            try:
                await self.handle(scope, receive, send)
            except ClientGone:
                return
            finally:
                self._handling.discard(task)

    async def startup(self) -> None:
        """Make the clients (their connections open on first use, in the serving loop)."""
        self._upstream = HttpClient(self.config.upstream,
                                    read_timeout=self.config.upstream_timeout)
        self._service = HttpClient(self.config.service)

    async def shutdown(self) -> None:
        """Wait (bounded) for the reports still in flight or spooled, then close the pools."""
        await self.spool.flush(REPORT_DRAIN_SECONDS)
        await self.spool.close()
        for client in (self._upstream, self._service):
            if client is not None:
                await client.close()

    async def _respond(self, send: Send, status: int, body: bytes,
                       headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
        await respond(send, status, body, "text/plain", [(b"date", http_date()), *headers])

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """One request: check (on the head alone), then forward or answer, then report."""
        if self._upstream is None:
            await self.startup()  # a server run without lifespan events
        self.stats.requests += 1
        if head_size(scope) > MAX_REQUEST_HEAD:
            self.stats.too_large += 1
            await self._respond(send, 431, TOO_LARGE_BODY)
            return
        if host_count(scope) > 1:
            self.stats.bad_requests += 1
            await self._respond(send, 400, TWO_HOSTS_BODY)
            return
        request = request_attributes(scope)
        body = RequestBody(receive)
        if not self.config.matches(request.host):
            self.stats.unmatched += 1
            status = await self.forward(scope, body, receive, send, keys=None)
            self._event("unmatched", request, (), status)
            return
        keys = render_keys(self.config.templates, request)
        target = check_target(keys)
        verdict = Verdict(None, status=431) if len(target) > MAX_CHECK_TARGET else (
            await self.check(target))
        if verdict.status in (414, 431):  # keys that cannot be checked are never let through
            self.stats.too_large += 1
            await self._respond(send, 431, TOO_LARGE_BODY)
            self._event("too_large", request, keys, 431)
            return
        if verdict.allow is False:
            self.stats.limited += 1
            await self._respond(send, 429, verdict.description.encode(), verdict.headers)
            self._event("limited", request, keys, 429, verdict.description)
            return
        if verdict.allow is None:
            if not self.config.fail_open:
                self.stats.failed_closed += 1
                await self._respond(send, 503, FAIL_CLOSED_BODY)
                self._event("failed_closed", request, keys, 503)
                return
            self.stats.failed_open += 1
        else:
            self.stats.allowed += 1
        status = await self.forward(scope, body, receive, send, keys=keys, request=request)
        self._event("allowed" if verdict.allow else "failed_open", request, keys, status)

    def _event(self, kind: str, request: RequestAttributes, keys: Sequence[str],
               status: int | None, detail: str = "") -> None:
        if self.on_event is not None:
            self.on_event(GatewayEvent(kind, request.method, request.path, request.host,
                                       tuple(keys), status, detail))

    async def check(self, target: bytes) -> Verdict:
        """Ask the service (``target``: see :func:`check_target`)."""
        assert self._service is not None
        for attempt in (1, 2):
            try:
                status, raw_headers, content = await self._service.fetch(
                    "GET", target, self.config.service_timeout)
                break
            except (ClientFailure, TimeoutError) as exc:
                if attempt == 1 and isinstance(exc, ExchangeFailed) and not exc.answered:
                    continue  # a kept-alive connection the service had just closed: once more
                self.stats.service_errors += 1
                self.health.failure(f"unreachable at {self.config.service} "
                                    f"({type(exc).__name__})")
                return Verdict(None)
        verdict = self._verdicts.get(content) if status == 200 else None
        if verdict is None:
            verdict = self._verdict(status, content)
            if verdict is None:
                self.stats.service_errors += 1
                self.health.failure(f"answered {status} to /ratelimit")
                return Verdict(None, status=status)
            if len(self._verdicts) < MAX_KEPT_VERDICTS:
                self._verdicts[content] = verdict
        if self.health.failing:
            self.health.success()
        if verdict.allow is False and raw_headers:
            headers = tuple((k, v) for k, v in raw_headers if _passed_on(k))
            return Verdict(False, verdict.description, headers, status)
        return verdict

    @staticmethod
    def _verdict(status: int, content: bytes) -> Verdict | None:
        if status != 200:
            return None
        try:
            body: Any = json.loads(content)
        except ValueError:
            return None
        if not isinstance(body, dict) or not isinstance(body.get("allow"), bool):
            return None
        return Verdict(body["allow"], str(body.get("description", "")), (), status)

    async def forward(self, scope: Scope, body: RequestBody, receive: Receive, send: Send,
                      keys: Sequence[str] | None,
                      request: RequestAttributes | None = None) -> int | None:
        """Send the request upstream, its body streamed, and stream the answer back.

        Returns the status the client got (``None``: the client hung up mid-answer).
        """
        assert self._upstream is not None
        head = await body.peek(PEEK_BYTES if keys is not None else 0)
        data: bytes | Any
        hide_usage = False
        if body.complete:  # the body goes whole, with its length (include_usage may change it)
            outgoing = forwarded_headers(scope["headers"], drop_length=True)
            asked = ask_for_usage(head, request.headers) if request is not None else None
            hide_usage = asked is not None
            data = asked if asked is not None else head
            if not data and scope["method"] in ("GET", "HEAD", "DELETE", "OPTIONS"):
                data = None
        else:
            outgoing = forwarded_headers(scope["headers"])
            data = body.stream()
        try:
            answer = await self._upstream.request(scope["method"], request_target(scope),
                                                  outgoing, data, host=False)
        except (ClientFailure, TimeoutError) as exc:
            self.stats.upstream_errors += 1
            log.warning("upstream %s: %s", self.config.upstream, exc or type(exc).__name__)
            await self._respond(send, 503, UPSTREAM_DOWN_BODY)
            return 503
        watch = _DisconnectWatch(receive, body, answer,
                                 self.config.drain_seconds if keys is not None else 0.0)
        reader = UsageReader(answer.header(b"content-type"),
                             answer.header(b"content-encoding")) if keys is not None else None
        try:
            answered = await self._stream_back(answer, send, reader, hide_usage, watch)
        except asyncio.CancelledError:  # the gateway stopped mid-answer: charge what went by
            if keys is not None and request is not None:
                self._charge(keys, answer.status, self._learnt(reader, client_gone=True),
                             request)
            raise
        finally:
            watch.stop()
            answer.release()
        if keys is not None and request is not None:
            self._charge(keys, answer.status, answered, request)
        return None if answered.client_gone else answer.status

    def _charge(self, keys: Sequence[str], status: int, answered: _Answer,
                request: RequestAttributes) -> None:
        usage = answered.usage
        if usage is None:
            if not 200 <= status < 300:
                return  # an error answer without usage generated no tokens
            self.stats.no_usage += 1
            if answered.estimate <= 0:
                return
            self.stats.estimated += 1
            usage = Usage(0, answered.estimate, answered.estimate)
        self.spool.submit(PendingReport(tuple(keys), usage, request))

    async def _stream_back(self, answer: Answer, send: Send, reader: UsageReader | None,
                           hide_usage: bool, watch: _DisconnectWatch) -> _Answer:
        chunk_filter = UsageChunkFilter() if hide_usage and reader is not None and (
            reader.sse and reader.decompress is None) else None
        dropped = _HOP_BY_HOP_AND_LENGTH if chunk_filter else HOP_BY_HOP
        out = [(k, v) for k, v in answer.raw_headers if k not in dropped]
        if not any(k == b"date" for k, _ in out):
            out.append((b"date", http_date()))
        await send({"type": "http.response.start", "status": answer.status, "headers": out})
        if answer.arrived and chunk_filter is None:  # most JSON answers: whole already
            body = answer.received()
            if reader is not None:
                reader.feed(body)
            await send({"type": "http.response.body", "body": body, "more_body": False})
            return self._learnt(reader, client_gone=False)
        drained = 0
        try:
            async for chunk in answer.chunks():
                if reader is not None:
                    reader.feed(chunk)
                if watch.gone:
                    drained += len(chunk)
                    if reader is None or drained > self.config.drain_bytes:
                        watch.cut = True
                        break  # nothing (more) to learn from the rest
                    continue
                if chunk_filter is not None:
                    chunk = chunk_filter.feed(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            else:
                if watch.gone and not watch.cut:
                    self.stats.drained += 1
        except (ClientFailure, TimeoutError) as exc:
            if not watch.gone:  # headers are gone already: all that is left is to cut it
                self.stats.upstream_errors += 1
                log.warning("upstream %s broke off its answer: %s", self.config.upstream,
                            type(exc).__name__)
                return self._learnt(reader, client_gone=True)
        if watch.gone:
            self.stats.client_gone += 1
            return self._learnt(reader, client_gone=True)
        watch.stop()
        rest = chunk_filter.finish() if chunk_filter is not None else b""
        await send({"type": "http.response.body", "body": rest, "more_body": False})
        return self._learnt(reader, client_gone=False)

    @staticmethod
    def _learnt(reader: UsageReader | None, client_gone: bool) -> _Answer:
        if reader is None:
            return _Answer(None, 0, client_gone)
        usage = reader.finish()
        return _Answer(usage, 0 if usage is not None else reader.estimate(), client_gone)

    async def report(self, keys: Sequence[str], usage: Usage,
                     request: RequestAttributes | None = None) -> None:
        """``POST /update_ratelimit_record`` for one answer (spooled when it cannot go now)."""
        await self.spool.send(PendingReport(tuple(keys), usage, request))

    def _reported(self, report: PendingReport, ok: bool) -> None:
        if isinstance(report.context, RequestAttributes):
            usage = report.usage
            detail = (f"{usage.completion_tokens} completion tokens "
                      f"({usage.prompt_tokens} prompt, {usage.total_tokens} total)")
            self._event("reported" if ok else "report_failed", report.context, report.keys,
                        200 if ok else None, detail)

    async def drain(self, spool: bool = True) -> None:
        """Wait until every request being answered is done (a request whose client hung up
        is still reading the upstream's usage), then until every report made so far has been
        sent or spooled and, with ``spool``, until the spool is empty (for tests)."""
        others = self._handling - {asyncio.current_task()}
        if others:
            await asyncio.wait(others)
        await self.spool.sent()
        if spool:
            await self.spool.flush()
