"""Small real HTTP servers on loopback ports for the load tests.

- ``AsmServiceHandler``: the ASM service's API deciding with ``tokenlimit.sim.AsmLimiter`` on
  the wall clock (a second, independent implementation path next to ``tokenlimit serve``).
- ``AdmitAllHandler``: a deliberately wrong limiter that admits everything (conformance must
  catch it).
- ``ChatGatewayHandler``: a gateway plus LLM in one: checks the ``user-type`` key with the
  limiter, answers a chat completion with seeded usage (JSON or SSE), then applies the report.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

from tokenlimit.bucket.limiter import AsmLimiter
from tokenlimit.rules.model import Rule


class _Base(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    limiter: ClassVar[AsmLimiter]
    lock: ClassVar[threading.Lock]
    calls: ClassVar[list[str]]

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes: without this, Nagle delays each answer.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _answer(self, status: int, body: bytes, ctype: str | None = None) -> None:
        self.send_response(status)
        if ctype:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""


class AsmServiceHandler(_Base):
    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path.endswith("/ratelimit"):
            raw = parse_qs(parts.query).get("ratelimit_keys", ["[]"])[0]
            try:
                keys = [str(k) for k in json.loads(raw)]
            except ValueError:
                keys = []
            with self.lock:
                result = self.limiter.check(keys, time.time())
                self.calls.append("check")
            if result.outcome == "error":
                self._answer(400, b"")
                return
            allow = result.outcome == "allow"
            self._answer(200, json.dumps({"allow": allow,
                                          "description": result.description}).encode())
            return
        self._answer(404, b"")

    def do_POST(self) -> None:
        if self.path.endswith("/update_ratelimit_record"):
            data = json.loads(self._body())
            with self.lock:
                self.limiter.report(data["ratelimit_keys"], data["completion_tokens"],
                                    time.time())
                self.calls.append("report")
            self._answer(200, b"")
            return
        self._answer(404, b"")


class AdmitAllHandler(AsmServiceHandler):
    def do_GET(self) -> None:
        with self.lock:
            self.calls.append("check")
        self._answer(200, b'{"allow":true,"description":"ok"}')


class ChatGatewayHandler(_Base):
    tokens: ClassVar[int] = 40

    def do_POST(self) -> None:
        payload = json.loads(self._body())
        key = self.headers.get("user-type", "")
        with self.lock:
            result = self.limiter.check([key], time.time())
            self.calls.append("check")
        if result.outcome != "allow":
            self._answer(429, result.description.encode(), "text/plain")
            return
        usage = {"prompt_tokens": 5, "completion_tokens": self.tokens,
                 "total_tokens": 5 + self.tokens}
        if payload.get("stream"):
            chunks = [{"choices": [{"delta": {"content": "hi"}}], "usage": None},
                      {"choices": [], "usage": usage}]
            body = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks)
            body += b"data: [DONE]\n\n"
            self._answer(200, body, "text/event-stream")
        else:
            self._answer(200, json.dumps({"choices": [{"message": {"content": "hi"}}],
                                          "usage": usage}).encode(), "application/json")
        with self.lock:  # the report, after the response went out
            self.limiter.report([key], self.tokens, time.time())
            self.calls.append("report")


@contextmanager
def serve(handler: type[_Base], rules: list[Rule], tls: ssl.SSLContext | None = None,
          host: str = "127.0.0.1") -> Iterator[tuple[str, list[str]]]:
    """Run ``handler`` on a free loopback port; yields (base URL, calls log). With ``tls``
    (a server context), HTTPS, named ``host`` in the URL."""
    calls: list[str] = []
    cls = type("Handler", (handler,), {"limiter": AsmLimiter(rules), "lock": threading.Lock(),
                                        "calls": calls})
    server_cls = type("Server", (ThreadingHTTPServer,), {"request_queue_size": 256})
    server = server_cls(("127.0.0.1", 0), cls)
    server.daemon_threads = True
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    scheme = "http" if tls is None else "https"
    try:
        yield f"{scheme}://{host}:{server.server_address[1]}", calls
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
