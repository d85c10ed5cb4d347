"""One connection of the gateway's HTTP client (:mod:`tokenlimit.gateway.client`): an asyncio
protocol that parses answers with httptools, and the client's errors and timers."""

from __future__ import annotations

import asyncio
from collections import deque

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


def _expire(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


async def within(future: asyncio.Future[None], timeout: float | None) -> None:
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


class ClientConnection(asyncio.Protocol):
    """One keep-alive connection; one exchange at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.headers: list[tuple[bytes, bytes]] = []
        self.head: asyncio.Future[None] | None = None
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.complete = False
        self.readable = asyncio.Event()
        self.writable: asyncio.Future[None] | None = None
        self.reading_paused = False
        self.error: Exception | None = None
        self.no_body = False  # an answer to HEAD: complete with its head
        self.status = 0
        self.keep_alive = False
        self.whole: asyncio.Future[None] | None = None  # set when the answer has ended (fetch)
        self.pipelined: list[tuple[int, bool]] | None = None  # (status, keep-alive) per answer
        self.pipeline_done: asyncio.Future[None] | None = None
        self.pipeline_size = 0

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ExchangeFailed(f"bad answer: {exc}"))
            if self.transport is not None:
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.complete:
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
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))  # looked up by name, and forwarded

    def on_headers_complete(self) -> None:
        # read here: once the message has ended the parser forgets it
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive() and not self.no_body
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
        if self.pipelined is not None:
            self.pipelined.append((self.status, self.keep_alive))
            self.chunks.clear()
            if len(self.pipelined) == self.pipeline_size and self.pipeline_done is not None:
                self.complete = True
                if not self.pipeline_done.done():
                    self.pipeline_done.set_result(None)
            return
        self.complete = True
        self.readable.set()
        if self.whole is not None and not self.whole.done():
            self.whole.set_result(None)

    def _fail(self, error: Exception) -> None:
        self.error = error
        if self.pipeline_done is not None and not self.pipeline_done.done():
            self.pipeline_done.set_result(None)
        if self.head is not None and not self.head.done():
            self.head.set_exception(error)
        if self.whole is not None and not self.whole.done():
            self.whole.set_exception(error)
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
