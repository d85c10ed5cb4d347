"""The event loop every server and client of the project runs on.

uvloop where it is installed (a dependency on POSIX: it is about twice as fast as asyncio's
loop for the service, the gateway and the load generator), asyncio's own loop otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new uvloop loop, or asyncio's default loop where uvloop is missing (Windows)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


class LoopThread:
    """An event loop serving in a thread of its own: the service's and the gateway's servers
    under tests, ``up`` and the Python API (``running_service``, ``BackgroundServers``).

    ``start(main)`` runs ``main(ready, stop)`` on a new loop in a daemon thread and returns once
    ``main`` has called ``ready()``; ``main`` serves until the ``stop`` event is set, then cleans
    up and returns. ``call`` runs a coroutine on that loop from another thread.

    >>> async def main(ready, stop):
    ...     ready()
    ...     await stop.wait()
    >>> thread = LoopThread("example")
    >>> thread.start(main)
    >>> async def answer():
    ...     return 42
    >>> thread.call(answer())
    42
    >>> thread.stop()
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def start(self, main: Callable[[Callable[[], None], asyncio.Event], Awaitable[None]],
              timeout: float = 10.0) -> None:
        """Serve ``main`` in the thread; raises what ``main`` raised before it was ready, or
        ``TimeoutError`` when it was not ready within ``timeout`` seconds."""

        async def body() -> None:
            self.loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            await main(self._ready.set, self._stop)

        def run() -> None:
            try:
                with asyncio.Runner(loop_factory=new_event_loop) as runner:
                    runner.run(body())
            except BaseException as exc:  # handed to the starting thread
                self._error = exc
            finally:
                self._ready.set()

        self._thread = threading.Thread(target=run, name=self.name, daemon=True)
        self._thread.start()
        ready = self._ready.wait(timeout)
        if not ready or self._error is not None or not self._thread.is_alive():
            self.stop()
            if self._error is not None:
                raise self._error
            raise TimeoutError(f"{self.name} was not ready within {timeout:g} s")

    def call(self, coroutine: Coroutine[Any, Any, Any], timeout: float = 10.0) -> Any:
        """Run ``coroutine`` on the thread's loop and return its result."""
        assert self.loop is not None, "start() first"
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def stop(self, timeout: float = 15.0) -> None:
        """Set ``stop`` and wait (bounded) for ``main`` to return and the thread to end."""
        if self.loop is not None and self._stop is not None and not self.loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                self.loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout)
