"""The event loop every server and client of the project runs on.

uvloop where it is installed (a dependency on POSIX: it is about twice as fast as asyncio's
loop for the service, the gateway and the load generator), asyncio's own loop otherwise.
"""

from __future__ import annotations

import asyncio


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new uvloop loop, or asyncio's default loop where uvloop is missing (Windows)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop
