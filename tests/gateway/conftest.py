"""A controllable loopback rate-limit service for the gateway's tests, and system fixtures.

``FakeService`` answers the ASM service's API from ``AsmLimiter`` (the reference model) on a
fixed clock, records every check and report, and can be told to fail (answer 400, as the real
service does when its script fails) or to add rate-limit headers to its denials.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import pytest

from tests.conftest import SAMPLES
from tokenlimit.bucket.limiter import AsmLimiter
from tokenlimit.gateway import (
    LOOPBACK,
    BackgroundServers,
    Gateway,
    Listener,
    MockLLM,
    MockSettings,
    bind,
    build_config,
)
from tokenlimit.gateway.asgi import Receive, Scope, Send, read_body, respond
from tokenlimit.rules import load_rules

CLOCK = 1_000_000.0


@dataclass
class FakeService:
    """The ASM service's HTTP API over the reference model, with knobs for failure tests."""

    limiter: AsmLimiter
    clock: Callable[[], float] = lambda: CLOCK
    failing: bool = False
    stall: float = 0.0  # seconds to wait before answering a check (timeout tests)
    stall_reports: float = 0.0  # seconds to wait before applying a report (shutdown tests)
    failing_reports: int = 0  # answer this many reports 500 without applying them
    deny_headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    checks: list[list[str]] = field(default_factory=list)
    reports: list[dict[str, Any]] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                from tokenlimit.gateway.asgi import run_lifespan

                await run_lifespan(receive, send)
            return
        body = await read_body(receive)
        if self.failing:
            await respond(send, 400, b"", "text/plain")
        elif scope["path"] == "/ratelimit":
            if self.stall:
                await asyncio.sleep(self.stall)
            query = parse_qs(scope["query_string"].decode())
            keys = json.loads(query["ratelimit_keys"][0])
            self.checks.append(keys)
            result = self.limiter.check(keys, now=self.clock())
            payload = json.dumps({"allow": result.outcome == "allow",
                                  "description": result.description}).encode()
            headers = self.deny_headers if result.outcome == "deny" else []
            await respond(send, 200, payload, "application/json", headers)
        elif scope["path"] == "/update_ratelimit_record":
            if self.stall_reports:
                await asyncio.sleep(self.stall_reports)
            if self.failing_reports:
                self.failing_reports -= 1
                await respond(send, 500, b"", "text/plain")
                return
            report = json.loads(body)
            self.reports.append(report)
            self.limiter.report(report["ratelimit_keys"], report["completion_tokens"],
                                now=self.clock())
            await respond(send, 200, b"", "text/plain")
        else:
            await respond(send, 404, b"", "text/plain")


def guide_limiter() -> AsmLimiter:
    """The documentation's example rules (samples/rules.json) in the reference model."""
    return AsmLimiter(load_rules(str(SAMPLES / "rules.json")).rules)


@dataclass
class System:
    """A running fake service, mock LLM and gateway on loopback ports."""

    service: FakeService
    mock: MockLLM
    gateway: Gateway
    service_servers: BackgroundServers
    servers: BackgroundServers

    @property
    def gateway_url(self) -> str:
        return self.servers.listeners[1].url

    @property
    def mock_url(self) -> str:
        return self.servers.listeners[0].url

    def drain(self, spool: bool = True) -> None:
        """Wait until every report the gateway scheduled has reached the service (or, without
        ``spool``, has been sent or spooled)."""
        self.servers.call(self.gateway.drain(spool), timeout=30)

    def stop_service(self) -> None:
        self.service_servers.stop()


def start_system(*, fail_open: bool = True, hosts: tuple[str, ...] = ("dashscope.aliyuncs.com",),
                 templates: tuple[str, ...] = ("{{request.headers.user-type}}",),
                 mock: MockSettings | None = None, limiter: AsmLimiter | None = None) -> System:
    service = FakeService(limiter or guide_limiter())
    service_servers = BackgroundServers([Listener("service", service, bind(LOOPBACK, 0))]).start()
    try:
        mock_app = MockLLM(mock or MockSettings())
        mock_sock = bind(LOOPBACK, 0)
        gateway = Gateway(build_config(
            upstream=f"http://{LOOPBACK}:{mock_sock.getsockname()[1]}",
            service=service_servers.listeners[0].url, key_templates=templates, hosts=hosts,
            fail_open=fail_open))
        servers = BackgroundServers([Listener("mock", mock_app, mock_sock),
                                     Listener("gateway", gateway, bind(LOOPBACK, 0))]).start()
    except BaseException:
        service_servers.stop()
        raise
    return System(service, mock_app, gateway, service_servers, servers)


@pytest.fixture
def system() -> Iterator[System]:
    running = start_system()
    try:
        yield running
    finally:
        running.servers.stop()
        running.service_servers.stop()


@pytest.fixture
def make_system() -> Iterator[Callable[..., System]]:
    started: list[System] = []

    def make(**kwargs: Any) -> System:
        running = start_system(**kwargs)
        started.append(running)
        return running

    try:
        yield make
    finally:
        for running in started:
            running.servers.stop()
            running.service_servers.stop()


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``condition`` until true; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("condition not met before the deadline")
        time.sleep(0.01)
