"""A small HTTP/1.1 server: an asyncio ``Protocol`` over httptools' parser.

Why not a framework: the check endpoint must answer tens of thousands of tiny requests a
second on two cores. A raw protocol costs one parser callback set and one ``write`` per
request; keep-alive and pipelining are kept, and answers go out in request order.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import httptools


@dataclass(slots=True)
class Request:
    """One parsed request: the raw path and query, lower-cased headers and the body."""

    method: str
    path: str
    query: bytes
    headers: dict[str, str]
    body: bytes
    too_large: bool = False


@dataclass(frozen=True, slots=True)
class Response:
    """One answer; ``headers`` are extra (Content-Length and Connection are added here)."""

    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = field(default=())


Handler = Callable[[Request], Coroutine[Any, Any, Response]]
_REASONS = {s.value: s.phrase for s in HTTPStatus}
MAX_HEAD = 1 << 20  # request line and headers, as Go's default MaxHeaderBytes


@functools.lru_cache(maxsize=4096)
def encode_response(response: Response, keep_alive: bool) -> bytes:
    """The bytes of an HTTP/1.1 answer (cached: most answers are one of a few)."""
    reason = _REASONS.get(response.status, "Unknown")
    lines = [f"HTTP/1.1 {response.status} {reason}"]
    lines.extend(f"{name}: {value}" for name, value in response.headers)
    lines.append(f"Content-Length: {len(response.body)}")
    if not keep_alive:
        lines.append("Connection: close")
    head = "\r\n".join(lines).encode("latin-1", "replace") + b"\r\n\r\n"
    return head + response.body


class HttpProtocol(asyncio.Protocol):
    """One client connection: parses requests, runs the handler, answers in order."""

    def __init__(self, handler: Handler, max_body: int, connections: set[HttpProtocol],
                 tasks: set[asyncio.Task[Response]]) -> None:
        self.handler = handler
        self.max_body = max_body
        self.connections = connections
        self.tasks = tasks
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.pending: deque[tuple[asyncio.Future[Response], bool, bool]] = deque()
        self.url = b""
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []
        self.body_size = 0
        self.head_size = 0
        self.closing = False

    # asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        self.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
        self.transport = None
        # Requests already read run to completion (a usage report half applied would be worse
        # than an answer nobody reads), as Go's server does; their answers are dropped.
        self.pending.clear()

    def data_received(self, data: bytes) -> None:
        if self.transport is None:
            return  # answered with an error and closing: ignore the rest
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400)
        except httptools.HttpParserError:
            self._fail(400)

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.head_size = 0
        self.url = b""
        self.headers = {}
        self.body = []
        self.body_size = 0

    def on_url(self, url: bytes) -> None:
        self.url += url
        self.head_size += len(url)
        if self.head_size > MAX_HEAD:
            self._fail(431)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_size += len(name) + len(value)
        if self.head_size > MAX_HEAD:
            self._fail(431)
            return
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        # curl and others wait for this before sending a body over 1 KiB, as Go's server sends.
        expect = self.headers.get("expect", "").lower() == "100-continue"
        if expect and self.transport is not None and not self.pending:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self.body_size += len(body)
        if self.body_size <= self.max_body:
            self.body.append(body)

    def on_message_complete(self) -> None:
        if self.transport is None or self.closing:
            return  # gone, or a request after one that asked to close: not answered
        try:
            parsed = httptools.parse_url(self.url)
        except httptools.HttpParserInvalidURLError:
            self._fail(400)
            return
        request = Request(
            self.parser.get_method().decode("latin-1"),
            (parsed.path or b"/").decode("latin-1"),
            parsed.query or b"",
            self.headers,
            b"".join(self.body),
            self.body_size > self.max_body,
        )
        keep_alive = self.parser.should_keep_alive() and not request.too_large
        loop = asyncio.get_running_loop()
        task = loop.create_task(self.handler(request))
        self.tasks.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self.tasks.discard)
        self.pending.append((task, keep_alive, request.method == "HEAD"))
        task.add_done_callback(self._flush)
        if not keep_alive:
            self.closing = True

    # answers, in request order
    def _flush(self, _: object = None) -> None:
        while self.pending and self.pending[0][0].done():
            future, keep_alive, head = self.pending.popleft()
            if self.transport is None:
                return
            if future.cancelled():
                response = Response(503)
            elif future.exception() is not None:
                response = Response(500)
            else:
                response = future.result()
            data = encode_response(response, keep_alive)
            if head:  # the same head, no body (Content-Length says what GET would send)
                data = data[:len(data) - len(response.body)]
            self.transport.write(data)
            if not keep_alive:
                self.transport.close()
                self.transport = None
                return

    def _fail(self, status: int) -> None:
        # Answer, half-close, and read (discarding) what the client still sends for a moment:
        # closing at once with unread input would reset the connection and lose the answer.
        transport = self.transport
        if transport is None:
            return
        self.transport = None
        transport.write(encode_response(Response(status), keep_alive=False))
        if transport.can_write_eof():
            transport.write_eof()
            asyncio.get_running_loop().call_later(1.0, transport.close)
        else:
            transport.close()


class HttpServer:
    """Serves ``handler`` on a listening socket until ``close``."""

    def __init__(self, handler: Handler, *, max_body: int = 1 << 20) -> None:
        self.handler = handler
        self.max_body = max_body
        self.connections: set[HttpProtocol] = set()
        self.tasks: set[asyncio.Task[Response]] = set()
        self.server: asyncio.AbstractServer | None = None

    async def start(self, host: str, port: int, *, reuse_port: bool = False) -> int:
        """Listen; returns the bound port (useful with port 0)."""
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: HttpProtocol(self.handler, self.max_body, self.connections, self.tasks),
            host, port, reuse_address=True, reuse_port=reuse_port or None, backlog=1024,
        )
        sockets = self.server.sockets
        return int(sockets[0].getsockname()[1]) if sockets else port

    async def close(self) -> None:
        if self.server is None:
            return
        self.server.close()
        for connection in list(self.connections):
            if connection.transport is not None:
                connection.transport.close()
        if self.tasks:  # let requests already read finish (bounded)
            await asyncio.wait(list(self.tasks), timeout=2)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.server.wait_closed(), 2)
        self.server = None
