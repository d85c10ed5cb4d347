"""The issue's scenario end to end with real parts only: tokenlimit's service on a real
redis-server, the mock LLM and the gateway on loopback; the balances are read from Redis."""

from __future__ import annotations

import json

import httpx
import pytest
import redis

from tests.conftest import SAMPLES, RedisServer
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
from tokenlimit.rules import load_rules
from tokenlimit.service import BackendConfig, running_service

HOST = "dashscope.aliyuncs.com"
STREAM = {"messages": [{"role": "user", "content": "Who are you?"}], "stream": True}


@pytest.mark.redis
def test_streams_and_hang_ups_are_charged_in_redis(redis_server: RedisServer) -> None:
    rules = load_rules(str(SAMPLES / "rules.json"))  # regular-user starts with 50, subscriber 100
    backend = BackendConfig("redis", redis_server.host, redis_server.port)
    store = redis.Redis(host=redis_server.host, port=redis_server.port)
    with running_service(rules, backend=backend) as service:
        mock_sock = bind(LOOPBACK, 0)
        gateway = Gateway(build_config(
            upstream=f"http://{LOOPBACK}:{mock_sock.getsockname()[1]}", service=service.url,
            hosts=[HOST]))
        with BackgroundServers([Listener("mock", MockLLM(MockSettings(tokens_per_second=200)),
                                         mock_sock),
                                Listener("gateway", gateway, bind(LOOPBACK, 0))]) as servers:
            url = servers.listeners[1].url
            streamed = []
            for _ in range(4):  # no include_usage: before the fix, all 200 and nothing charged
                answer = httpx.post(url + "/", json=STREAM, timeout=10,
                                    headers={"host": HOST, "user-type": "regular-user"})
                servers.call(gateway.drain())
                streamed.append(answer.status_code)
            hung_up = []
            for _ in range(3):  # read 55 of 60 tokens, then hang up
                with httpx.stream("POST", url + "/", json=STREAM, timeout=10,
                                  headers={"host": HOST, "user-type": "subscriber"}) as answer:
                    hung_up.append(answer.status_code)
                    if answer.status_code == 200:
                        events = (line for line in answer.iter_lines()
                                  if line.startswith("data: {"))
                        tokens = 0
                        while tokens < 55:
                            event = json.loads(next(events)[6:])
                            tokens += bool(event["choices"][0]["delta"].get("content"))
                servers.call(gateway.drain())
    assert streamed == [200, 429, 429, 429]
    assert hung_up == [200, 200, 429]
    assert int(store.get("regular-user") or 0) == 50 - 60
    assert int(store.get("subscriber") or 0) == 100 - 2 * 60
    assert (gateway.stats.reports, gateway.stats.client_gone, gateway.stats.estimated) == (3, 2, 0)
