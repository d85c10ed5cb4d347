"""One request and its answer on the gateway's HTTP server: the ASGI ``receive`` and ``send``
of one app call (:mod:`tokenlimit.gateway.http_server` has the why).

An answer's head is held until its first body bytes, then both go out in one ``write``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from tokenlimit.gateway.asgi import Message, Scope
from tokenlimit.gateway.messages import http_date

if TYPE_CHECKING:
    from tokenlimit.gateway.http_server import _HttpConnection

log = logging.getLogger("tokenlimit.server")

_STATUS_LINES = {s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode() for s in HTTPStatus}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
ASGI_VERSION = {"version": "3.0", "spec_version": "2.3"}
_DISCONNECT: Message = {"type": "http.disconnect"}
_SERVER_ERROR: Sequence[Message] = (
    {"type": "http.response.start", "status": 500, "headers": [
        (b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"21"),
        (b"connection", b"close")]},
    {"type": "http.response.body", "body": b"Internal Server Error"})

def _status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    return line if line is not None else b"HTTP/1.1 %d \r\n" % status


class Exchange:
    """One request and its answer: the ASGI ``receive`` and ``send`` of one app call."""

    __slots__ = ("body", "chunked", "complete", "connection", "continue_wanted",
                 "disconnected", "head", "keep_alive", "length_left", "more_body", "no_body",
                 "read_all", "scope", "started", "waiter")

    def __init__(self, connection: _HttpConnection, scope: Scope, keep_alive: bool,
                 continue_wanted: bool) -> None:
        self.connection = connection
        self.scope = scope
        self.keep_alive = keep_alive
        self.continue_wanted = continue_wanted
        self.no_body = scope["method"] == "HEAD"
        self.body: list[bytes] = []
        self.more_body = True
        self.read_all = False  # the app has received the whole body
        self.disconnected = False
        self.started = False
        self.complete = False  # the answer was written whole
        self.head = b""  # the answer's head, written with its first body bytes
        self.chunked = False
        self.length_left = -1
        self.waiter: asyncio.Future[None] | None = None

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def receive(self) -> Message:
        connection = self.connection
        if self.continue_wanted and not self.started and connection.transport is not None:
            self.continue_wanted = False
            connection.transport.write(_CONTINUE)
        # once the body is all read, a receive waits for the client to hang up (or the answer)
        while ((not self.body and self.more_body) or self.read_all) and not (
                self.disconnected or self.complete):
            connection.resume_reading()
            self.waiter = asyncio.get_running_loop().create_future()
            await self.waiter
        if self.disconnected or self.complete:
            return _DISCONNECT
        data = b"".join(self.body) if len(self.body) != 1 else self.body[0]
        self.body.clear()
        connection.buffered = 0
        connection.resume_reading()
        self.read_all = not self.more_body
        return {"type": "http.request", "body": data, "more_body": self.more_body}

    async def send(self, message: Message) -> None:
        connection = self.connection
        if connection.write_paused is not None and not self.disconnected:
            await connection.write_paused
        if self.disconnected:
            return
        if not self.started:
            if message["type"] != "http.response.start":
                raise RuntimeError(f"expected http.response.start, got {message['type']}")
            self.started = True
            self.head = self._head(message["status"], message.get("headers", ()))
            return
        if self.complete:
            raise RuntimeError(f"{message['type']} after the answer was complete")
        if message["type"] != "http.response.body":
            raise RuntimeError(f"expected http.response.body, got {message['type']}")
        body: bytes = message.get("body", b"")
        more = message.get("more_body", False)
        if self.no_body:
            body = b""
        elif self.chunked:
            body = (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + (
                b"" if more else b"0\r\n\r\n")
        elif self.length_left >= 0:
            self.length_left -= len(body)
            if self.length_left < 0:
                raise RuntimeError("answer longer than its Content-Length")
        if self.head:
            body, self.head = self.head + body, b""
        transport = connection.transport
        if body and transport is not None:
            transport.write(body)
        if not more:
            if self.length_left > 0 and not self.no_body:
                raise RuntimeError("answer shorter than its Content-Length")
            self.complete = True
            self.wake()
            connection.answered(self)

    def _head(self, status: int, headers: Sequence[tuple[bytes, bytes]]) -> bytes:
        parts = [_status_line(status)]
        if self.connection.server.date_header:
            parts.append(b"date: %s\r\n" % http_date())
        for name, value in headers:
            lower = name.lower()
            if lower == b"content-length":
                self.length_left = int(value)
            elif lower == b"transfer-encoding" and value.lower() == b"chunked":
                self.chunked = True
            elif lower == b"connection" and b"close" in value.lower():
                self.keep_alive = False
            if b"\n" in value or b"\r" in value or b"\n" in name or b"\r" in name:
                raise RuntimeError("a header with a line break")
            parts.append(name + b": " + value + b"\r\n")
        if not self.keep_alive and not any(n.lower() == b"connection" for n, _ in headers):
            parts.append(b"connection: close\r\n")
        # No length: chunked, except to an HTTP/1.0 client, which cannot read chunks (RFC 9112
        # 6.1); its answer ends when the connection closes (it is never kept alive).
        if (self.length_left < 0 and not self.chunked and not self.no_body
                and status not in (204, 304) and self.scope["http_version"] != "1.0"):
            self.chunked = True
            parts.append(b"transfer-encoding: chunked\r\n")
        parts.append(b"\r\n")
        return b"".join(parts)

    async def run(self, app: Any) -> None:
        try:
            await app(self.scope, self.receive, self.send)
        except BaseException as exc:
            if not isinstance(exc, asyncio.CancelledError):
                log.error("exception in ASGI application", exc_info=exc)
            if not self.started and not self.disconnected:
                with contextlib.suppress(Exception):
                    for message in _SERVER_ERROR:
                        await self.send(message)
            elif not self.complete:
                self.connection.close()
            if isinstance(exc, asyncio.CancelledError):
                raise
        else:
            if not self.complete and not self.disconnected:
                if not self.started:
                    log.error("ASGI application returned without answering")
                    for message in _SERVER_ERROR:
                        await self.send(message)
                else:
                    log.error("ASGI application returned without completing its answer")
                    self.connection.close()
