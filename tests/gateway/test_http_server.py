"""The gateway's and the mock's HTTP server (tokenlimit.gateway.http_server) over real sockets.

Each test serves a small ASGI app on loopback and talks to it with raw bytes, so that what is
checked is exactly what a client receives: framing, order, and the one write per answer.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tokenlimit.gateway import LOOPBACK, BackgroundServers, Listener, bind, http_server
from tokenlimit.gateway.asgi import read_body
from tokenlimit.gateway.http_server import AsgiServer, _HttpConnection


class Echo:
    """Answers with the method, the path and the body it read; ``/fail`` raises, ``/nolength``
    answers without a Content-Length (in two parts), ``/wait`` waits for the client to go."""

    def __init__(self) -> None:
        self.disconnects = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        path = scope["path"]
        if path == "/fail":
            raise RuntimeError("a bug in the app")
        if path == "/wait":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"first", "more_body": True})
            if (await receive())["type"] == "http.disconnect":
                self.disconnects += 1
            return
        text = f"{scope['method']} {path} {body.decode()}".encode()
        if path == "/nolength":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": text, "more_body": True})
            await send({"type": "http.response.body", "body": b"!"})
            return
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"text/plain"), (b"content-length", str(len(text)).encode())]})
        await send({"type": "http.response.body", "body": text})


@pytest.fixture
def echo() -> Iterator[tuple[Echo, int]]:
    app = Echo()
    with BackgroundServers([Listener("echo", app, bind(LOOPBACK, 0))]) as servers:
        yield app, servers.listeners[0].port


def exchange(port: int, data: bytes, answers: int = 1) -> bytes:
    """Send ``data``, read until the server closes or ``answers`` answers ended (by length)."""
    with socket.create_connection((LOOPBACK, port), timeout=10) as sock:
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
            if received.count(b"HTTP/1.1 2") >= answers and _complete(received, answers):
                break
    return received


def _complete(data: bytes, answers: int) -> bool:
    rest = data
    for _ in range(answers):
        head, sep, rest = rest.partition(b"\r\n\r\n")
        if not sep:
            return False
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), None)
        if length is None or len(rest) < length:
            return False
        rest = rest[length:]
    return True


def test_pipelined_requests_are_answered_in_order(echo: tuple[Echo, int]) -> None:
    _, port = echo
    one = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
    two = b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n"
    received = exchange(port, one + two, answers=2)
    assert received.count(b"HTTP/1.1 200 OK\r\n") == 2
    assert received.index(b"POST /a abc") < received.index(b"GET /b ")
    assert received.count(b"\r\ndate: ") == 2  # the server's Date, once per answer


def test_head_gets_no_body_and_no_length_answers_are_chunked(echo: tuple[Echo, int]) -> None:
    _, port = echo
    head = exchange(port, b"HEAD /h HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and head.endswith(b"\r\n\r\n")
    assert b"content-length: 8\r\n" in head  # the app's, kept; its body is not sent
    chunked = exchange(port, b"GET /nolength HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert b"transfer-encoding: chunked\r\n" in chunked
    assert chunked.endswith(b"\r\n\r\ne\r\nGET /nolength \r\n1\r\n!\r\n0\r\n\r\n")


def test_an_http_1_0_client_gets_an_answer_without_a_length_unchunked(
        echo: tuple[Echo, int]) -> None:
    # a streamed answer (an SSE stream through the gateway, the mock's) to ApacheBench or
    # `curl --http1.0`: it was chunked, so the client read the chunk sizes as body bytes
    _, port = echo
    answer = exchange(port, b"GET /nolength HTTP/1.0\r\nHost: x\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"transfer-encoding" not in answer
    assert answer.endswith(b"\r\nconnection: close\r\n\r\nGET /nolength !")


def test_a_head_that_never_ends_is_answered_408_and_closed(
        echo: tuple[Echo, int], monkeypatch: pytest.MonkeyPatch) -> None:
    # a slow-loris client (or a broken one) held its connection for as long as the server ran
    monkeypatch.setattr(http_server, "HEAD_SECONDS", 0.2, raising=False)
    _, port = echo
    with socket.create_connection((LOOPBACK, port), timeout=10) as sock:
        sock.sendall(b"POST /a HTTP/1.1\r\nHost: x\r\n")
        answer = b"".join(iter(lambda: sock.recv(65536), b""))
    assert answer == (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8"
                      b"\r\ncontent-length: 15\r\nconnection: close\r\n\r\nrequest timeout")
    # a head that comes whole is answered, however long the connection was idle before
    assert exchange(port, b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n").endswith(b"GET /b ")


def test_expect_continue_is_answered_when_the_app_reads(echo: tuple[Echo, int]) -> None:
    _, port = echo
    with socket.create_connection((LOOPBACK, port), timeout=10) as sock:
        sock.sendall(b"POST /c HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                     b"Content-Length: 2\r\nConnection: close\r\n\r\n")
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"ok")
        answer = b"".join(iter(lambda: sock.recv(65536), b""))
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b"POST /c ok")


def test_bad_requests_and_app_errors(echo: tuple[Echo, int]) -> None:
    _, port = echo
    assert exchange(port, b"GET / HTTP/1.1\r\nHost x\r\n\r\n") == (
        b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"content-length: 29\r\nconnection: close\r\n\r\nInvalid HTTP request received.")
    failed = exchange(port, b"GET /fail HTTP/1.1\r\nHost: x\r\n\r\n")
    assert failed.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    assert failed.endswith(b"connection: close\r\n\r\nInternal Server Error")


def test_a_client_hanging_up_is_seen_by_the_app(echo: tuple[Echo, int]) -> None:
    app, port = echo
    with socket.create_connection((LOOPBACK, port), timeout=10) as sock:
        sock.sendall(b"GET /wait HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b"first" in sock.recv(65536)
    deadline = time.monotonic() + 10
    while app.disconnects == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert app.disconnects == 1


class _Recorder(asyncio.Transport):
    """A transport that records what is written (to count writes, which a socket cannot)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name in ("peername", "sockname") else default

    def close(self) -> None:
        pass


def test_an_answer_goes_out_in_one_write() -> None:
    # uvicorn wrote the head and the body separately: one system call and one wake-up of the
    # client more per answer.
    async def run() -> list[bytes]:
        connection = _HttpConnection(AsgiServer(Echo()))
        transport = _Recorder()
        connection.connection_made(transport)
        connection.data_received(b"POST /one HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nz")
        for _ in range(10):
            await asyncio.sleep(0)
        return transport.writes

    writes = asyncio.run(run())
    assert len(writes) == 1
    assert writes[0].startswith(b"HTTP/1.1 200 OK\r\n") and writes[0].endswith(b"POST /one z")
