"""A report leaves only after the last byte of the answer has been handed to the client.

The gateway app is driven directly with an ASGI ``send`` the test controls (the upstream and the
service are real loopback servers): when the final body message arrives, no report may exist.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tests.gateway.conftest import System
from tokenlimit.gateway import Gateway, build_config


@pytest.mark.parametrize("stream", [False, True])
def test_report_is_sent_after_the_final_byte(system: System, stream: bool) -> None:
    gateway = Gateway(build_config(upstream=system.mock_url,
                                   service=system.service_servers.listeners[0].url,
                                   hosts=["dashscope.aliyuncs.com"]))
    body = json.dumps({"messages": [{"role": "user", "content": "hi"}], "stream": stream,
                       "stream_options": {"include_usage": True}}).encode()
    scope = {"type": "http", "method": "POST", "path": "/", "raw_path": b"/",
             "query_string": b"", "scheme": "http", "http_version": "1.1",
             "client": ("127.0.0.1", 5555), "server": ("127.0.0.1", 10000),
             "headers": [(b"host", b"dashscope.aliyuncs.com"), (b"user-type", b"subscriber"),
                         (b"content-type", b"application/json")]}
    sent: list[dict[str, Any]] = []
    reports_at_final_byte: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            await asyncio.sleep(0)  # give an early report every chance to get out
            reports_at_final_byte.append(len(system.service.reports) + len(gateway.spool.outbox))

    async def run() -> None:
        await gateway.startup()
        try:
            await gateway(scope, receive, send)
            await gateway.drain()
        finally:
            await gateway.shutdown()

    asyncio.run(run())
    assert sent[0]["status"] == 200
    assert reports_at_final_byte == [0]
    [produced] = system.mock.completions
    assert system.service.reports == [{
        "ratelimit_keys": ["subscriber"], "prompt_tokens": produced.prompt_tokens,
        "completion_tokens": produced.completion_tokens, "total_tokens": produced.total_tokens}]
