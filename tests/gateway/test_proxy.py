"""The gateway end to end over loopback: forwarding, streaming, limiting, failing, reporting."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.gateway.conftest import FakeService, System, guide_limiter
from tokenlimit.bucket.limiter import AsmLimiter
from tokenlimit.gateway import (
    LOOPBACK,
    BackgroundServers,
    Gateway,
    Listener,
    MockSettings,
    TokenDraw,
    bind,
    build_config,
)
from tokenlimit.rules.model import Rule

HOST = "dashscope.aliyuncs.com"
CHAT = "/compatible-mode/v1/chat/completions"


def chat(content: str, **extra: Any) -> dict[str, Any]:
    return {"model": "qwen-turbo", "messages": [{"role": "user", "content": content}], **extra}


def post(system: System, user: str, body: Any, host: str = HOST, path: str = CHAT,
         **headers: str) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(system.gateway_url + path, content=content, timeout=10,
                      headers={"host": host, "user-type": user,
                               "content-type": "application/json", **headers})


def test_streaming_answer_arrives_chunk_by_chunk_and_its_usage_is_reported(
        system: System) -> None:
    body = chat("stream me", stream=True, stream_options={"include_usage": True}, max_tokens=5)
    events = []
    with httpx.stream("POST", system.gateway_url + CHAT, json=body, timeout=10,
                      headers={"host": HOST, "user-type": "subscriber"}) as answer:
        assert answer.headers["content-type"] == "text/event-stream"
        events = [line for line in answer.iter_lines() if line]
    system.drain()
    contents = [json.loads(e[6:])["choices"] for e in events[:-1]]
    assert [c[0]["delta"].get("content") for c in contents if c] == [
        "", "lorem", " ipsum", " dolor", " sit", " amet", None]
    assert events[-1] == "data: [DONE]"
    produced = system.mock.completions[0]
    assert (produced.prompt_tokens, produced.completion_tokens) == (7, 5)
    assert json.loads(events[-2][6:])["usage"] == {
        "prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}
    assert system.service.reports == [{"ratelimit_keys": ["subscriber"], "prompt_tokens": 7,
                                       "completion_tokens": 5, "total_tokens": 12}]


def test_unmatched_host_passes_without_check_or_report(system: System) -> None:
    answers = [post(system, "regular-user", chat("hi"), host="api.openai.com") for _ in range(3)]
    system.drain()
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert system.service.checks == []
    assert system.service.reports == []
    assert system.gateway.stats.unmatched == 3
    assert system.mock.requests == 3


def test_limited_answer_passes_on_rate_limit_headers_only(system: System) -> None:
    system.service.deny_headers = [(b"x-ratelimit-remaining", b"0"), (b"retry-after", b"29"),
                                   (b"x-unrelated", b"dropped")]
    first = post(system, "regular-user", chat("hi"))
    system.drain()
    limited = post(system, "regular-user", chat("hi"))
    assert first.status_code == 200
    assert (limited.status_code, limited.text) == (429, "regular-user is being rate-limited")
    assert limited.headers["x-ratelimit-remaining"] == "0"
    assert limited.headers["retry-after"] == "29"
    assert "x-unrelated" not in limited.headers
    assert system.mock.requests == 1


def test_upstream_errors_pass_through_unchanged_and_are_not_reported(system: System) -> None:
    direct = httpx.post(system.mock_url + CHAT, content=b"{not json", timeout=10)
    via = post(system, "subscriber", b"{not json")
    missing = post(system, "subscriber", chat("x"), path="/v2/unknown")
    system.drain()
    assert (via.status_code, via.content) == (400, direct.content)
    assert via.json()["error"]["type"] == "invalid_request_error"
    assert missing.status_code == 404
    assert system.service.reports == []
    assert (system.gateway.stats.no_usage, system.gateway.stats.estimated) == (0, 0)


def test_method_path_headers_and_body_are_forwarded_unchanged(
        make_system: Callable[..., System]) -> None:
    system = make_system(templates=("{{request.headers.user-type}}:{{request.url_path}}",
                                    "{{request.method}} {{request.query}}"))
    raw = b'{"messages": [{"role": "user", "content": "exact  bytes"}],  "x": 1}'
    answer = httpx.post(
        system.gateway_url + "/v1/chat/completions?api-version=1&a=%20b", content=raw,
        timeout=10,
        headers={"host": HOST, "user-type": "subscriber", "authorization": "Bearer sk-1",
                 "x-custom": "kept", "connection": "keep-alive, x-hop", "x-hop": "dropped",
                 "te": "trailers", "content-type": "application/json"})
    assert answer.status_code == 200
    assert system.service.checks == [["subscriber:/v1/chat/completions",
                                      "POST api-version=1&a=%20b"]]
    [request] = system.mock.received
    assert (request.method, request.path, request.query, request.body) == (
        "POST", "/v1/chat/completions", b"api-version=1&a=%20b", raw)
    headers = dict(request.headers)
    assert headers == {
        "host": HOST, "user-type": "subscriber", "authorization": "Bearer sk-1",
        "x-custom": "kept", "content-type": "application/json", "accept": "*/*",
        "accept-encoding": headers["accept-encoding"], "user-agent": headers["user-agent"],
        "content-length": str(len(raw)),
    }
    assert headers["user-agent"].startswith("python-httpx/")


@pytest.mark.parametrize("fail_open", [True, False])
def test_service_stopped_fails_open_or_closed_and_logs_once(
        make_system: Callable[..., System], caplog: pytest.LogCaptureFixture,
        fail_open: bool) -> None:
    system = make_system(fail_open=fail_open)
    system.stop_service()
    with caplog.at_level(logging.WARNING, logger="tokenlimit.gateway"):
        answers = [post(system, "regular-user", chat("hi")) for _ in range(3)]
        system.drain(spool=False)
    if fail_open:
        assert [a.status_code for a in answers] == [200, 200, 200]
        assert system.mock.requests == 3
        assert system.gateway.stats.failed_open == 3
        assert system.gateway.stats.reports_spooled == 3  # sent once the service is back
    else:
        assert [(a.status_code, a.text) for a in answers] == [
            (503, "rate-limit service unavailable")] * 3
        assert system.mock.requests == 0
        assert system.gateway.stats.failed_closed == 3
    outage = [r for r in caplog.records if "rate-limit service" in r.getMessage()]
    assert len(outage) == 1
    assert "unreachable" in outage[0].getMessage()


@pytest.mark.parametrize("fail_open", [True, False])
def test_service_answering_non_200_fails_open_or_closed(
        make_system: Callable[..., System], caplog: pytest.LogCaptureFixture,
        fail_open: bool) -> None:
    system = make_system(fail_open=fail_open)
    with caplog.at_level(logging.WARNING, logger="tokenlimit.gateway"):
        system.service.failing = True
        failed = [post(system, "subscriber", chat("hi")).status_code for _ in range(2)]
        system.drain()
        system.service.failing = False
        recovered = post(system, "subscriber", chat("hi")).status_code
        system.drain()
    assert failed == ([200, 200] if fail_open else [503, 503])
    assert recovered == 200
    messages = [r.getMessage() for r in caplog.records if r.name == "tokenlimit.gateway"]
    failures = 4 if fail_open else 2  # fail-open: two checks and two reports failed
    assert messages == [
        "rate-limit service answered 400 to /ratelimit; "
        + ("letting requests through (fail-open)" if fail_open else "answering 503 (fail-closed)")
        + " until it answers again",
        f"rate-limit service answers again after {failures} failed calls",
    ]
    assert system.service.reports[-1]["ratelimit_keys"] == ["subscriber"]


def test_each_admitted_request_is_reported_once_with_the_mocks_usage(
        make_system: Callable[..., System]) -> None:
    generous = AsmLimiter([Rule(0, "user-.*", 10**9, 10**9, 60, 600)])
    system = make_system(limiter=generous,
                         mock=MockSettings(completion=TokenDraw.parse("1-300"), seed=7))
    sent = []
    with httpx.Client(timeout=10) as client:
        for i in range(12):
            stream = i % 3 == 1
            body = chat("x" * (i * 5), stream=stream,
                        stream_options={"include_usage": True} if stream else None)
            answer = client.post(system.gateway_url + CHAT, json=body,
                                 headers={"host": HOST, "user-type": f"user-{i}"})
            assert answer.status_code == 200
            sent.append(f"user-{i}")
    system.drain()
    produced = list(system.mock.completions)
    assert len(produced) == 12
    assert len({c.completion_tokens for c in produced}) > 1  # the draw really varies
    assert sorted(system.service.reports, key=lambda r: r["ratelimit_keys"][0]) == sorted(
        ({"ratelimit_keys": [user], "prompt_tokens": c.prompt_tokens,
          "completion_tokens": c.completion_tokens, "total_tokens": c.total_tokens}
         for user, c in zip(sent, produced, strict=True)),
        key=lambda r: r["ratelimit_keys"][0])
    assert system.gateway.stats.reports == 12


class GatedStream:
    """An upstream that sends its first event, then waits for the test before finishing.

    If the gateway buffered the answer, the client would never see the first event and the gate
    would never open: the test would fail at its deadline instead of passing.
    """

    def __init__(self) -> None:
        self.gate = threading.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})
        await send({"type": "http.response.body", "more_body": True,
                    "body": b'data: {"choices":[{"delta":{"content":"first"}}]}\n\n'})
        opened = await asyncio.to_thread(self.gate.wait, 10)
        usage = b'{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}' if opened else b"{}"
        await send({"type": "http.response.body", "more_body": False,
                    "body": b'data: {"choices":[],"usage":' + usage + b"}\n\ndata: [DONE]\n\n"})


def test_stream_is_passed_on_before_the_upstream_has_finished() -> None:
    service = FakeService(guide_limiter())
    upstream = GatedStream()
    service_sock, upstream_sock = bind(LOOPBACK, 0), bind(LOOPBACK, 0)
    gateway = Gateway(build_config(
        upstream=f"http://{LOOPBACK}:{upstream_sock.getsockname()[1]}",
        service=f"http://{LOOPBACK}:{service_sock.getsockname()[1]}", hosts=[HOST]))
    with BackgroundServers([Listener("service", service, service_sock),
                            Listener("upstream", upstream, upstream_sock),
                            Listener("gateway", gateway, bind(LOOPBACK, 0))]) as servers:
        with httpx.stream("POST", servers.listeners[2].url + "/", json=chat("x"), timeout=10,
                          headers={"host": HOST, "user-type": "subscriber"}) as answer:
            lines = answer.iter_lines()
            first = next(lines)
            reports_while_streaming = list(service.reports)
            upstream.gate.set()
            rest = [line for line in lines if line]
        servers.call(gateway.drain())
    assert first == 'data: {"choices":[{"delta":{"content":"first"}}]}'
    assert reports_while_streaming == []
    assert rest[-1] == "data: [DONE]"
    assert service.reports == [{"ratelimit_keys": ["subscriber"], "prompt_tokens": 3,
                                "completion_tokens": 4, "total_tokens": 7}]


def test_unreachable_upstream_gets_envoys_503_and_no_report(system: System) -> None:
    from tests.conftest import free_port

    gateway = Gateway(build_config(upstream=f"http://{LOOPBACK}:{free_port()}",
                                   service=system.service_servers.listeners[0].url))
    with BackgroundServers([Listener("gateway", gateway, bind(LOOPBACK, 0))]) as servers:
        answer = httpx.post(servers.listeners[0].url + "/", json=chat("x"), timeout=10,
                            headers={"user-type": "subscriber"})
        servers.call(gateway.drain())
    assert (answer.status_code, answer.text) == (
        503, "upstream connect error or disconnect/reset before headers. "
        "reset reason: connection failure")
    assert gateway.stats.upstream_errors == 1
    assert system.service.checks == [["subscriber"]]
    assert system.service.reports == []


def test_a_service_slower_than_the_timeout_counts_as_down(system: System) -> None:
    system.service.stall = 1.0
    gateway = Gateway(build_config(upstream=system.mock_url, fail_open=False,
                                   service=system.service_servers.listeners[0].url,
                                   service_timeout=0.1))
    with BackgroundServers([Listener("gateway", gateway, bind(LOOPBACK, 0))]) as servers:
        answer = httpx.post(servers.listeners[0].url + "/", json=chat("x"), timeout=10,
                            headers={"user-type": "subscriber"})
    assert (answer.status_code, answer.text) == (503, "rate-limit service unavailable")
    assert gateway.stats.service_errors == 1
    assert system.mock.requests == 0


def test_stopping_the_gateway_still_sends_the_reports_in_flight(system: System) -> None:
    system.service.stall_reports = 0.5
    gateway = Gateway(build_config(upstream=system.mock_url,
                                   service=system.service_servers.listeners[0].url))
    servers = BackgroundServers([Listener("gateway", gateway, bind(LOOPBACK, 0))]).start()
    try:
        answer = httpx.post(servers.listeners[0].url + "/", json=chat("x"), timeout=10,
                            headers={"user-type": "subscriber"})
    finally:
        servers.stop()  # the service holds the report for 0.5 s: the stop has to wait for it
    assert answer.status_code == 200
    assert system.service.reports == [{"ratelimit_keys": ["subscriber"], "prompt_tokens": 5,
                                       "completion_tokens": 60, "total_tokens": 65}]


def test_utf8_header_values_make_keys_and_are_forwarded_byte_for_byte(system: System) -> None:
    tier = "会员-regular".encode()
    answer = httpx.post(system.gateway_url + "/", json=chat("x"), timeout=10,
                        headers={"host": HOST, "user-type": tier, "x-note": "café".encode()})
    assert answer.status_code == 200
    assert system.service.checks == [["会员-regular"]]
    headers = dict(system.mock.received[0].headers)  # the mock reads header bytes as latin-1
    assert headers["user-type"].encode("latin-1") == tier
    assert headers["x-note"].encode("latin-1") == "café".encode()
