"""loadtest through the project's whole system: its gateway, its mock LLM, its service."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

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
from tokenlimit.load.driver import LoadPlan
from tokenlimit.load.loadtest import run_loadtest
from tokenlimit.load.modes import KeySpec
from tokenlimit.load.schedule import ConstantRate
from tokenlimit.rules.model import Rule
from tokenlimit.service import running_service

RULES = [Rule(0, "regular-user.*", 300, 100, 1, 300), Rule(1, "subscriber.*", 1000, 400, 2, 600)]
KEYS = (KeySpec("user-type", "regular-user", 3), KeySpec("user-type", "subscriber", 1),
        KeySpec("user-type", "other", 1))


@dataclass
class System:
    url: str
    mock: MockLLM
    gateway: Gateway


@pytest.fixture
def system() -> Iterator[System]:
    with running_service(RULES, port=0) as svc:
        mock = MockLLM(MockSettings(completion=TokenDraw.parse("10-70"), seed=3))
        mock_sock = bind(LOOPBACK, 0)
        gateway = Gateway(build_config(
            upstream=f"http://{LOOPBACK}:{mock_sock.getsockname()[1]}", service=svc.url,
            key_templates=["{{request.headers.user-type}}"]))
        servers = BackgroundServers([Listener("mock", mock, mock_sock),
                                     Listener("gateway", gateway, bind(LOOPBACK, 0))]).start()
        try:
            yield System(servers.listeners[1].url, mock, gateway)
        finally:
            servers.stop()


@pytest.mark.parametrize("stream", [False, True])
def test_gateway_mode_through_the_real_system_conforms(system: System, stream: bool) -> None:
    plan = LoadPlan(system.url, keys=KEYS, shape="open", schedule=ConstantRate(150),
                    requests=300, duration=5, stream=stream, observe=True)
    report = run_loadtest(plan, rules=RULES)
    s = report.stats
    assert (s.sent, s.completed, s.outcomes["error"]) == (300, 300, 0)
    assert set(s.statuses) <= {"200", "429"} and s.statuses["429"] > 50
    # Every admitted request reached the mock LLM; none of the limited ones did.
    assert len(system.mock.completions) == s.outcomes["allowed"]
    assert sum(k.tokens_admitted for k in s.keys.values()) == sum(
        c.completion_tokens for c in system.mock.completions)
    assert s.ttfb.count == (300 if stream else 0)
    conf = report.conformance
    assert conf is not None
    assert (conf.over_admitted, conf.under_admitted, conf.other_mismatches) == (0, 0, 0)
    assert conf.agreement == 100.0
    assert conf.compared >= 210  # most requests are decided exactly
