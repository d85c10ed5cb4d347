"""The gateway's HTTP client against raw loopback servers: what it sends, what it makes of
answers, and what it reports when a connection breaks."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator

import pytest

from tokenlimit.gateway.client import ConnectFailed, HttpClient


class RawServer:
    """Accepts connections on loopback, records what arrives and answers with ``replies``
    (one per connection, sent once its ``until`` bytes have arrived; then it closes)."""

    def __init__(self, replies: list[tuple[bytes, bytes]]) -> None:
        self.replies = replies
        self.received: list[bytes] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        for until, reply in self.replies:
            connection, _ = self.sock.accept()
            with connection:
                data = b""
                while until not in data:
                    chunk = connection.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                self.received.append(data)
                connection.sendall(reply)


def test_a_pipeline_broken_after_the_first_answer_tells_which_were_answered() -> None:
    # both requests arrived, one answer, then the connection closes
    server = RawServer([(b"\r\n\r\nb", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")])

    async def main() -> list[int | None]:
        client = HttpClient(f"http://127.0.0.1:{server.port}")
        return await client.pipeline("POST", b"/r", [(b"content-type", b"text/plain")],
                                     [b"a", b"b"])

    assert asyncio.run(main()) == [200, None]
    assert server.received[0].count(b"POST /r HTTP/1.1\r\n") == 2


def test_nothing_listening_is_a_connect_failure() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    async def main() -> None:
        await HttpClient(f"http://127.0.0.1:{port}").request("GET", b"/")

    with pytest.raises(ConnectFailed):
        asyncio.run(main())


def test_an_answer_to_head_ends_with_its_head_and_a_chunked_upload_is_framed() -> None:
    server = RawServer([(b"\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n"),
                        (b"0\r\n\r\n", b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked"
                                        b"\r\n\r\n3\r\nabc\r\n0\r\n\r\n")])

    async def parts() -> AsyncIterator[bytes]:
        yield b"hello "
        yield b"world"

    async def main() -> tuple[int, bytes, int, bytes]:
        client = HttpClient(f"http://127.0.0.1:{server.port}")
        head = await client.request("HEAD", b"/h")
        empty = await head.read()
        head.release()
        posted = await client.request("POST", b"/p", [], parts())
        body = await posted.read()
        posted.release()
        return head.status, empty, posted.status, body

    assert asyncio.run(main()) == (200, b"", 201, b"abc")
    assert server.received[1].endswith(b"transfer-encoding: chunked\r\n\r\n"
                                       b"6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n")


def test_concurrent_fetches_share_a_few_connections_and_each_gets_its_own_answer() -> None:
    # Checks are pipelined: 20 at once go out on at most ceil(20 / 8) connections, and each
    # answer goes back to the request it answers (the server answers in order; the first
    # request is held 50 ms, so that the others queue behind it).
    from tokenlimit.gateway import LOOPBACK, BackgroundServers, Listener, bind

    ports: list[int] = []

    async def app(scope: dict[str, object], receive: object, send: object) -> None:
        if scope["type"] != "http":
            return
        client = scope["client"]
        assert isinstance(client, tuple)
        ports.append(client[1])
        if scope["path"] == "/0":
            await asyncio.sleep(0.05)  # the others queue behind it
        body = str(scope["path"]).encode()
        await send({"type": "http.response.start", "status": 200,  # type: ignore[operator]
                    "headers": [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})  # type: ignore[operator]

    async def main(port: int) -> list[bytes]:
        client = HttpClient(f"http://{LOOPBACK}:{port}")
        answers = await asyncio.gather(*(client.fetch("GET", f"/{i}".encode(), 5.0)
                                         for i in range(20)))
        await client.close()
        return [body for _, _, body in answers]

    with BackgroundServers([Listener("echo", app, bind(LOOPBACK, 0))]) as servers:
        bodies = asyncio.run(main(servers.listeners[0].port))
    assert bodies == [f"/{i}".encode() for i in range(20)]
    assert len(ports) == 20 and len(set(ports)) <= 3  # one each would be 20
