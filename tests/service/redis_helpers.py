"""Running store calls from synchronous tests, and a raw look into Redis."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from tokenlimit.service.stores.resp import RespConnection

T = TypeVar("T")


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    """Run one async scenario on a fresh loop (stores bind to the loop that first uses them)."""
    return asyncio.run(scenario())  # type: ignore[arg-type]


async def redis_call(port: int, *args: Any) -> Any:
    connection = RespConnection("127.0.0.1", port, timeout=5)
    try:
        return await connection.call(*args)
    finally:
        await connection.close()


def injected_start() -> float:
    """A start time for an injected clock: ahead of Redis's own clock, on a whole second."""
    return float(math.floor(time.time()) + 5)


async def value_at(port: int, key: str, now: float) -> int | None:
    """A key's integer value as seen at ``now`` on an injected clock (expired on it: None)."""
    expires_at = await redis_call(port, "PEXPIRETIME", key)
    if expires_at == -2 or (expires_at >= 0 and math.floor(now * 1000) > expires_at):
        return None
    value = await redis_call(port, "GET", key)
    return None if value is None else int(value)
