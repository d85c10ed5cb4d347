"""A small HTTP/1.1 server that reads requests as Go's net/http does (see ``http_head``).

Why not a framework: the check endpoint must answer tens of thousands of tiny requests a
second on two cores, and must accept exactly what the ASM service's Go server accepts (any
method token, 1 MiB heads, ``#`` in the query), which llhttp-based parsers refuse. A raw
protocol costs one ``find`` per head and one ``write`` per answer; keep-alive and pipelining
are kept, answers go out in request order, and the work in flight is bounded per connection
and in total (reading pauses beyond).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import resource
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from tokenlimit.service.http_answer import (
    EXPECTATION_FAILED,
    OPTIONS_STAR,
    STAR_OTHER,
    STAR_OTHER_HTTP10,
    Response,
    encode_response,
    gorilla_redirect,
    redirect_response,
)
from tokenlimit.service.http_head import (
    BAD_REQUEST,
    MAX_HEAD,
    TOO_LARGE,
    BodyError,
    ChunkedBody,
    Head,
    HeadError,
    check_lines,
    connect_redirect,
    expects_continue,
    go_error,
    go_redirect,
    parse_head,
)

__all__ = ["Handler", "HttpServer", "Limits", "Request", "Response", "encode_response"]


@dataclass(slots=True)
class Request:
    """One parsed request: the raw path and query, lower-cased headers and the body."""

    method: str
    path: str
    query: bytes
    headers: dict[str, str]
    body: bytes
    too_large: bool = False


Handler = Callable[[Request], Coroutine[Any, Any, Response]]
FD_HEADROOM = 8  # descriptors short of the limit at which accepting is about to fail
BIG_HOLDER = 64 << 10  # over the byte bound, connections holding more than this pause
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
BODY_READER = "/update_ratelimit_record"  # the one route whose Go handler reads the body
# Go's server discards at most this much of a body its handler did not read (its
# maxPostHandlerReadBytes); a larger body closes the connection after the answer.
GO_DISCARD_LIMIT = 256 << 10
CUT_SHORT = go_error(BAD_REQUEST)  # Go: a head the client ended before its blank line
BODY_READ_ERROR = Response(400)  # the report handler's answer when reading its body fails


@dataclass(slots=True)
class Limits:
    """Bounds on one server's connections; the defaults never cut a healthy gateway.

    ``idle_timeout``: seconds a keep-alive connection may sit idle (above Envoy's one hour, so
    the gateway always closes first). ``request_timeout``: seconds from a request's first byte
    to its last. ``per_connection``: requests read but not yet answered on one connection
    (reading pauses beyond). ``in_flight``: the same over all connections. ``held_bytes``:
    bytes received and not yet answered, over all connections; beyond, connections holding
    more than 64 KiB stop being read (small requests go on), so 1 MiB heads on many
    connections cannot take the process past its memory limit.
    """

    idle_timeout: float = 3900.0
    request_timeout: float = 60.0
    per_connection: int = 64
    in_flight: int = 2048
    held_bytes: int = 32 << 20


class HttpProtocol(asyncio.Protocol):
    """One client connection: reads requests as Go's server does, answers in order."""

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.handler = server.handler
        self.max_body = server.max_body
        self.transport: asyncio.Transport | None = None
        # (answer, keep the connection, HEAD request, HTTP/1.0 request, bytes it came in,
        #  bytes written before the answer: Go's "100 Continue" when its handler reads)
        self.pending: deque[tuple[asyncio.Future[Response], bool, bool, bool, int, bytes]] = (
            deque())
        self.held = 0  # bytes received and not yet answered (buffered or in flight)
        self.buffer = bytearray()
        self.closing = False
        self.paused = False
        self.last_active = time.monotonic()
        self.request_started: float | None = None
        self.searched = 0  # where the search for the end of the head resumes
        self.checked = 0  # where the next head line not yet checked starts
        self.partial: tuple[Head, int] | None = None  # a parsed head waiting for its body
        self.chunks: ChunkedBody | None = None  # its chunked body, read so far
        self.last_words: bytes | None = None  # Go's refusal, written once earlier answers are
        self._continued = False
        self.eof = False  # the client half-closed its side
        self.last_method = ""  # of the last request started ("" before the first)
        self.fresh = False  # a request was started and the next head not begun

    # asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.server.paused.discard(self)
        self.transport = None
        # Requests already read run to completion (a usage report half applied would be worse
        # than an answer nobody reads), as Go's server does; their answers are dropped.
        self.server.in_flight -= len(self.pending)
        self.pending.clear()
        self.buffer.clear()
        self.server.held -= self.held
        self.held = 0
        self.server.resume_some()

    def eof_received(self) -> bool:
        """The client half-closed. As Go's server: what it sent whole is still answered
        (a request whose body stops short is started with a body read error), then the
        connection closes; an unfinished head gets no answer."""
        self.eof = True
        transport = self.transport
        if transport is None or self.closing or self.paused:
            return True  # closing already, or reading resumes later and ends here
        if self.partial is not None:
            # Go: a Content-Length body cut short is a read error the report handler
            # answers with its 400 (a handler that never reads it has the connection
            # closed); a chunked one is a read error that closes it in any case
            head = self.partial[0]
            size = len(self.buffer)
            self.buffer.clear()
            self.partial, self.chunks, self.request_started = None, None, None
            close = head.content_length < 0 or not self._reads_body(head)
            self._start(head, b"", False, size, close=close, body_error=True)
        elif self.buffer and not (self.fresh and len(self.buffer) < 4):
            # an unfinished head: Go refuses its first bad line, else it is cut short (400)
            try:
                check_lines(self.buffer, self.checked, final=True)
            except HeadError as exc:
                self._fail(exc.answer)
            else:
                self._fail(CUT_SHORT.answer)
            return True
        if not self.pending:
            self._hang_up(transport)
        return True

    def data_received(self, data: bytes) -> None:
        if self.transport is None or self.closing:
            return  # answered with an error, or asked to close: the rest is not read
        self.buffer += data
        self.held += len(data)
        self.server.held += len(data)
        self.last_active = time.monotonic()
        if self.request_started is None:
            self.request_started = self.last_active
        self._parse()

    def _parse(self) -> None:
        server = self.server
        while self.buffer and self.transport is not None and not self.closing:
            # Memory short and this connection holds much: wait for its own answers to go
            # out; or, with nothing in flight and an unfinished request, stop reading it (it
            # then finishes later or runs into --request-timeout). Whole requests are served.
            short = server.held > server.limits.held_bytes and self.held > BIG_HOLDER
            if (len(self.pending) >= server.limits.per_connection
                    or server.in_flight >= server.limits.in_flight
                    or (short and self.pending)):
                self._pause()
                return
            try:
                taken = self._take_request()
            except HeadError as exc:
                self._fail(exc.answer)
                return
            if not taken:
                if short and server.held > 2 * server.limits.held_bytes:
                    self._fail(TOO_LARGE.answer)  # still growing: give up the biggest
                elif short:
                    self._pause()
                return
        if not self.buffer:
            self.request_started = None

    def _take_request(self) -> bool:
        """Start the first complete request in the buffer; False while it is incomplete.

        Work per call stays proportional to what arrived since the last one (a client
        dripping a 1 MiB head byte by byte must not cost a rescan per byte): the search for
        the head's end resumes where it stopped, and a parsed head is kept while its body
        arrives."""
        buffer = self.buffer
        if self.partial is not None:
            head, body_start = self.partial
        else:
            if self.fresh:  # Go waits for 4 bytes of a next request before reading it,
                if len(buffer) < 4:
                    return False
                self.fresh = False
                if self.last_method == "POST":  # and skips CR/LF among them after a POST
                    skip = 0
                    while skip < 4 and buffer[skip] in (10, 13):
                        skip += 1
                    if skip:
                        del buffer[:skip]
                        self.held -= skip
                        self.server.held -= skip
                        if not buffer:
                            return False
            start = self.searched
            # the head ends with an empty line: "\n" then "\r\n" or "\n"
            end = buffer.find(b"\n\r\n", start)
            bare = buffer.find(b"\n\n", start, end + 2 if end >= 0 else len(buffer))
            if bare >= 0:
                head_end, body_start = bare, bare + 2
            elif end >= 0:
                head_end = end - 1 if end > 0 and buffer[end - 1] == 13 else end  # "\r"
                body_start = end + 3
            else:
                if len(buffer) > MAX_HEAD:
                    raise TOO_LARGE
                self.searched = max(0, len(buffer) - 3)
                # Go reads a head line by line: a bad line is refused as soon as it is whole
                self.checked = check_lines(buffer, self.checked)
                return False
            if body_start > MAX_HEAD:  # Go counts the head's blank line too
                raise TOO_LARGE
            head = parse_head(bytes(buffer[:head_end]))
            self.partial, self.searched, self.checked = (head, body_start), 0, 0
            if not self._reads_body(head) and (self._waits_for_continue(head)
                                               or head.content_length >= GO_DISCARD_LIMIT):
                # Go's handler never reads this body. It never sends "100 Continue" for it,
                # nor discards a body this large: it answers at once and closes.
                del buffer[:body_start]
                self.partial = None
                self.request_started = None
                self._start(head, b"", False, body_start, close=True)
                return True
        too_large = close = False
        if head.content_length >= 0:
            if head.content_length > self.max_body:
                too_large, body, consumed = True, b"", len(buffer)
            elif len(buffer) < body_start + head.content_length:
                self._expect_continue(head)
                return False
            else:
                consumed = body_start + head.content_length
                body = bytes(buffer[body_start:consumed])
        else:
            if self.chunks is None:
                self.chunks = ChunkedBody(body_start)
            try:
                complete = self.chunks.read(buffer)
            except BodyError:  # the handler sees a read error; nothing after is read
                size = len(buffer)
                del buffer[:]
                self.partial, self.chunks, self.request_started = None, None, None
                self._start(head, b"", False, size, close=True, body_error=True)
                return True
            if complete:
                body, consumed = self.chunks.body, self.chunks.end
                too_large = self.chunks.size > self.max_body
                close = self.chunks.size > GO_DISCARD_LIMIT and not self._reads_body(head)
            elif len(buffer) - body_start > self.max_body + 65536:
                too_large, body, consumed = True, b"", len(buffer)
            else:
                self._expect_continue(head)
                return False
        del buffer[:consumed]
        self.partial, self.chunks = None, None
        self.request_started = time.monotonic() if buffer else None
        self._start(head, body, too_large, consumed, close=close)
        return True

    @staticmethod
    def _waits_for_continue(head: Head) -> bool:
        """Go offers "100 Continue" to an HTTP/1.1 request that expects it and has a body."""
        return (head.version >= (1, 1) and head.content_length != 0
                and expects_continue(head.headers.get("expect", "")))

    @staticmethod
    def _reads_body(head: Head) -> bool:
        """Whether the Go service's handler for this request reads its body: only the
        report handler does (redirects, 404, ``*`` and ``/ratelimit`` never read it)."""
        return head.path == BODY_READER

    def _expect_continue(self, head: Head) -> None:
        # Go writes "100 Continue" when its handler starts reading the body, that is once
        # every earlier answer on the connection is out (curl waits for it before a body
        # over 1 KiB). With answers still pending, the answer itself carries it (_start).
        if (self._waits_for_continue(head) and self.transport is not None
                and not self.pending and not self._continued):
            self.transport.write(CONTINUE)
            self._continued = True

    def _start(self, head: Head, body: bytes, too_large: bool, size: int,
               close: bool = False, body_error: bool = False) -> None:
        prefix = b""
        if (not self._continued and self._waits_for_continue(head)
                and self._reads_body(head)):
            prefix = CONTINUE
        self._continued = False
        self.last_method, self.fresh = head.method, True
        keep_alive = head.keep_alive and not too_large and not close
        path = head.path
        response: Response | None = None
        expect = head.headers.get("expect", "")
        if expect and not expects_continue(expect):
            response, keep_alive, prefix = EXPECTATION_FAILED, False, b""  # Go: 417
        elif path == "*":
            if head.method == "OPTIONS":
                response = OPTIONS_STAR
            elif head.version >= (1, 1):  # Go's ServeMux: 400, "Connection: close"
                response, keep_alive = STAR_OTHER, False
            else:
                response = STAR_OTHER_HTTP10
        elif head.method == "CONNECT":
            if (location := connect_redirect(head.target, path)) is not None:
                response = gorilla_redirect(location, head.query)
        elif (redirect := go_redirect(head.target, path)) is not None:
            by_serve_mux, location = redirect
            response = (redirect_response(head.method, location, head.query) if by_serve_mux
                        else gorilla_redirect(location, head.query))
        elif body_error and self._reads_body(head):
            response = BODY_READ_ERROR
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Response]
        if response is not None:
            future = loop.create_future()
            future.set_result(response)
        else:
            request = Request(head.method, path, head.query, head.headers, body, too_large)
            task = loop.create_task(self.handler(request))
            self.server.tasks.add(task)  # the loop keeps only weak references to tasks
            task.add_done_callback(self.server.tasks.discard)
            future = task
        self.pending.append((future, keep_alive, head.method == "HEAD", head.version < (1, 1),
                             size, prefix))
        self.server.in_flight += 1
        future.add_done_callback(self._flush)
        if not keep_alive:
            self.closing = True

    def _pause(self) -> None:
        if not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
            self.server.paused.add(self)

    def resume(self) -> None:
        """Read again after a pause for too much work in flight."""
        if self.paused and self.transport is not None:
            self.paused = False
            self.server.paused.discard(self)
            self.transport.resume_reading()
            self._parse()

    # answers, in request order
    def _flush(self, _: object = None) -> None:
        # The answers ready now go out in one write (a gateway pipelines its reports).
        ready: list[bytes] = []
        while self.pending and self.pending[0][0].done():
            future, keep_alive, head, http10, size, prefix = self.pending.popleft()
            self.server.in_flight -= 1
            self.held -= size
            self.server.held -= size
            if self.transport is None:
                return
            if future.cancelled():
                response = Response(503)
            elif future.exception() is not None:
                response = Response(500)
            else:
                response = future.result()
            if prefix:
                ready.append(prefix)
            ready.append(encode_response(response, keep_alive, http10, head))
            if not keep_alive:
                self.transport.write(b"".join(ready))
                self._hang_up(self.transport)
                return
        if ready and self.transport is not None:
            self.transport.write(ready[0] if len(ready) == 1 else b"".join(ready))
            self.last_active = time.monotonic()
        if self.last_words is not None and not self.pending:
            self._write_raw(self.last_words)
            return
        if self.eof and not self.pending and self.transport is not None and not self.paused:
            self._hang_up(self.transport)  # everything the client sent is answered
            return
        if not self.pending and self.partial is not None:
            self._expect_continue(self.partial[0])  # its turn has come: Go reads its body now
        if self.paused and len(self.pending) <= self.server.limits.per_connection // 2:
            self.resume()
        self.server.resume_some()
        if self.server.draining and not self.pending and self.transport is not None:
            self._hang_up(self.transport)

    def _fail(self, answer: bytes) -> None:
        if self.transport is None:
            return
        self.closing = True
        if self.pending:  # answer what came before first, in order
            self.last_words = answer
            return
        self._write_raw(answer)

    def _write_raw(self, answer: bytes) -> None:
        transport = self.transport
        if transport is None:
            return
        transport.write(answer)
        self._hang_up(transport)

    def _hang_up(self, transport: asyncio.Transport) -> None:
        # Half-close, and read (discarding) what the client still sends for a moment:
        # closing at once with unread input would reset the connection and lose the answer.
        self.transport = None
        self.closing = True
        unread, self.partial, self.chunks, self.searched = len(self.buffer), None, None, 0
        self.checked = 0
        self.buffer.clear()  # what was not read as a request is not needed any more
        self.held -= unread
        self.server.held -= unread
        if self.paused:
            self.paused = False
            self.server.paused.discard(self)
            transport.resume_reading()
        if transport.can_write_eof():
            transport.write_eof()
            asyncio.get_running_loop().call_later(1.0, transport.close)
        else:
            transport.close()

    def expire(self, now: float) -> None:
        """Close the connection if a request is too slow to arrive or it sat idle too long."""
        transport, limits = self.transport, self.server.limits
        if transport is None or self.pending:
            return
        if self.request_started is not None and now - self.request_started > limits.request_timeout:
            self._fail(b"")  # Go closes a connection whose request is too slow, no answer
        elif now - self.last_active > limits.idle_timeout:
            self._hang_up(transport)


class HttpServer:
    """Serves ``handler`` on a listening socket until ``close``."""

    def __init__(self, handler: Handler, *, max_body: int = 1 << 20,
                 limits: Limits | None = None, log: Callable[..., None] | None = None) -> None:
        self.handler = handler
        self.max_body = max_body
        self.limits = limits or Limits()
        self.log = log
        self.connections: set[HttpProtocol] = set()
        self.paused: set[HttpProtocol] = set()
        self.tasks: set[asyncio.Task[Response]] = set()
        self.in_flight = 0
        self.held = 0  # bytes received and not yet answered, over all connections
        self.draining = False
        self.server: asyncio.AbstractServer | None = None
        self._reaper: asyncio.Task[None] | None = None
        self.fd_warned = False

    async def start(self, host: str, port: int, *, reuse_port: bool = False) -> int:
        """Listen; returns the bound port (useful with port 0)."""
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: HttpProtocol(self), host, port, reuse_address=True,
            reuse_port=reuse_port or None, backlog=1024,
        )
        self._reaper = loop.create_task(self._reap())
        sockets = self.server.sockets
        return int(sockets[0].getsockname()[1]) if sockets else port

    def resume_some(self) -> None:
        """Let paused connections read again once the total in flight has room (below half
        the bound, so a connection is not paused and resumed at every answer)."""
        room, byte_room = self.limits.in_flight // 2, self.limits.held_bytes // 2
        if not self.paused or self.in_flight >= room or self.held >= byte_room:
            return
        for connection in list(self.paused):
            if self.in_flight >= room or self.held >= byte_room:
                return
            if len(connection.pending) <= self.limits.per_connection // 2:
                connection.resume()

    async def _reap(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for connection in list(self.connections):
                connection.expire(now)
            self._watch_descriptors()

    def _watch_descriptors(self) -> None:
        # When file descriptors run out the loop cannot accept, and uvloop (libuv) then
        # accepts and drops connections without a word: say so once per episode.
        if self.log is None:
            return
        limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if limit == resource.RLIM_INFINITY:
            return
        try:
            used = len(os.listdir("/proc/self/fd"))
        except OSError as exc:  # listing needs a descriptor too: EMFILE means none is left
            used = limit if exc.errno == errno.EMFILE else len(self.connections)
        if used >= limit - FD_HEADROOM and not self.fd_warned:
            self.fd_warned = True
            self.log("accept_failing", reason="file descriptors exhausted", open=used,
                     limit=limit, connections=len(self.connections))
        elif used < limit * 0.8:
            self.fd_warned = False

    async def close(self, grace: float = 5.0) -> int:
        """Stop accepting, answer every request already read (for ``grace`` seconds at most),
        then close every connection. Returns how many requests were still unanswered."""
        if self.server is None:
            return 0
        self.server.close()
        self.draining = True
        if self._reaper is not None:
            self._reaper.cancel()
        for connection in list(self.connections):
            connection.closing = True  # read no further request
            if connection.transport is not None and not connection.pending:
                connection._hang_up(connection.transport)
        deadline = time.monotonic() + grace
        while self.in_flight > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        left = self.in_flight
        for connection in list(self.connections):
            if connection.transport is not None:
                connection.transport.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.server.wait_closed(), 2)
        self.server = None
        return max(left, 0)
