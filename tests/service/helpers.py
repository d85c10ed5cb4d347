"""Shared helpers for the service tests: rules, a key-list query, a usage body."""

from __future__ import annotations

import json
from collections.abc import Sequence

import httpx

from tokenlimit.rules.model import Rule

RULES = (
    Rule(0, "regular-user.*", 200, 50, 30, 300),
    Rule(1, "subscriber.*", 1000, 100, 60, 600),
)
T0 = 1_700_000_000.0


def check(client: httpx.Client, url: str, keys: Sequence[str]) -> httpx.Response:
    return client.get(f"{url}/ratelimit", params={"ratelimit_keys": json.dumps(list(keys))})


def report(client: httpx.Client, url: str, keys: Sequence[str], completion: int,
           total: int | None = None) -> httpx.Response:
    body = {"ratelimit_keys": list(keys), "prompt_tokens": 7, "completion_tokens": completion,
            "total_tokens": completion + 7 if total is None else total}
    return client.post(f"{url}/update_ratelimit_record", json=body)


def allowed(response: httpx.Response) -> bool:
    assert response.status_code == 200, response.content
    return bool(response.json()["allow"])
