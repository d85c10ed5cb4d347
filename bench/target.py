"""A minimal, fast HTTP/1.1 target for bench/loadtest.py: uvloop, asyncio protocol, httptools.

Answers every request with a small chat-completion body carrying ``usage`` (keep-alive).
Run: python bench/target.py PORT [CERT_AND_KEY.pem]  (with a PEM: HTTPS)
"""

from __future__ import annotations

import asyncio
import ssl
import sys

import httptools
import uvloop

BODY = b'{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}'
ANSWER = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
          + str(len(BODY)).encode() + b"\r\n\r\n" + BODY)


class Handler(asyncio.Protocol):
    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.close()

    def on_message_complete(self) -> None:
        assert self.transport is not None
        self.transport.write(ANSWER)


async def main(port: int, cert: str | None = None) -> None:
    loop = asyncio.get_running_loop()
    tls = None
    if cert is not None:  # HTTPS: one PEM holding the key and the certificate chain
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(cert)
    server = await loop.create_server(Handler, "127.0.0.1", port, backlog=1024, ssl=tls)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else None))
