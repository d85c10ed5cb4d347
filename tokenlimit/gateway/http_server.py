"""The HTTP/1.1 server of the gateway and the mock LLM: raw ASGI apps on an asyncio protocol.

Chosen by measurement over uvicorn, which served both before (bench/gateway_overhead.py, the
docstring of :mod:`tokenlimit.gateway.client` and docs/gateway.md have the figures). It parses
requests with httptools (the parser of uvicorn and of the gateway's client, so what is refused
is what uvicorn refused), streams request bodies to the app as they arrive (reading pauses
beyond ``HIGH_WATER`` bytes not yet received by the app, so a 300 MB body is never held), and
writes an answer's head together with its first body bytes in one ``write`` (uvicorn writes
them separately: one system call and one wake-up of the client more per answer). Keep-alive,
pipelining (answered in order, one at a time), ``Expect: 100-continue``, HEAD, chunked answers
when the app gives no length (to an HTTP/1.0 client, an answer ended by closing the
connection), ``http.disconnect`` when the client hangs up.

Why not the rate-limit service's server (:mod:`tokenlimit.service.http`): it reads whole
requests the way Go's server does, and the gateway must check on the head alone and then
stream a body of any size both ways.

An idle connection is closed after ``KEEP_ALIVE_SECONDS``; a request head that is not whole
``HEAD_SECONDS`` after its first byte is answered 408 and its connection closed.

What it does not do: TLS, HTTP/2, WebSocket upgrades (served as plain requests), trailers.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import deque
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote

import httptools

from tokenlimit.gateway.asgi import Message, Scope
from tokenlimit.gateway.http_exchange import ASGI_VERSION, Exchange

HIGH_WATER = 64 * 1024  # request body bytes buffered for the app before reading pauses
KEEP_ALIVE_SECONDS = 5.0  # an idle connection is closed after this long (as uvicorn's default)
HEAD_SECONDS = 60.0  # a request head begun on an idle connection must be whole by then
_HEAD_TIMEOUT = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
                 b"content-length: 15\r\nconnection: close\r\n\r\nrequest timeout")
_BAD_REQUEST = (b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\n"
                b"content-length: 29\r\nconnection: close\r\n\r\nInvalid HTTP request received.")

class _HttpConnection(asyncio.Protocol):
    """One client connection; its requests are answered one at a time, in order."""

    def __init__(self, server: AsgiServer) -> None:
        self.server = server
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.client: tuple[str, int] | None = None
        self.local: tuple[str, int] | None = None
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.continue_wanted = False
        self.exchange: Exchange | None = None  # the one whose body is being read
        self.current: Exchange | None = None  # the one being answered
        self.queued: deque[Exchange] = deque()
        self.buffered = 0
        self.reading_paused = False
        self.write_paused: asyncio.Future[None] | None = None
        self.idle_since: float | None = None
        self.head_since: float | None = None  # a request head is arriving, since then

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        self.client = _address(transport.get_extra_info("peername"))
        self.local = _address(transport.get_extra_info("sockname"))
        self.idle_since = time.monotonic()
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.transport = None
        for exchange in (self.current, self.exchange, *self.queued):
            if exchange is not None and not exchange.complete:
                exchange.disconnected = True
                exchange.wake()
        self.queued.clear()
        if self.write_paused is not None and not self.write_paused.done():
            self.write_paused.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self.idle_since is not None:  # a request begins: its head has HEAD_SECONDS
            self.idle_since = None
            self.head_since = time.monotonic()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            pass  # served as a plain request; what follows the head is not read
        except httptools.HttpParserError:
            if self.transport is not None:
                if self.current is None:
                    self.transport.write(_BAD_REQUEST)
                self.close()

    def pause_writing(self) -> None:
        self.write_paused = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self.write_paused is not None and not self.write_paused.done():
            self.write_paused.set_result(None)
        self.write_paused = None

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.continue_wanted = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"expect" and value.lower() == b"100-continue":
            self.continue_wanted = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.head_since = None
        parser = self.parser
        version = parser.get_http_version()
        url = httptools.parse_url(self.url)
        raw_path: bytes = url.path or b""
        path = raw_path.decode("latin-1")
        if "%" in path:
            path = unquote(path, encoding="latin-1")
        scope: Scope = {
            "type": "http", "asgi": ASGI_VERSION, "http_version": version,
            "server": self.local, "client": self.client, "scheme": "http",
            "method": parser.get_method().decode("ascii"), "root_path": "",
            "path": path, "raw_path": raw_path, "query_string": url.query or b"",
            "headers": self.headers,
        }
        keep_alive = version != "1.0" and parser.should_keep_alive()
        exchange = Exchange(self, scope, keep_alive, self.continue_wanted)
        self.exchange = exchange
        if self.current is None:
            self._start(exchange)
        else:  # pipelined: answered once the answers before it are out
            self.queued.append(exchange)
            self.pause_reading()

    def on_body(self, body: bytes) -> None:
        exchange = self.exchange
        if exchange is None or exchange.complete:
            return
        exchange.body.append(body)
        self.buffered += len(body)
        if self.buffered > HIGH_WATER:
            self.pause_reading()
        exchange.wake()

    def on_message_complete(self) -> None:
        exchange = self.exchange
        if exchange is not None:
            exchange.more_body = False
            exchange.wake()

    # flow
    def _start(self, exchange: Exchange) -> None:
        self.current = exchange
        task = asyncio.get_running_loop().create_task(exchange.run(self.server.app))
        self.server.tasks.add(task)
        task.add_done_callback(self.server.tasks.discard)

    def answered(self, exchange: Exchange) -> None:
        """``exchange``'s answer was written whole: go on with the next request."""
        if exchange is not self.current:
            return
        self.current = None
        if not exchange.keep_alive or self.server.should_close:
            self.close()
            return
        if self.queued:
            self._start(self.queued.popleft())
            if not self.queued:
                self.resume_reading()
        else:
            self.idle_since = time.monotonic()

    def pause_reading(self) -> None:
        if not self.reading_paused and self.transport is not None:
            self.reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.reading_paused and self.transport is not None and not self.queued and (
                self.buffered <= HIGH_WATER):
            self.reading_paused = False
            self.transport.resume_reading()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def _address(name: Any) -> tuple[str, int] | None:
    if isinstance(name, tuple) and len(name) >= 2:
        return str(name[0]), int(name[1])
    return None


class AsgiServer:
    """Serves one raw ASGI app (``http`` and ``lifespan`` scopes) on bound sockets.

    ``serve`` runs until ``should_exit`` is set, then stops accepting, lets the answers in
    progress finish (``graceful_seconds`` at most; ``force_exit`` stops at once), closes every
    connection and runs the app's lifespan shutdown. An app with ``writes_date_header`` set
    writes its own ``Date`` header; others get the server's.
    """

    def __init__(self, app: Any, graceful_seconds: float = 10.0) -> None:
        self.app = app
        self.graceful_seconds = graceful_seconds
        self.date_header = not getattr(app, "writes_date_header", False)
        self.connections: set[_HttpConnection] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.started = False
        self.should_exit = False
        self.force_exit = False
        self.should_close = False  # stopping: connections close once their answer is out

    async def serve(self, sockets: Sequence[socket.socket]) -> None:
        """Serve on ``sockets`` (bound and listening) until ``should_exit``."""
        loop = asyncio.get_running_loop()
        lifespan = _Lifespan(self.app)
        await lifespan.startup()
        servers = [await loop.create_server(lambda: _HttpConnection(self), sock=sock,
                                            backlog=2048) for sock in sockets]
        self.started = True
        swept = time.monotonic()
        try:
            while not self.should_exit:
                await asyncio.sleep(0.05)
                if time.monotonic() - swept >= 1.0:  # idle connections: looked at once a second
                    swept = time.monotonic()
                    self._close_idle(swept)
        finally:
            for server in servers:
                server.close()
            self.should_close = True
            for connection in list(self.connections):
                if connection.current is None and not connection.queued:
                    connection.close()
            deadline = time.monotonic() + self.graceful_seconds
            while self.tasks and not self.force_exit and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            for connection in list(self.connections):
                connection.close()
            for task in list(self.tasks):
                task.cancel()
            if self.tasks:
                await asyncio.wait(list(self.tasks), timeout=2)
            await lifespan.shutdown()

    def _close_idle(self, now: float) -> None:
        for connection in list(self.connections):
            if connection.idle_since is not None and (
                    now - connection.idle_since > KEEP_ALIVE_SECONDS):
                connection.close()
            elif connection.head_since is not None and (
                    now - connection.head_since > HEAD_SECONDS):
                # a client that never finishes its head (slow-loris) held the connection
                # for good; Envoy answers a stalled stream 408 too
                if connection.transport is not None:
                    connection.transport.write(_HEAD_TIMEOUT)
                connection.close()


class _Lifespan:
    """The ASGI lifespan protocol, for apps that speak it (others are served without it)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        self.outbox: asyncio.Queue[Message] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        scope = {"type": "lifespan", "asgi": ASGI_VERSION, "state": {}}
        await self.app(scope, self.inbox.get, self.outbox.put)

    async def _ask(self, message: str) -> None:
        if self.task is None or self.task.done():
            return
        await self.inbox.put({"type": message})
        answer = asyncio.ensure_future(self.outbox.get())
        await asyncio.wait([answer, self.task], return_when=asyncio.FIRST_COMPLETED)
        if not answer.done():
            answer.cancel()
            if self.task.done() and not self.task.cancelled() and self.task.exception():
                raise self.task.exception()  # type: ignore[misc]
            return
        reply = answer.result()
        if reply["type"].endswith(".failed"):
            raise RuntimeError(f"lifespan {message}: {reply.get('message', '')}")

    async def startup(self) -> None:
        self.task = asyncio.ensure_future(self._run())
        await self._ask("lifespan.startup")

    async def shutdown(self) -> None:
        await self._ask("lifespan.shutdown")
        if self.task is not None and not self.task.done():
            self.task.cancel()
