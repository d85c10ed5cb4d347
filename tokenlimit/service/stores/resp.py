"""A minimal pipelined Redis connection: RESP out, hiredis in, one write per loop turn.

Why not redis-py's asyncio client: the check endpoint makes one EVALSHA per request, and
per-call overhead decides the throughput. Here, commands issued by concurrent requests during
one event-loop turn go out in a single ``write`` (a pipeline built by the loop itself), and
replies resolve futures in order. A call not answered within ``timeout`` seconds fails every
call still waiting on the connection (RESP has no way to skip one reply) and drops it; the next
call reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

import hiredis

from tokenlimit.errors import StoreError

Arg = str | bytes | int


class ReplyError(Exception):
    """An error reply from Redis (``-ERR ...``, ``-NOSCRIPT ...``): the call failed, the
    connection is fine."""


def encode_command(args: Sequence[Arg]) -> bytes:
    """One command in RESP.

    >>> encode_command(["GET", "k"])
    b'*2\\r\\n$3\\r\\nGET\\r\\n$1\\r\\nk\\r\\n'
    """
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode("utf-8", "surrogatepass")
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class _RespProtocol(asyncio.Protocol):
    def __init__(self, owner: RespConnection) -> None:
        self.owner = owner
        self.reader = hiredis.Reader(replyError=ReplyError)

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        pending = self.owner.pending
        while True:
            try:
                reply = self.reader.gets()
            except hiredis.ProtocolError as exc:
                self.owner.fail(StoreError(f"redis protocol error: {exc}"))
                return
            if reply is False:
                return
            if not pending or self.owner.protocol is not self:
                continue
            future, _ = pending.popleft()
            if not future.done():
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.owner.protocol is not self:
            return  # an older connection, already replaced
        self.owner.fail(StoreError(f"connection to redis at {self.owner.address} lost"))


class RespConnection:
    """One connection to one Redis node, opened on first use and reopened after a failure.

    ``setup`` commands (AUTH, SELECT, SCRIPT LOAD...) run first on every new connection.
    """

    def __init__(self, host: str, port: int, *, timeout: float = 1.0,
                 setup: Sequence[Sequence[Arg]] = ()) -> None:
        self.host, self.port = host, port
        self.timeout = timeout
        self.setup = [list(command) for command in setup]
        self.transport: asyncio.Transport | None = None
        self.protocol: _RespProtocol | None = None
        self.pending: deque[tuple[asyncio.Future[Any], float]] = deque()
        self.buffer: list[bytes] = []
        self.flush_scheduled = False
        self.timer: asyncio.TimerHandle | None = None
        self.overdue = False
        self.connecting: asyncio.Future[None] | None = None
        self.last_failure = 0.0

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    async def call(self, *args: Arg) -> Any:
        """Send one command; its reply (``ReplyError`` for an error reply)."""
        return await self.send(encode_command(args))

    async def send(self, command: bytes) -> Any:
        """Send one command already encoded in RESP; its reply."""
        if self.transport is None:
            await self.connect()
        reply = await self._send(command)
        if isinstance(reply, ReplyError):
            raise reply
        return reply

    def _send(self, data: bytes) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if self.transport is None:
            future.set_exception(StoreError(f"redis at {self.address} is not connected"))
            return future
        # The deadline is set when the command is written (see _flush): time spent queued
        # behind a busy event loop is not Redis being slow.
        self.pending.append((future, math.inf))
        self.buffer.append(data)
        if not self.flush_scheduled:
            self.flush_scheduled = True
            loop.call_soon(self._flush)
        if self.timer is None:
            self.timer = loop.call_later(self.timeout, self._check_deadline)
        return future

    def _flush(self) -> None:
        self.flush_scheduled = False
        if self.transport is not None and self.buffer:
            self.transport.write(b"".join(self.buffer))
            deadline = asyncio.get_running_loop().time() + self.timeout
            pending = self.pending
            for index in range(len(pending) - len(self.buffer), len(pending)):
                pending[index] = (pending[index][0], deadline)
        self.buffer.clear()

    def _check_deadline(self) -> None:
        self.timer = None
        if not self.pending:
            return
        loop = asyncio.get_running_loop()
        deadline = self.pending[0][1]
        if loop.time() >= deadline and self.overdue:
            self.fail(StoreError(f"redis at {self.address} did not answer within "
                                 f"{self.timeout:g} s"))
        elif loop.time() >= deadline:
            # After a stall, timers run before the loop reads its sockets: look once more
            # after the next read, where a reply already received is taken first.
            self.overdue = True
            self.timer = loop.call_later(0.001, self._check_deadline)
        else:
            self.overdue = False
            delay = min(deadline - loop.time(), self.timeout)
            self.timer = loop.call_later(delay, self._check_deadline)

    async def connect(self) -> None:
        if self.connecting is not None:
            await asyncio.shield(self.connecting)
            if self.transport is None:
                raise StoreError(f"cannot connect to redis at {self.address}")
            return
        # Fail fast for a short while after a failed attempt, so a dead Redis costs nothing.
        if time.monotonic() - self.last_failure < 0.05:
            raise StoreError(f"cannot connect to redis at {self.address}")
        loop = asyncio.get_running_loop()
        self.connecting = loop.create_future()
        try:
            transport, protocol = await asyncio.wait_for(
                loop.create_connection(lambda: _RespProtocol(self), self.host, self.port),
                self.timeout)
            self.transport = transport
            self.protocol = protocol
            for command in self.setup:
                reply = await self._send(encode_command(command))
                if isinstance(reply, ReplyError):
                    name = command[0].decode() if isinstance(command[0], bytes) else command[0]
                    raise StoreError(f"redis at {self.address}: {name} failed: {reply}")
        except (OSError, TimeoutError) as exc:
            self.last_failure = time.monotonic()
            self.fail(StoreError(f"cannot connect to redis at {self.address}: {exc}"))
            raise StoreError(f"cannot connect to redis at {self.address}: "
                             f"{getattr(exc, 'strerror', None) or 'timed out'}") from exc
        except StoreError:
            self.last_failure = time.monotonic()
            self.fail(StoreError(f"redis at {self.address} refused the connection set-up"))
            raise
        finally:
            self.connecting.set_result(None)
            self.connecting = None

    def fail(self, error: StoreError) -> None:
        """Drop the connection; every waiting call fails with ``error``."""
        self.protocol = None
        if self.transport is not None:
            transport, self.transport = self.transport, None
            transport.close()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.buffer.clear()
        while self.pending:
            future, _ = self.pending.popleft()
            if not future.done():
                future.set_exception(error)

    async def close(self) -> None:
        self.fail(StoreError("connection closed"))
        with contextlib.suppress(Exception):
            await asyncio.sleep(0)
