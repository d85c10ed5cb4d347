"""A lean HTTP/1.1 client for load generation: asyncio protocols, keep-alive, httptools, TLS.

General clients (httpx) spend tens of microseconds per request on features a load generator
does not need; this one writes prepared request bytes on a kept-alive connection and parses
the answer with httptools (the parser uvicorn uses), recording the time of the first body
byte (time to first byte when streaming). One request at a time per connection; a pool
opens connections up to a limit and queues beyond it (the queueing shows in latency, which
the driver measures from the intended send time).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

import httptools

from tokenlimit.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Target:
    """Where requests go: ``host``, ``port`` and the base path of ``url`` (``query``: what
    follows its ``?``, e.g. an Azure OpenAI ``api-version``); ``tls`` for ``https://``
    (``server_name``: the name the certificate must carry, sent as SNI)."""

    url: str
    host: str
    port: int
    path: str
    host_override: str | None = None
    tls: bool = False
    server_name: str = ""
    query: str = ""

    @classmethod
    def parse(cls, url: str) -> Target:
        """Parse an ``http://`` or ``https://`` URL (any host: a laptop's loopback or a test
        cluster's gateway).

        >>> Target.parse("http://127.0.0.1:8080/v1").port
        8080
        >>> Target.parse("https://localhost/v1").port
        443
        """
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"target {url!r}: give an http:// or https:// URL")
        tls = parts.scheme == "https"
        try:
            port = parts.port or (443 if tls else 80)
        except ValueError:
            raise ConfigError(f"target {url!r}: bad port") from None
        host = "127.0.0.1" if parts.hostname == "localhost" else parts.hostname
        return cls(url, host, port, parts.path.rstrip("/"), tls=tls,
                   server_name=parts.hostname, query=parts.query)

    @property
    def host_header(self) -> str:
        if self.host_override:
            return self.host_override
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def tls_context(*, insecure: bool = False, ca_cert: str | None = None) -> ssl.SSLContext:
    """The TLS settings of an ``https://`` target: the system's trusted certificates (or
    ``ca_cert``, a PEM file), host names checked; ``insecure``: no check at all.

    A missing or unreadable ``ca_cert`` is a ``ConfigError`` naming the file.
    """
    try:
        context = ssl.create_default_context(cafile=ca_cert)
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or exc
        raise ConfigError(f"{ca_cert}: cannot read a PEM certificate: {reason}") from None
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


@dataclass(slots=True)
class Response:
    """One answer: status, body, and when its first body byte arrived (``time.time()``)."""

    status: int
    body: bytes
    first_byte: float | None


class TransportError(Exception):
    """The connection failed, closed early or timed out (the request counts as an error)."""


class Connection(asyncio.Protocol):
    """One keep-alive connection; ``send`` writes a request and waits for its answer."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[Response] | None = None
        self.chunks: list[bytes] = []
        self.first_byte: float | None = None
        self.reusable = True
        self.framed = False  # the answer has Content-Length or Transfer-Encoding
        self.until_close: int | None = None  # an unframed answer's status: it ends at the close

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(TransportError(f"bad HTTP response: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.reusable = False
        if self.until_close is not None and exc is None:
            # HTTP/1.0 servers (Python's http.server) end an answer with neither length nor
            # chunks by closing (RFC 9112 6.3): that close is its end, not a break; httptools
            # cannot be told of the end of input
            self._answer(self.until_close)
        self._fail(TransportError("connection closed"))

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.chunks = []
        self.first_byte = None
        self.framed = False
        self.until_close = None

    def on_header(self, name: bytes, _value: bytes) -> None:
        if not self.framed and name.lower() in (b"content-length", b"transfer-encoding"):
            self.framed = True

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if not self.framed and status >= 200 and status not in (204, 304):
            self.until_close = status

    def on_body(self, body: bytes) -> None:
        if self.first_byte is None:
            self.first_byte = time.time()
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        if not self.parser.should_keep_alive():
            self.reusable = False
        self._answer(self.parser.get_status_code())

    def _answer(self, status: int) -> None:
        self.until_close = None
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(Response(status, b"".join(self.chunks), self.first_byte))

    def _fail(self, exc: Exception) -> None:
        self.reusable = False
        self.until_close = None
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        if self.transport is not None:
            self.transport.close()

    def send(self, raw: bytes, loop: asyncio.AbstractEventLoop) -> asyncio.Future[Response]:
        """Write ``raw`` (a whole request) and return a future for the answer."""
        assert self.transport is not None and self.waiter is None
        waiter: asyncio.Future[Response] = loop.create_future()
        self.waiter = waiter
        self.transport.write(raw)
        return waiter

    def timeout(self) -> None:
        self._fail(TransportError("timed out"))

    def close(self) -> None:
        self.reusable = False
        if self.transport is not None:
            self.transport.close()


class Pool:
    """Keep-alive connections to one target, at most ``limit`` open at a time."""

    def __init__(self, target: Target, limit: int, timeout: float,
                 tls: ssl.SSLContext | None = None) -> None:
        self.target = target
        self.tls = tls if tls is not None or not target.tls else tls_context()
        self.limit = limit
        self.timeout = timeout
        self.idle: list[Connection] = []
        self.open = 0
        self.waiters: deque[asyncio.Future[None]] = deque()
        self.all: set[Connection] = set()

    async def acquire(self) -> Connection:
        """An idle connection, a new one, or (at the limit) the next one released."""
        while True:
            while self.idle:
                conn = self.idle.pop()
                if conn.reusable:
                    return conn
                self._forget(conn)
            if self.open < self.limit:
                self.open += 1
                try:
                    return await self._connect()
                except BaseException:
                    self.open -= 1
                    raise
            loop = asyncio.get_running_loop()
            waiter: asyncio.Future[None] = loop.create_future()
            self.waiters.append(waiter)
            await waiter

    async def _connect(self) -> Connection:
        loop = asyncio.get_running_loop()
        target = self.target
        if self.tls is None:
            connecting = loop.create_connection(Connection, target.host, target.port)
        else:  # the handshake is part of connecting (warmed before the start, like TCP's)
            connecting = loop.create_connection(Connection, target.host, target.port,
                                                ssl=self.tls,
                                                server_hostname=target.server_name)
        try:
            _, conn = await asyncio.wait_for(connecting, self.timeout)
        except (OSError, TimeoutError) as exc:
            raise TransportError(f"cannot connect to {target.host_header}: {exc}") from exc
        self.all.add(conn)
        return conn

    @property
    def busy(self) -> int:
        """Connections opening or waiting for an answer."""
        return self.open - len(self.idle)

    async def warm(self, count: int, within: float) -> None:
        """Open up to ``count`` idle connections, for ``within`` seconds at most (failures
        and connections still opening then are left to the requests)."""
        want = max(0, min(count, self.limit) - self.open)
        if want == 0:
            return
        self.open += want
        tasks = [asyncio.ensure_future(self._connect()) for _ in range(want)]
        _, pending = await asyncio.wait(tasks, timeout=within)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for task in tasks:
            if not task.cancelled() and task.exception() is None:
                self.idle.append(task.result())
            else:
                self.open -= 1

    def release(self, conn: Connection) -> None:
        """Give a connection back (closed ones are dropped); wakes one waiter."""
        if conn.reusable:
            self.idle.append(conn)
        else:
            self._forget(conn)
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                break

    def _forget(self, conn: Connection) -> None:
        if conn in self.all:
            self.all.discard(conn)
            self.open -= 1
        conn.close()

    async def request(self, raw: bytes) -> tuple[Response, float]:
        """Send ``raw``; (the answer, the time the request was written)."""
        conn = await self.acquire()
        loop = asyncio.get_running_loop()
        sent = time.time()
        try:
            future = conn.send(raw, loop)
        except Exception as exc:
            conn.reusable = False
            self.release(conn)
            raise TransportError(f"send failed: {exc}") from exc
        handle = loop.call_later(self.timeout, conn.timeout)
        try:
            return await future, sent
        finally:
            handle.cancel()
            self.release(conn)

    def close(self) -> None:
        """Close every connection."""
        for conn in list(self.all):
            conn.close()
        self.all.clear()
        self.idle.clear()
        self.open = 0


def build_request(method: str, target: Target, path: str, headers: dict[str, str],
                  body: bytes = b"") -> bytes:
    """The bytes of one HTTP/1.1 request with keep-alive (UTF-8: a key's non-ASCII
    characters go as their UTF-8 bytes, as curl sends them).

    >>> build_request("GET", Target.parse("http://127.0.0.1:9/"), "/x", {})[:20]
    b'GET /x HTTP/1.1\\r\\nHos'
    """
    lines = [f"{method} {path} HTTP/1.1", f"Host: {target.host_header}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if body or method in ("POST", "PUT"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body
