"""A 300 MB request body streams through the gateway (a subprocess, so its memory is its own)
without raising its peak RSS by more than a few MB."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from tests.gateway.conftest import FakeService, guide_limiter
from tokenlimit.gateway import LOOPBACK, BackgroundServers, Gateway, Listener, bind, build_config

HOST = "dashscope.aliyuncs.com"
BODY_BYTES = 300 * 1024 * 1024
PEAK_RSS_BOUND = 8 * 1024 * 1024  # "a few MB": 300 MB buffered would be 300 MB and more


class CountingSink:
    """An upstream that counts the body bytes it receives and answers with usage."""

    def __init__(self) -> None:
        self.received = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while True:
            message = await receive()
            self.received += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = json.dumps({"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 2,
                                                    "total_tokens": 3}}).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})


def peak_rss(pid: int) -> int:
    """The process's peak resident set size (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def send_large_body(port: int) -> bytes:
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: {HOST}\r\nuser-type: subscriber\r\n"
            f"Content-Type: application/json\r\nContent-Length: {BODY_BYTES}\r\n"
            "Connection: close\r\n\r\n").encode()
    block = b" " * (1024 * 1024)
    with socket.create_connection((LOOPBACK, port), timeout=30) as sock:
        sock.sendall(head)
        for _ in range(BODY_BYTES // len(block)):
            sock.sendall(block)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_a_300_mb_body_streams_through_with_bounded_memory() -> None:
    service, sink = FakeService(guide_limiter()), CountingSink()
    with BackgroundServers([Listener("service", service, bind(LOOPBACK, 0)),
                            Listener("sink", sink, bind(LOOPBACK, 0))]) as servers:
        process = subprocess.Popen(
            [sys.executable, "-m", "tokenlimit", "gateway", "--port", "0", "--format", "json",
             "--service", servers.listeners[0].url, "--upstream", servers.listeners[1].url,
             "--host-match", HOST, "--duration", "60"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert process.stdout is not None
            url = json.loads(process.stdout.readline())["gateway"]
            port = int(url.rsplit(":", 1)[1])
            before = peak_rss(process.pid)
            answer = send_large_body(port)
            after = peak_rss(process.pid)
        finally:
            process.send_signal(signal.SIGTERM)
            _, err = process.communicate(timeout=30)
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    assert sink.received == BODY_BYTES
    assert after - before < PEAK_RSS_BOUND, f"peak RSS grew {(after - before) / 2**20:.1f} MB"
    assert service.reports == [{"ratelimit_keys": ["subscriber"], "prompt_tokens": 1,
                                "completion_tokens": 2, "total_tokens": 3}]
    assert process.returncode == 0, err


def test_a_chunked_body_larger_than_the_peek_streams_upstream_chunked() -> None:
    service, sink = FakeService(guide_limiter()), CountingSink()
    service_sock, sink_sock = bind(LOOPBACK, 0), bind(LOOPBACK, 0)
    gateway = Gateway(build_config(upstream=f"http://{LOOPBACK}:{sink_sock.getsockname()[1]}",
                                   service=f"http://{LOOPBACK}:{service_sock.getsockname()[1]}"))
    parts = [bytes([65 + i % 26]) * 100_000 for i in range(30)]  # 3 MB, no Content-Length
    with BackgroundServers([Listener("service", service, service_sock),
                            Listener("sink", sink, sink_sock),
                            Listener("gateway", gateway, bind(LOOPBACK, 0))]) as servers:
        answer = httpx.post(servers.listeners[2].url + "/v1/chat/completions",
                            content=iter(parts), timeout=10, headers={"user-type": "subscriber"})
        servers.call(gateway.drain())
    assert answer.status_code == 200
    assert sink.received == sum(len(p) for p in parts)
    assert [r["completion_tokens"] for r in service.reports] == [2]


class EarlyAnswer:
    """An upstream that answers 413 on the head of a large body (never reading it), else 200."""

    def __init__(self) -> None:
        self.answered: list[int] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        size = int(dict(scope["headers"]).get(b"content-length", b"0"))
        status = 413 if size > 2 * 1024 * 1024 else 200
        if status == 200:
            while (await receive()).get("more_body"):
                pass
        self.answered.append(status)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b"{}"})


def test_an_upstream_answering_before_the_body_ends_leaves_no_broken_connection() -> None:
    service, upstream = FakeService(guide_limiter()), EarlyAnswer()
    service_sock, upstream_sock = bind(LOOPBACK, 0), bind(LOOPBACK, 0)
    gateway = Gateway(build_config(
        upstream=f"http://{LOOPBACK}:{upstream_sock.getsockname()[1]}",
        service=f"http://{LOOPBACK}:{service_sock.getsockname()[1]}"))
    with BackgroundServers([Listener("service", service, service_sock),
                            Listener("upstream", upstream, upstream_sock),
                            Listener("gateway", gateway, bind(LOOPBACK, 0))]) as servers:
        url = servers.listeners[2].url + "/v1/chat/completions"
        with httpx.Client(timeout=10, headers={"user-type": "subscriber"}) as client:
            big = client.post(url, content=b"x" * (8 * 1024 * 1024))
            small = [client.post(url, content=b'{"messages": []}').status_code
                     for _ in range(3)]
    assert big.status_code == 413
    assert small == [200, 200, 200]
    assert upstream.answered == [413, 200, 200, 200]
