"""The plug-in's behaviour as a reverse proxy: check, forward, report.

For a request whose host matches: render the keys, ask the service (``GET /ratelimit``);
allowed: forward it unchanged and stream the answer back chunk by chunk; once the last byte has
gone to the client, report the answer's ``usage`` (``POST /update_ratelimit_record``) in the
background. Limited: answer 429 with the service's description. Service down or answering
non-200: let the request through (fail-open) or answer 503 (fail-closed), logging once per
incident. Requests to other hosts pass untouched, with no check and no report.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
from yarl import URL

from tokenlimit.bucket.key_templates import render_keys
from tokenlimit.bucket.types import Usage
from tokenlimit.gateway.asgi import ClientGone, Receive, Scope, Send, read_body, respond
from tokenlimit.gateway.attributes import RequestAttributes
from tokenlimit.gateway.config import GatewayConfig
from tokenlimit.gateway.health import EventSink, GatewayEvent, GatewayStats, ServiceHealth
from tokenlimit.gateway.usage import UsageReader

log = logging.getLogger("tokenlimit.gateway")

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
    "te", "trailer", "trailers", "transfer-encoding", "upgrade",
})
FAIL_CLOSED_BODY = b"rate-limit service unavailable"
UPSTREAM_DOWN_BODY = (b"upstream connect error or disconnect/reset before headers. "
                      b"reset reason: connection failure")
REPORT_DRAIN_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class Verdict:
    """The service's answer: ``allow`` None means it could not be asked."""

    allow: bool | None
    description: str = ""
    headers: tuple[tuple[bytes, bytes], ...] = ()


def _passed_on(name: str) -> bool:
    return name.startswith("x-ratelimit-") or name == "retry-after"


def _header_text(value: bytes) -> str:
    """A header value as text that the upstream client writes back as the same bytes (UTF-8)."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")  # not UTF-8: readable, though not byte for byte


def _attributes(scope: Scope, headers: list[tuple[str, str]]) -> RequestAttributes:
    host = next((v for k, v in headers if k == "host"), "")
    query = scope.get("query_string", b"").decode("latin-1")
    path = scope.get("raw_path") or scope["path"].encode()
    target = path.decode("latin-1") + (f"?{query}" if query else "")
    client, server = scope.get("client"), scope.get("server")
    return RequestAttributes(
        method=scope["method"], path=target, host=host, scheme=scope.get("scheme", "http"),
        protocol=f"HTTP/{scope.get('http_version', '1.1')}", headers=tuple(headers),
        source=(client[0], int(client[1])) if client else None,
        destination=(server[0], int(server[1])) if server and server[1] is not None else None,
    )


class _DisconnectWatch:
    """Closes the upstream answer as soon as the client hangs up, so that an LLM stream the
    client no longer reads is not read to its end (and, lacking its usage, not reported)."""

    def __init__(self, receive: Receive, answer: aiohttp.ClientResponse) -> None:
        self.gone = False
        self.answer = answer
        self.task: asyncio.Future[Any] | None = asyncio.ensure_future(receive())
        self.task.add_done_callback(self._received)

    def _received(self, task: asyncio.Future[Any]) -> None:
        if self.task is None or task.cancelled() or task.exception() is not None:
            return
        if task.result().get("type") == "http.disconnect":
            self.gone = True
            self.answer.close()

    def stop(self) -> None:
        task, self.task = self.task, None
        if task is not None and not task.done():
            task.cancel()


class Gateway:
    """A raw ASGI app; one instance per listening gateway."""

    def __init__(self, config: GatewayConfig, on_event: EventSink | None = None) -> None:
        self.config = config
        self.on_event = on_event
        self.stats = GatewayStats()
        self.health = ServiceHealth(config.fail_open)
        self._upstream: aiohttp.ClientSession | None = None
        self._service: aiohttp.ClientSession | None = None
        self._reports: set[asyncio.Task[None]] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            from tokenlimit.gateway.asgi import run_lifespan

            await run_lifespan(receive, send, self.startup, self.shutdown)
        elif scope["type"] == "http":
            try:
                await self.handle(scope, receive, send)
            except ClientGone:
                return

    async def startup(self) -> None:
        """Open the connection pools (inside the serving event loop)."""
        # No headers of the client's own, no decompression: the request and the answer pass
        # through byte for byte.
        self._upstream = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0), auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10.0,
                                          sock_read=self.config.upstream_timeout))
        self._service = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),
            timeout=aiohttp.ClientTimeout(total=self.config.service_timeout))

    async def shutdown(self) -> None:
        """Wait (bounded) for the reports still in flight, then close the pools."""
        if self._reports:
            await asyncio.wait(set(self._reports), timeout=REPORT_DRAIN_SECONDS)
        for client in (self._upstream, self._service):
            if client is not None:
                await client.close()

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """One request: check, then forward or answer, then report."""
        if self._upstream is None:
            await self.startup()  # a server run without lifespan events
        self.stats.requests += 1
        body = await read_body(receive)
        headers = [(k.decode("latin-1").lower(), _header_text(v)) for k, v in scope["headers"]]
        request = _attributes(scope, headers)
        if not self.config.matches(request.host):
            self.stats.unmatched += 1
            status = await self.forward(request, headers, body, receive, send, keys=None)
            self._event("unmatched", request, (), status)
            return
        keys = render_keys(self.config.templates, request)
        verdict = await self.check(keys)
        if verdict.allow is False:
            self.stats.limited += 1
            await respond(send, 429, verdict.description.encode(), "text/plain",
                          list(verdict.headers))
            self._event("limited", request, keys, 429, verdict.description)
            return
        if verdict.allow is None:
            if not self.config.fail_open:
                self.stats.failed_closed += 1
                await respond(send, 503, FAIL_CLOSED_BODY, "text/plain")
                self._event("failed_closed", request, keys, 503)
                return
            self.stats.failed_open += 1
        else:
            self.stats.allowed += 1
        status = await self.forward(request, headers, body, receive, send, keys=keys)
        self._event("allowed" if verdict.allow else "failed_open", request, keys, status)

    def _event(self, kind: str, request: RequestAttributes, keys: Sequence[str],
               status: int | None, detail: str = "") -> None:
        if self.on_event is not None:
            self.on_event(GatewayEvent(kind, request.method, request.path, request.host,
                                       tuple(keys), status, detail))

    async def check(self, keys: Sequence[str]) -> Verdict:
        """Ask the service about ``keys``."""
        assert self._service is not None
        keys_json = quote(json.dumps(keys, ensure_ascii=False, separators=(",", ":")), safe="")
        url = URL(f"{self.config.service}/ratelimit?ratelimit_keys={keys_json}", encoded=True)
        try:
            async with self._service.get(url) as answer:
                status, content = answer.status, await answer.read()
                raw_headers = answer.raw_headers
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.stats.service_errors += 1
            self.health.failure(f"unreachable at {self.config.service} ({type(exc).__name__})")
            return Verdict(None)
        verdict = self._verdict(status, content, raw_headers)
        if verdict is None:
            self.stats.service_errors += 1
            self.health.failure(f"answered {status} to /ratelimit")
            return Verdict(None)
        self.health.success()
        return verdict

    @staticmethod
    def _verdict(status: int, content: bytes,
                 raw_headers: tuple[tuple[bytes, bytes], ...]) -> Verdict | None:
        if status != 200:
            return None
        try:
            body: Any = json.loads(content)
        except ValueError:
            return None
        if not isinstance(body, dict) or not isinstance(body.get("allow"), bool):
            return None
        headers = tuple((k.lower(), v) for k, v in raw_headers
                        if _passed_on(k.decode("latin-1").lower()))
        return Verdict(body["allow"], str(body.get("description", "")), headers)

    async def forward(self, request: RequestAttributes, headers: list[tuple[str, str]],
                      body: bytes, receive: Receive, send: Send,
                      keys: Sequence[str] | None) -> int | None:
        """Send the request upstream unchanged and stream the answer back.

        Returns the status the client got (``None``: the client hung up mid-answer).
        """
        assert self._upstream is not None
        connection = {t.strip().lower() for k, v in headers if k == "connection"
                      for t in v.split(",")}
        outgoing = [(k, v) for k, v in headers
                    if k not in HOP_BY_HOP and k not in connection and k != "content-length"]
        url = URL(self.config.upstream + request.path, encoded=True)
        try:
            answer = await self._upstream.request(request.method, url, headers=outgoing,
                                                  data=body or None, allow_redirects=False)
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.stats.upstream_errors += 1
            log.warning("upstream %s: %s", self.config.upstream, type(exc).__name__)
            await respond(send, 503, UPSTREAM_DOWN_BODY, "text/plain")
            return 503
        watch = _DisconnectWatch(receive, answer)
        try:
            usage = await self._stream_back(answer, send, keys is not None, watch)
        except ClientGone:
            return None
        finally:
            watch.stop()
            answer.release()
        if keys is None:
            return answer.status
        if usage is None:
            self.stats.no_usage += 1
            return answer.status
        task = asyncio.get_running_loop().create_task(self.report(keys, usage, request))
        self._reports.add(task)
        task.add_done_callback(self._reports.discard)
        return answer.status

    async def _stream_back(self, answer: aiohttp.ClientResponse, send: Send,
                           read_usage: bool, watch: _DisconnectWatch) -> Usage | None:
        reader = UsageReader(answer.headers.get("content-type", ""),
                             answer.headers.get("content-encoding", "")) if read_usage else None
        await send({"type": "http.response.start", "status": answer.status, "headers": [
            (k, v) for k, v in answer.raw_headers if k.decode("latin-1").lower() not in HOP_BY_HOP
        ]})
        try:
            async for chunk in answer.content.iter_any():
                if reader is not None:
                    reader.feed(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except (aiohttp.ClientError, TimeoutError) as exc:
            if watch.gone:
                self.stats.client_gone += 1
                raise ClientGone from exc
            # Headers are gone already: all that is left is to cut the connection.
            self.stats.upstream_errors += 1
            log.warning("upstream %s broke off its answer: %s", self.config.upstream,
                        type(exc).__name__)
            raise ClientGone from exc
        if watch.gone:
            self.stats.client_gone += 1
            raise ClientGone
        watch.stop()
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return reader.finish() if reader is not None else None

    async def report(self, keys: Sequence[str], usage: Usage,
                     request: RequestAttributes | None = None) -> None:
        """``POST /update_ratelimit_record`` for one answer."""
        ok = await self._post_report(keys, usage)
        if request is not None:
            detail = (f"{usage.completion_tokens} completion tokens "
                      f"({usage.prompt_tokens} prompt, {usage.total_tokens} total)")
            self._event("reported" if ok else "report_failed", request, keys,
                        200 if ok else None, detail)

    async def _post_report(self, keys: Sequence[str], usage: Usage) -> bool:
        assert self._service is not None
        try:
            async with self._service.post(f"{self.config.service}/update_ratelimit_record",
                                          json=usage.report_body(keys)) as answer:
                status = answer.status
                await answer.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.stats.report_errors += 1
            self.health.failure(f"unreachable at {self.config.service} ({type(exc).__name__})")
            return False
        if status != 200:
            self.stats.report_errors += 1
            self.health.failure(f"answered {status} to /update_ratelimit_record")
            return False
        self.stats.reports += 1
        self.health.success()
        return True

    async def drain(self) -> None:
        """Wait until every report scheduled so far has been sent (for tests and shutdown)."""
        while self._reports:
            await asyncio.wait(set(self._reports))
