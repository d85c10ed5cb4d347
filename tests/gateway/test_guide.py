"""The ASM guide's verification, end to end over loopback: regular users are limited first."""

from __future__ import annotations

import random

import httpx
import pytest

from tests.conftest import SAMPLES
from tests.gateway.conftest import System
from tokenlimit.bucket.limiter import AsmLimiter
from tokenlimit.gateway import (
    LOOPBACK,
    BackgroundServers,
    Gateway,
    Listener,
    MockLLM,
    MockSettings,
    TokenDraw,
    bind,
    build_config,
)
from tokenlimit.rules import load_rules
from tokenlimit.service import ManualClock, ServiceOptions, running_service

HOST = "dashscope.aliyuncs.com"
BODY = {"model": "qwen-turbo", "messages": [{"role": "user", "content": "Who are you?"}]}


def ask(client: httpx.Client, system: System, user: str) -> httpx.Response:
    answer = client.post(f"{system.gateway_url}/", json=BODY,
                         headers={"host": HOST, "user-type": user})
    system.drain()
    return answer


def test_regular_user_is_limited_before_subscriber(system: System) -> None:
    # Rules: regular-user starts at 50 tokens, subscriber at 100; each answer costs 60.
    with httpx.Client(timeout=10) as client:
        codes = {user: [ask(client, system, user).status_code for _ in range(3)]
                 for user in ("regular-user", "subscriber")}
        limited = ask(client, system, "regular-user")
    assert codes == {"regular-user": [200, 429, 429], "subscriber": [200, 200, 429]}
    assert limited.text == "regular-user is being rate-limited"
    assert limited.headers["content-type"] == "text/plain"
    assert system.service.reports == [
        {"ratelimit_keys": [user], "prompt_tokens": 7, "completion_tokens": 60,
         "total_tokens": 67}
        for user in ("regular-user", "subscriber", "subscriber")
    ]
    assert system.gateway.stats.to_dict() == {
        "requests": 7, "unmatched": 0, "allowed": 3, "limited": 4, "service_errors": 0,
        "failed_open": 0, "failed_closed": 0, "upstream_errors": 0, "client_gone": 0, "reports": 3,
        "report_errors": 0, "no_usage": 0, "estimated": 0, "drained": 0, "too_large": 0,
        "bad_requests": 0, "reports_spooled": 0, "reports_retried": 0, "reports_dropped": 0,
    }


def test_guide_scenario_against_the_real_service() -> None:
    """The same scenario with tokenlimit's own service (memory store, fixed clock)."""
    rules = load_rules(str(SAMPLES / "rules.json"))
    clock = ManualClock(1_700_000_000.0)
    with running_service(rules, clock=clock, options=ServiceOptions(rate_headers=True)) as svc:
        mock_sock = bind(LOOPBACK, 0)
        gateway = Gateway(build_config(
            upstream=f"http://{LOOPBACK}:{mock_sock.getsockname()[1]}", service=svc.url,
            hosts=[HOST]))
        with BackgroundServers([Listener("mock", MockLLM(), mock_sock),
                                Listener("gateway", gateway, bind(LOOPBACK, 0))]) as servers:
            url = servers.listeners[1].url

            def send(user: str) -> httpx.Response:
                answer = httpx.post(url + "/", json=BODY, timeout=10,
                                    headers={"host": HOST, "user-type": user})
                servers.call(gateway.drain())
                return answer

            codes = {user: [send(user).status_code for _ in range(3)]
                     for user in ("regular-user", "subscriber")}
            limited = send("regular-user")
            clock.advance(30)  # one refill of 50: -10 + 50 = 40 > 0
            refilled = send("regular-user")
    assert codes == {"regular-user": [200, 429, 429], "subscriber": [200, 200, 429]}
    assert (limited.status_code, limited.text) == (429, "regular-user is being rate-limited")
    assert limited.headers["retry-after"] == "30"
    assert limited.headers["x-ratelimit-remaining-tokens"] == "0"
    assert refilled.status_code == 200
    assert gateway.stats.reports == 4


@pytest.mark.parametrize("seed", [1, 2])
def test_random_traffic_decisions_equal_the_reference_model(seed: int) -> None:
    """Gateway + tokenlimit's service, request by request, against ``AsmLimiter`` by hand.

    Random users (one matching no rule), random completion lengths and random pauses of the
    service's clock (refills and expiries happen); each report is awaited before the next
    request, so the model's order (check, then report at the same instant) is the real one.
    """
    rules = load_rules(str(SAMPLES / "rules.json"))
    model = AsmLimiter(rules.rules)
    rng = random.Random(seed)
    clock = ManualClock(1_700_000_000.0)
    mock = MockLLM(MockSettings(completion=TokenDraw.parse("1-150"), seed=seed))
    decisions: list[tuple[str, int, str]] = []
    with running_service(rules, clock=clock) as svc:
        mock_sock = bind(LOOPBACK, 0)
        gateway = Gateway(build_config(
            upstream=f"http://{LOOPBACK}:{mock_sock.getsockname()[1]}", service=svc.url))
        with BackgroundServers([Listener("mock", mock, mock_sock),
                                Listener("gateway", gateway, bind(LOOPBACK, 0))]) as servers, \
                httpx.Client(timeout=10) as client:
            for _ in range(60):
                clock.advance(rng.choice([0, 0, 0, 1, 7, 29, 30, 61, 301]))
                user = rng.choice(["regular-user", "subscriber", "guest"])
                answer = client.post(servers.listeners[1].url + "/", json=BODY,
                                     headers={"user-type": user})
                servers.call(gateway.drain())
                expected = model.check([user], now=clock())
                if expected.outcome == "allow":
                    model.report([user], mock.completions[-1].completion_tokens, now=clock())
                decisions.append((user, answer.status_code, expected.outcome))
    assert [(u, code) for u, code, _ in decisions] == [
        (u, 200 if outcome == "allow" else 429) for u, _, outcome in decisions]
    assert {code for _, code, _ in decisions} == {200, 429}  # both kinds really happened
    assert gateway.stats.reports == sum(code == 200 for _, code, _ in decisions)
