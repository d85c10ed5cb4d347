"""The few raw-ASGI helpers the gateway and the mock share: types, reading a body, answering."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class ClientGone(Exception):
    """The client disconnected before its request body was read."""


async def read_body(receive: Receive) -> bytes:
    """The whole request body; :class:`ClientGone` when the client hangs up first."""
    parts: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(parts)


class RequestBody:
    """A request body read as it arrives: a bounded ``peek`` at its start, then a stream.

    The gateway peeks at most ``limit`` bytes (enough for any chat request) to add
    ``include_usage``; a larger body streams upstream as it comes, so memory stays bounded.
    """

    def __init__(self, receive: Receive) -> None:
        self.receive = receive
        self.head = b""
        self.complete = False

    async def _next(self) -> bytes:
        message = await self.receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        self.complete = not message.get("more_body", False)
        return bytes(message.get("body", b""))

    async def peek(self, limit: int) -> bytes:
        """Read until the body ends or more than ``limit`` bytes are in; those bytes."""
        parts = [self.head]
        size = len(self.head)
        while not self.complete and size <= limit:
            part = await self._next()
            parts.append(part)
            size += len(part)
        self.head = b"".join(parts)
        return self.head

    async def stream(self) -> AsyncIterator[bytes]:
        """The body from the first byte not yet handed out: what was peeked, then the rest."""
        head, self.head = self.head, b""
        if head:
            yield head
        while not self.complete:
            part = await self._next()
            if part:
                yield part


async def respond(send: Send, status: int, body: bytes, content_type: str,
                  headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """A complete response in one go."""
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
        *(headers or []),
    ]})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def respond_json(send: Send, status: int, value: Any) -> None:
    """A JSON response."""
    await respond(send, status, json.dumps(value).encode(), "application/json")


async def run_lifespan(receive: Receive, send: Send,
                       startup: Callable[[], Awaitable[None]] | None = None,
                       shutdown: Callable[[], Awaitable[None]] | None = None) -> None:
    """Answer the ASGI lifespan protocol, running ``startup`` and ``shutdown`` when given."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            if startup is not None:
                await startup()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            if shutdown is not None:
                await shutdown()
            await send({"type": "lifespan.shutdown.complete"})
            return
