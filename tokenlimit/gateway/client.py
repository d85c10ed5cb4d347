"""The gateway's HTTP/1.1 client: keep-alive connections over asyncio protocols and httptools.

The gateway's stack, chosen by measurement (bench/gateway_overhead.py, the three servers in
separate processes, wrk with 16 connections; py-spy on the gateway):

- client: this module. With aiohttp (the client before), its request machinery took about three
  quarters of the gateway's time, some 300 us for each of the three calls a request makes (check,
  forward, report). This client writes a small request in one ``write``, parses answers with
  httptools (the parser of both servers), streams bodies both ways with flow control, keeps
  connections alive and pipelines reports. Side by side in one run: 0.13x -> 0.24x the direct
  throughput, 0.94 -> 0.61 ms added to the median latency. It also tells "could not connect"
  (nothing was sent) from "broke after sending", which the exactly-once report spool needs.
- server: :mod:`tokenlimit.gateway.http_server` (it was uvicorn): see its docstring.

It does what the gateway needs and no more: one origin per client (the service, or the
upstream), requests with a bytes or streamed body, answers streamed back chunk by chunk, small
requests (checks, reports) pipelined on a few shared connections (``fetch``, ``pipeline``):
side by side, that took the gateway from about 140 to 110 us of CPU per request and the
service from about 69 to 50. Errors: :class:`ConnectFailed` (nothing was sent, so a retry cannot
double anything) and :class:`ExchangeFailed` (the connection broke once the request was sent),
both :class:`ClientFailure`, and ``TimeoutError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import TypeVar
from urllib.parse import urlsplit

from tokenlimit.gateway.client_connection import (
    ClientConnection,
    ClientFailure,
    ConnectFailed,
    ExchangeFailed,
    Fetched,
    PipelinedConnection,
    within,
)

__all__ = ["Answer", "ClientFailure", "ConnectFailed", "ExchangeFailed", "HttpClient"]

MAX_IDLE = 256  # idle connections kept per client
PIPELINE_DEPTH = 8  # checks in flight on one pipelined connection before another is opened
Opened = TypeVar("Opened", ClientConnection, PipelinedConnection)


class Answer:
    """An answer whose body is read as it arrives; ``release`` returns the connection."""

    def __init__(self, client: HttpClient, connection: ClientConnection) -> None:
        self._client = client
        self._connection: ClientConnection | None = connection
        self.status = connection.status
        self.raw_headers = connection.headers
        self.keep_alive = connection.keep_alive
        self.read_timeout = client.read_timeout

    @property
    def arrived(self) -> bool:
        """Whether the whole answer is already in (nothing left to wait for)."""
        return self._connection is not None and self._connection.complete

    def header(self, name: bytes) -> str:
        """A header's first value ('' when absent); ``name`` in lower case."""
        for key, value in self.raw_headers:
            if key == name:
                return value.decode("latin-1")
        return ""

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body, chunk by chunk as it arrives."""
        connection = self._connection
        while connection is not None:
            if not connection.chunks and not connection.complete:
                if self.read_timeout is None:
                    await connection.readable.wait()
                else:
                    async with asyncio.timeout(self.read_timeout):
                        await connection.readable.wait()
            error = connection.error
            data = connection.take()
            if data:
                yield data
            elif connection.complete:
                return
            elif error is not None:
                raise error

    def received(self) -> bytes:
        """The body bytes received and not handed out yet (the whole body once ``arrived``)."""
        return self._connection.take() if self._connection is not None else b""

    async def read(self) -> bytes:
        """The whole body."""
        return b"".join([chunk async for chunk in self.chunks()])

    def close(self) -> None:
        """Drop the connection (the rest of the answer is not read)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.complete = True  # nothing more will be waited for
            connection.readable.set()
            if connection.transport is not None:
                connection.transport.close()

    def release(self) -> None:
        """Hand the connection back for reuse when the answer was read to its end."""
        connection, self._connection = self._connection, None
        if connection is None:
            return
        if connection.complete and self.keep_alive and not connection.closed:
            self._client.idle(connection)
        elif connection.transport is not None:
            connection.transport.close()


class HttpClient:
    """Requests to one origin (``http://host:port`` or ``https://...``) over kept-alive
    connections."""

    def __init__(self, origin: str, connect_timeout: float = 10.0,
                 read_timeout: float | None = None) -> None:
        self.origin = origin
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{origin!r}: give http://HOST[:PORT] or https://HOST[:PORT]")
        self.host = parts.hostname
        self.tls = ssl.create_default_context() if parts.scheme == "https" else None
        self.port = parts.port or (443 if self.tls else 80)
        self.authority = parts.netloc.encode("idna")
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout  # the longest wait for the next bytes of an answer
        self._idle: deque[ClientConnection] = deque()
        self._pipes: list[PipelinedConnection] = []
        self._opening = asyncio.Lock()
        self._connect_failures = 0
        self._connect_failure = ""

    def idle(self, connection: ClientConnection) -> None:
        if len(self._idle) < MAX_IDLE:
            self._idle.append(connection)
        elif connection.transport is not None:
            connection.transport.close()

    async def _connection(self) -> ClientConnection:
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed and connection.transport is not None and (
                    not connection.transport.is_closing()):
                return connection
        return await self._open(ClientConnection)

    async def _open(self, protocol: Callable[[], Opened]) -> Opened:
        """A new connection to the origin (``ConnectFailed`` saying why not)."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, opened = await loop.create_connection(
                    protocol, self.host, self.port, ssl=self.tls,
                    server_hostname=self.host if self.tls else None)
        except (OSError, TimeoutError) as exc:
            raise ConnectFailed(f"cannot connect to {self.host}:{self.port}: "
                                f"{getattr(exc, 'strerror', None) or type(exc).__name__}"
                                ) from exc
        return opened

    async def request(self, method: str, target: bytes,
                      headers: list[tuple[bytes, bytes]] | None = None,
                      body: bytes | AsyncIterator[bytes] | None = None,
                      host: bool = True) -> Answer:
        """Send a request and wait for the answer's head.

        ``headers`` (names in lower case) go as given, byte for byte (``host``: add a Host
        header for this origin). A bytes body gets a Content-Length; a streamed one is sent
        chunked unless ``headers`` hold a Content-Length.
        """
        connection = await self._connection()
        head = connection.start(method)
        lines = [method.encode("latin-1") + b" " + target + b" HTTP/1.1"]
        if host:
            lines.append(b"host: " + self.authority)
        sized = False
        for name, value in headers or ():
            sized = sized or name == b"content-length"
            lines.append(name + b": " + value)
        chunked = False
        if isinstance(body, bytes):
            lines.append(b"content-length: %d" % len(body))
        elif body is not None and not sized:
            chunked = True
            lines.append(b"transfer-encoding: chunked")
        data = b"\r\n".join(lines) + b"\r\n\r\n"
        transport = connection.transport
        assert transport is not None
        if isinstance(body, bytes):
            transport.write(data + body)
        else:
            transport.write(data)
            if body is not None:
                await self._send_stream(connection, body, chunked, head)
        try:
            await within(head, self.read_timeout)
        except BaseException:
            transport.close()
            raise
        return Answer(self, connection)

    async def fetch(self, method: str, target: bytes, timeout: float) -> Fetched:
        """A small request without a body, its answer read whole: (status, headers, body).

        ``TimeoutError`` after ``timeout`` seconds; :class:`ExchangeFailed` carries whether it
        may have been served (``answered``; when not, a retry cannot do it twice). This is the
        check's path: pipelined (:class:`PipelinedConnection`), one future and one timer, where
        ``request`` and ``Answer.read`` cost an async iteration and more.
        """
        pipe = await self._pipe()
        answer = pipe.send(method.encode("latin-1") + b" " + target + b" HTTP/1.1\r\nhost: "
                           + self.authority + b"\r\n\r\n")
        try:
            await within(answer, timeout)
        except TimeoutError:
            pipe.expire()
            raise
        except asyncio.CancelledError:
            pipe.close()  # its answer would be taken for the next request's
            raise
        return answer.result()

    def _roomy_pipe(self) -> PipelinedConnection | None:
        for pipe in self._pipes:
            if len(pipe.waiting) < PIPELINE_DEPTH and not pipe.closed and pipe.reusable:
                return pipe
        return None

    async def _pipe(self) -> PipelinedConnection:
        """A pipelined connection with room for one more request, opened if none has. One
        is opened at a time (a burst of calls shares it); when opening fails, the calls that
        waited for it fail at once too (nothing was sent), instead of each trying in turn."""
        pipe = self._roomy_pipe()
        if pipe is not None:
            return pipe
        failures = self._connect_failures
        async with self._opening:
            pipe = self._roomy_pipe()
            if pipe is not None:
                return pipe
            if self._connect_failures != failures:
                raise ConnectFailed(self._connect_failure)
            self._pipes = [p for p in self._pipes if not p.closed and p.reusable]
            try:
                pipe = await self._open(PipelinedConnection)
            except ConnectFailed as exc:
                self._connect_failures += 1
                self._connect_failure = str(exc)
                raise
            self._pipes.append(pipe)
            return pipe

    async def pipeline(self, method: str, target: bytes, headers: list[tuple[bytes, bytes]],
                       bodies: list[bytes]) -> list[int | None]:
        """Send several small requests in one write on one connection (HTTP/1.1 pipelining,
        behind the checks already on it, so a report goes before the checks made after it)
        and wait for their answers (bodies ignored): each answer's status, in order, or
        ``None`` for a request whose answer did not come (the connection broke first).
        :class:`ConnectFailed` when no connection could be opened (nothing was sent).
        """
        pipe = await self._pipe()
        head = [method.encode("latin-1") + b" " + target + b" HTTP/1.1", b"host: " + self.authority]
        head += [name + b": " + value for name, value in headers]
        prefix = b"\r\n".join(head) + b"\r\n"
        answers = [pipe.send(prefix + b"content-length: %d\r\n\r\n" % len(body) + body)
                   for body in bodies]
        try:
            for answer in answers:
                with contextlib.suppress(ExchangeFailed):
                    await answer
        except BaseException:  # cancelled (a timeout): the answers are not waited for
            pipe.expire()
            for answer in answers:
                if answer.done() and not answer.cancelled():
                    answer.exception()  # looked at: asyncio does not warn of it
            raise
        return [a.result()[0] if a.done() and not a.exception() else None for a in answers]

    @staticmethod
    async def _send_stream(connection: ClientConnection, body: AsyncIterator[bytes], chunked: bool,
                           head: asyncio.Future[None]) -> None:
        transport = connection.transport
        assert transport is not None
        try:
            async for part in body:
                if head.done():  # answered before the body was sent: stop sending it, and
                    connection.keep_alive = False  # the connection cannot be used again
                    break
                if chunked:
                    transport.write(b"%x\r\n%s\r\n" % (len(part), part))
                else:
                    transport.write(part)
                await connection.drain()
        except BaseException:
            transport.close()
            with contextlib.suppress(BaseException):
                head.exception() if head.done() else head.cancel()
            raise
        if chunked and not head.done():
            transport.write(b"0\r\n\r\n")

    async def close(self) -> None:
        """Close the idle connections (and the pipelined ones)."""
        for pipe in self._pipes:
            pipe.close()
        self._pipes = []
        while self._idle:
            connection = self._idle.pop()
            if connection.transport is not None:
                connection.transport.close()

