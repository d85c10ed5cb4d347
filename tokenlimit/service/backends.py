"""Light constants of the service package (``serve``'s help texts need them without asyncio)."""

from __future__ import annotations

from typing import Literal

BackendKind = Literal["memory", "redis", "redis-cluster"]
BACKENDS: tuple[BackendKind, ...] = ("memory", "redis", "redis-cluster")
