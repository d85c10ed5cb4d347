"""One connection of the gateway's HTTP client (:mod:`tokenlimit.gateway.client`): an asyncio
protocol that parses answers with httptools, and the client's errors and timers."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import httptools

HIGH_WATER = 256 * 1024  # answer bytes buffered before the connection stops reading


class ClientFailure(Exception):
    """A request that did not get a complete answer."""


class ConnectFailed(ClientFailure):
    """The connection could not be opened: the request was not sent."""


class ExchangeFailed(ClientFailure):
    """The connection broke once the request was (maybe partly) sent; ``answered``: after the
    answer had begun."""

    answered = False


def _expire(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


async def within(future: asyncio.Future[Any], timeout: float | None) -> None:
    """Wait for ``future``; ``TimeoutError`` after ``timeout`` seconds (``None``: no limit).
    A timer on the future itself: ``asyncio.timeout`` costs several times more per wait."""
    if timeout is None or future.done():
        await future
        return
    timer = asyncio.get_running_loop().call_later(timeout, _expire, future)
    try:
        await future
    finally:
        timer.cancel()


class _AnswerReader(asyncio.Protocol):
    """A connection whose answers httptools parses (the parser calls the ``on_*`` methods);
    ``_bad_answer`` is told of bytes that are no HTTP answer."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.headers: list[tuple[bytes, bytes]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._bad_answer(f"bad answer: {exc}")
            if self.transport is not None:
                self.transport.close()

    def _bad_answer(self, reason: str) -> None:
        raise NotImplementedError

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))  # looked up by name, and forwarded


class ClientConnection(_AnswerReader):
    """One keep-alive connection; one exchange at a time."""

    def __init__(self) -> None:
        super().__init__()
        self.head: asyncio.Future[None] | None = None
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.complete = False
        self.readable = asyncio.Event()
        self.writable: asyncio.Future[None] | None = None
        self.reading_paused = False
        self.error: Exception | None = None
        self.no_body = False  # an answer to HEAD: complete with its head
        self.until_close = False  # an answer without length or chunks: it ends at the close
        self.status = 0
        self.keep_alive = False

    # asyncio.Protocol
    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.complete:
            if self.until_close and exc is None and self.error is None:
                self.on_message_complete()  # httptools cannot be told of the end of input
            else:
                self._fail(ExchangeFailed("connection closed before the answer ended"))
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)

    def pause_writing(self) -> None:
        self.writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)
        self.writable = None

    # httptools callbacks
    def on_headers_complete(self) -> None:
        # read here: once the message has ended the parser forgets it
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive() and not self.no_body
        # HTTP/1.0 servers (Python's http.server) end a streamed answer by closing (RFC 9112
        # 6.3): that close is its end, not a break
        self.until_close = not self.no_body and self.status not in (204, 304) and not any(
            name in (b"content-length", b"transfer-encoding") for name, _ in self.headers)
        if self.no_body:  # the parser would wait for a body that never comes
            self.complete = True
            self.readable.set()
        if self.head is not None and not self.head.done():
            self.head.set_result(None)

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        self.readable.set()
        if self.buffered > HIGH_WATER and self.transport is not None:
            self.reading_paused = True
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        self.complete = True
        self.readable.set()

    def _bad_answer(self, reason: str) -> None:
        self._fail(ExchangeFailed(reason))

    def _fail(self, error: Exception) -> None:
        self.error = error
        if self.head is not None and not self.head.done():
            self.head.set_exception(error)
        self.readable.set()

    def start(self, method: str) -> asyncio.Future[None]:
        """Ready the connection for the next exchange; a future set when the answer's head
        has arrived."""
        self.reset(method)
        self.head = asyncio.get_running_loop().create_future()
        return self.head

    def reset(self, method: str) -> None:
        """Ready the connection for the next exchange, whose head nobody waits for."""
        self.no_body = method == "HEAD"
        self.until_close = False
        self.status = 0
        self.headers = []
        self.chunks.clear()
        self.buffered = 0
        self.complete = False
        self.error = None
        self.readable.clear()
        self.head = None

    async def drain(self) -> None:
        if self.writable is not None:
            await self.writable
        if self.closed:
            raise ExchangeFailed("connection closed while sending")

    def take(self) -> bytes:
        """The body bytes received so far (empty at the end)."""
        data = b"".join(self.chunks)
        self.chunks.clear()
        self.buffered = 0
        if self.reading_paused and self.transport is not None and not self.closed:
            self.reading_paused = False
            self.transport.resume_reading()
        if not self.complete:
            self.readable.clear()
        return data


Fetched = tuple[int, list[tuple[bytes, bytes]], bytes]  # status, headers, body


class PipelinedConnection(_AnswerReader):
    """A connection for small requests without a body, sent without waiting for the answers
    before them (HTTP/1.1 pipelining) and answered in order: the check's path.

    Requests made in the same turn of the event loop go out in one write, and the service
    answers those it has in one write too, so under load each side wakes once for several
    checks instead of once for each.
    """

    def __init__(self) -> None:
        super().__init__()
        self.reusable = True  # no answer said the connection ends
        self.waiting: deque[asyncio.Future[Fetched]] = deque()
        self.outgoing: list[bytes] = []
        self.answering = False  # an answer has begun and not ended
        self.timed_out = False
        self.status = 0
        self.parts: list[bytes] = []

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail("connection closed before the answer ended")

    def on_message_begin(self) -> None:
        self.answering = True
        self.headers = []
        self.parts = []

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        if not self.parser.should_keep_alive():
            self.reusable = False

    def on_body(self, body: bytes) -> None:
        self.parts.append(body)

    def on_message_complete(self) -> None:
        self.answering = False
        if self.waiting:
            waiter = self.waiting.popleft()
            if not waiter.done():
                waiter.set_result((self.status, self.headers, b"".join(self.parts)))

    def send(self, request: bytes) -> asyncio.Future[Fetched]:
        """Queue ``request``; a future set to its answer."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Fetched] = loop.create_future()
        self.waiting.append(waiter)
        if not self.outgoing:
            loop.call_soon(self._write)
        self.outgoing.append(request)
        return waiter

    def _write(self) -> None:
        data, self.outgoing = b"".join(self.outgoing), []
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    def expire(self) -> None:
        """An answer took too long: the connection is closed, and every request still on it
        fails without a retry (the service is stalled; a retry would wait as long again)."""
        self.timed_out = True
        self.close()

    def _bad_answer(self, reason: str) -> None:
        self._fail(reason)

    def _fail(self, reason: str) -> None:
        first = True
        while self.waiting:
            waiter = self.waiting.popleft()
            error = ExchangeFailed(reason)
            # the first had its answer begun; the others were maybe never read by the server
            error.answered = self.timed_out or (first and self.answering)
            first = False
            if not waiter.done():
                waiter.set_exception(error)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
