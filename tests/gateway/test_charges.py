"""Every token an admitted answer delivers is charged: each bypass found in issue 13, over
real loopback sockets, counting the tokens delivered against the tokens reported."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import httpx
import pytest

from tests.gateway.conftest import FakeService, System, guide_limiter, wait_for
from tokenlimit.bucket.limiter import AsmLimiter
from tokenlimit.gateway import (
    LOOPBACK,
    BackgroundServers,
    Gateway,
    Listener,
    MockSettings,
    bind,
    build_config,
)
from tokenlimit.gateway.config import GatewayConfig
from tokenlimit.rules.model import Rule

HOST = "dashscope.aliyuncs.com"
CHAT = "/compatible-mode/v1/chat/completions"


def roomy() -> AsmLimiter:
    """Budgets nothing here exhausts, for keys ``user-*``."""
    return AsmLimiter([Rule(0, "user-.*", 10**9, 10**9, 60, 600)])


def chat(content: str, **extra: Any) -> dict[str, Any]:
    return {"model": "qwen-turbo", "messages": [{"role": "user", "content": content}], **extra}


def events_of(text: str) -> list[dict[str, Any]]:
    """The JSON events of an SSE answer ([DONE] left out)."""
    return [json.loads(line[6:]) for line in text.splitlines()
            if line.startswith("data: {")]


def delivered(events: list[dict[str, Any]]) -> int:
    """Content tokens the client received (the mock sends one per event)."""
    return sum(1 for e in events if e.get("choices") and e["choices"][0]["delta"].get("content"))


def charged(service: FakeService) -> int:
    return sum(r["completion_tokens"] for r in service.reports)


def test_streams_without_include_usage_are_charged_and_their_clients_see_no_usage(
        make_system: Any) -> None:
    system: System = make_system()
    answers = [httpx.post(system.gateway_url + CHAT, json=chat("hi", stream=True), timeout=10,
                          headers={"host": HOST, "user-type": "subscriber"})
               for _ in range(10)]
    system.drain()
    # subscriber starts with 100 tokens, each answer costs 60: two admitted, as for an
    # honest client, then limited (before the fix all ten got 200 and nothing was charged)
    assert [a.status_code for a in answers] == [200, 200] + [429] * 8
    streams = [events_of(a.text) for a in answers[:2]]
    assert all(a.text.endswith("data: [DONE]\n\n") for a in answers[:2])
    assert [e for s in streams for e in s if e.get("usage")] == []  # the added chunk is held
    assert sum(delivered(s) for s in streams) == 120 == charged(system.service)
    assert system.service.reports == [{"ratelimit_keys": ["subscriber"], "prompt_tokens": 5,
                                       "completion_tokens": 60, "total_tokens": 65}] * 2
    asked = [json.loads(r.body) for r in system.mock.received]
    assert [a["stream_options"] for a in asked] == [{"include_usage": True}] * 2
    assert system.gateway.stats.estimated == 0


def test_a_client_that_asked_for_usage_still_gets_it(system: System) -> None:
    body = chat("hi", stream=True, stream_options={"include_usage": True}, max_tokens=3)
    answer = httpx.post(system.gateway_url + CHAT, content=json.dumps(body), timeout=10,
                        headers={"host": HOST, "user-type": "subscriber"})
    system.drain()
    assert events_of(answer.text)[-1]["usage"] == {"prompt_tokens": 5, "completion_tokens": 3,
                                                   "total_tokens": 8}
    assert system.mock.received[0].body == json.dumps(body).encode()  # forwarded unchanged
    assert charged(system.service) == 3


def read_and_hang_up(url: str, user: str, keep: int) -> int:
    """Read a stream until ``keep`` content tokens arrived, then close; the tokens read."""
    got = 0
    with httpx.stream("POST", url + CHAT, json=chat("hi", stream=True), timeout=10,
                      headers={"host": HOST, "user-type": user}) as answer:
        assert answer.status_code == 200
        for line in answer.iter_lines():
            if line.startswith("data: {"):
                got += delivered([json.loads(line[6:])])
                if got >= keep:
                    break
    return got


def test_clients_hanging_up_do_not_stop_the_answer_from_being_charged(
        make_system: Any) -> None:
    # 200 tokens a second: the client is gone 25 ms before the last token is sent
    system: System = make_system(limiter=roomy(), mock=MockSettings(tokens_per_second=200))
    read = [read_and_hang_up(system.gateway_url, f"user-{i}", 55) for i in range(10)]
    wait_for(lambda: len(system.service.reports) == 10)
    system.drain()
    assert read == [55] * 10
    assert charged(system.service) == 10 * 60  # what the upstream produced, not what was read
    assert sum(c.completion_tokens for c in system.mock.completions) == 10 * 60
    stats = system.gateway.stats
    assert (stats.client_gone, stats.drained, stats.estimated) == (10, 10, 0)


class SilentUpstream:
    """An upstream that never tells usage: ``tokens`` content events (or a JSON answer), then,
    for a stream with ``hang``, no end at all."""

    def __init__(self, tokens: int, hang: bool = False) -> None:
        self.tokens = tokens
        self.hang = hang

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        request = json.loads((await receive())["body"])
        if not request.get("stream"):
            body = json.dumps({"choices": [{"message": {"content": "abcd" * self.tokens}}]})
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": body.encode()})
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})
        for i in range(self.tokens):
            event = {"choices": [{"delta": {"content": f"t{i}"}}]}
            await send({"type": "http.response.body", "more_body": True,
                        "body": f"data: {json.dumps(event)}\n\n".encode()})
        if self.hang:
            await asyncio.sleep(30)
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})


def gateway_over(upstream: Any, service: FakeService, **config: Any) -> tuple[
        BackgroundServers, Gateway]:
    service_sock, upstream_sock = bind(LOOPBACK, 0), bind(LOOPBACK, 0)
    built = build_config(upstream=f"http://{LOOPBACK}:{upstream_sock.getsockname()[1]}",
                         service=f"http://{LOOPBACK}:{service_sock.getsockname()[1]}",
                         hosts=[HOST])
    fields = {name: getattr(built, name) for name in GatewayConfig.__slots__}
    gateway = Gateway(GatewayConfig(**{**fields, **config}))
    servers = BackgroundServers([Listener("service", service, service_sock),
                                 Listener("upstream", upstream, upstream_sock),
                                 Listener("gateway", gateway, bind(LOOPBACK, 0))]).start()
    return servers, gateway


@pytest.mark.parametrize("stream", [True, False])
def test_answers_without_usage_are_charged_the_documented_estimate(stream: bool) -> None:
    service = FakeService(roomy())
    servers, gateway = gateway_over(SilentUpstream(37), service)
    try:
        answer = httpx.post(servers.listeners[2].url + CHAT, json=chat("x", stream=stream),
                            timeout=10, headers={"host": HOST, "user-type": "user-1"})
        servers.call(gateway.drain())
    finally:
        servers.stop()
    assert answer.status_code == 200
    if stream:  # one token per event carrying content: exactly what was delivered
        assert delivered(events_of(answer.text)) == 37
    # a JSON answer: ceil(characters / 4) of its message content, 4 * 37 characters here
    assert service.reports == [{"ratelimit_keys": ["user-1"], "prompt_tokens": 0,
                                "completion_tokens": 37, "total_tokens": 37}]
    assert (gateway.stats.no_usage, gateway.stats.estimated) == (1, 1)


def test_a_hung_up_answer_that_never_ends_is_drained_for_a_bounded_time_then_estimated(
        ) -> None:
    service = FakeService(roomy())
    servers, gateway = gateway_over(SilentUpstream(12, hang=True), service, drain_seconds=0.3)
    try:
        assert read_and_hang_up(servers.listeners[2].url, "user-1", 5) == 5
        wait_for(lambda: len(service.reports) == 1, timeout=5)
        servers.call(gateway.drain())
    finally:
        servers.stop()
    # the gateway saw all twelve events (they were on the wire), though the client read five
    assert charged(service) == 12
    assert (gateway.stats.client_gone, gateway.stats.drained, gateway.stats.estimated) == (
        1, 0, 1)


def test_an_answer_cut_off_by_stopping_the_gateway_is_charged_what_went_by() -> None:
    # Ctrl-C waits 10 s for answers in flight, then cuts them: twelve tokens had reached the
    # client, and nothing was charged
    service = FakeService(roomy())
    servers, gateway = gateway_over(SilentUpstream(12, hang=True), service)
    for listener in servers.listeners[1:]:
        listener.server.graceful_seconds = 0.2
    with httpx.stream("POST", servers.listeners[2].url + CHAT, json=chat("hi", stream=True),
                      timeout=10, headers={"host": HOST, "user-type": "user-1"}) as answer:
        events = []
        for line in answer.iter_lines():
            if line.startswith("data: {"):
                events.append(json.loads(line[6:]))
                if len(events) == 12:
                    break
        servers.stop()  # the gateway first: the service still takes its last reports
    assert delivered(events) == 12
    assert service.reports == [{"ratelimit_keys": ["user-1"], "prompt_tokens": 0,
                                "completion_tokens": 12, "total_tokens": 12}]
    assert gateway.stats.estimated == 1


def test_reports_made_during_an_outage_reach_the_service_exactly_once_when_it_is_back(
        make_system: Any) -> None:
    system: System = make_system(limiter=roomy())
    port = system.service_servers.listeners[0].port
    system.stop_service()
    answers = [httpx.post(system.gateway_url + CHAT, json=chat("hi"), timeout=10,
                          headers={"host": HOST, "user-type": f"user-{i % 3}"})
               for i in range(30)]
    system.drain(spool=False)
    assert [a.status_code for a in answers] == [200] * 30  # fail-open
    assert system.service.reports == []
    assert system.gateway.stats.reports_spooled == 30
    back = BackgroundServers([Listener("service", system.service, bind(LOOPBACK, port))]).start()
    try:
        system.drain()  # the spool retries with backoff until the service takes them
        produced = [c.completion_tokens for c in system.mock.completions]
        assert sorted(r["ratelimit_keys"][0] for r in system.service.reports) == sorted(
            f"user-{i % 3}" for i in range(30))
        assert charged(system.service) == sum(produced) == 30 * 60
        stats = system.gateway.stats
        assert (stats.reports, stats.reports_retried, stats.reports_dropped) == (30, 30, 0)
        after = httpx.post(system.gateway_url + CHAT, json=chat("hi"), timeout=10,
                           headers={"host": HOST, "user-type": "user-0"})
        system.drain()
        assert after.status_code == 200
        assert len(system.service.reports) == 31  # nothing sent twice
    finally:
        back.stop()


def test_a_report_whose_answer_times_out_is_not_sent_again(make_system: Any) -> None:
    system: System = make_system(limiter=roomy())
    system.service.stall_reports = 0.5  # the service applies it after the gateway gave up
    gateway = Gateway(build_config(upstream=system.mock_url, service_timeout=0.2,
                                   service=system.service_servers.listeners[0].url))
    with BackgroundServers([Listener("gateway", gateway, bind(LOOPBACK, 0))]) as servers:
        answer = httpx.post(servers.listeners[0].url + "/", json=chat("x"), timeout=10,
                            headers={"user-type": "user-1"})
        servers.call(gateway.drain())
        wait_for(lambda: len(system.service.reports) == 1)
    assert answer.status_code == 200
    assert len(system.service.reports) == 1
    assert (gateway.stats.report_errors, gateway.stats.reports_spooled) == (1, 0)


def raw_exchange(port: int, request: bytes, timeout: float = 10.0) -> bytes:
    """Send raw bytes (ask for ``Connection: close``), read until the server closes."""
    with socket.create_connection((LOOPBACK, port), timeout=timeout) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_keys_too_long_to_check_are_refused_with_431_never_admitted(make_system: Any) -> None:
    system: System = make_system(templates=("{{request.headers.user-type}}",
                                            "{{request.headers.x-model}}"))
    huge = httpx.post(system.gateway_url + CHAT, json=chat("x"), timeout=10, headers={
        "host": HOST, "user-type": "regular-user", "x-model": "q" * 70000})
    assert (huge.status_code, huge.text) == (431, "request header fields too large")
    long_keys = make_system(templates=("{{request.headers.x-tier}}",) * 10)
    wide = httpx.post(long_keys.gateway_url + CHAT, json=chat("x"), timeout=10, headers={
        "host": HOST, "x-tier": ("é" * 20000).encode()})  # a 40 kB header, 1.2 MB of target
    assert wide.status_code == 431
    for running in (system, long_keys):
        assert running.service.checks == []
        assert running.mock.requests == 0
        assert running.gateway.stats.too_large == 1


class RefusingService:
    """A service that answers every check 431, as Go's server does for a head over 1 MiB."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 431, "headers": []})
            await send({"type": "http.response.body", "body": b""})


def test_a_check_the_service_refuses_as_too_large_is_not_failed_open(system: System) -> None:
    refusing = bind(LOOPBACK, 0)
    gateway = Gateway(build_config(upstream=system.mock_url, fail_open=True,
                                   service=f"http://{LOOPBACK}:{refusing.getsockname()[1]}"))
    with BackgroundServers([Listener("service", RefusingService(), refusing),
                            Listener("gateway", gateway, bind(LOOPBACK, 0))]) as servers:
        answer = httpx.post(servers.listeners[1].url + "/", json=chat("x"), timeout=10,
                            headers={"user-type": "subscriber"})
    assert answer.status_code == 431
    assert system.mock.requests == 0


@pytest.mark.parametrize("host", [f"{HOST}.", "DashScope.Aliyuncs.COM", f"{HOST}:443",
                                  f"{HOST.upper()}.:8080"])
def test_the_host_match_ignores_a_trailing_dot_case_and_port(system: System, host: str) -> None:
    answer = httpx.post(system.gateway_url + CHAT, json=chat("x"), timeout=10,
                        headers={"host": host, "user-type": "subscriber"})
    system.drain()
    assert answer.status_code == 200
    assert system.service.checks == [["subscriber"]]
    assert charged(system.service) == 60


def test_two_host_headers_are_a_400_and_nothing_is_forwarded(system: System) -> None:
    body = json.dumps(chat("x")).encode()
    answer = raw_exchange(system.servers.listeners[1].port, (
        f"POST {CHAT} HTTP/1.1\r\nHost: api.openai.com\r\nHost: {HOST}\r\nConnection: close\r\n"
        f"user-type: subscriber\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body)
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert answer.endswith(b"\r\n\r\nmore than one Host header")
    assert system.service.checks == []
    assert system.mock.requests == 0


def date_headers(answer: bytes) -> list[bytes]:
    head = answer.split(b"\r\n\r\n", 1)[0]
    return [line for line in head.split(b"\r\n")[1:] if line.lower().startswith(b"date:")]


def test_answers_carry_one_date_header(system: System) -> None:
    body = json.dumps(chat("x")).encode()
    answers = [raw_exchange(system.servers.listeners[1].port, (
        f"POST {CHAT} HTTP/1.1\r\nHost: {HOST}\r\nuser-type: regular-user\r\n"
        f"Connection: close\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body)
        for _ in range(2)]
    assert [a.split(b" ", 2)[1] for a in answers] == [b"200", b"429"]  # forwarded, then ours
    assert [len(date_headers(a)) for a in answers] == [1, 1]


def test_a_limited_request_is_answered_on_its_head_before_its_body_is_sent(
        system: System) -> None:
    system.service.limiter = guide_limiter()
    httpx.post(system.gateway_url + CHAT, json=chat("x"), timeout=10,
               headers={"host": HOST, "user-type": "regular-user"})
    with socket.create_connection((LOOPBACK, system.servers.listeners[1].port), 10) as sock:
        sock.sendall((f"POST {CHAT} HTTP/1.1\r\nHost: {HOST}\r\nuser-type: regular-user\r\n"
                      f"Content-Length: {300 * 1024 * 1024}\r\n\r\n").encode())
        answer = sock.recv(65536)  # no byte of the 300 MB body was sent
    assert answer.startswith(b"HTTP/1.1 429 ")
    assert answer.endswith(b"regular-user is being rate-limited")
    assert system.mock.requests == 1


@pytest.mark.parametrize("templates", [("{{request.headers.user-type}}",),
                                       ("{{request.headers.user-type}}", "all-{{request.method}}")])
def test_a_500_to_a_one_key_report_is_retried_but_not_to_a_multi_key_one(
        make_system: Any, templates: tuple[str, ...]) -> None:
    system: System = make_system(limiter=roomy(), templates=templates)
    system.service.failing_reports = 2  # as the service does when a DECRBY fails
    answer = httpx.post(system.gateway_url + CHAT, json=chat("x"), timeout=10,
                        headers={"host": HOST, "user-type": "user-1"})
    system.drain()
    assert answer.status_code == 200
    stats = system.gateway.stats
    if len(templates) == 1:  # nothing was charged: sent again until it is taken, once
        assert [r["ratelimit_keys"] for r in system.service.reports] == [["user-1"]]
        assert (stats.reports_spooled, stats.reports_retried, stats.report_errors) == (1, 1, 0)
    else:  # the first key may have been charged: never sent again
        assert system.service.reports == []
        assert (stats.reports_spooled, stats.report_errors) == (0, 1)
