"""Serving raw ASGI apps on loopback (:mod:`tokenlimit.gateway.http_server`): in the foreground or
in a background thread.

Sockets are bound before the server starts, so port 0 works and the real port is known at once.
One Ctrl-C stops several servers in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from tokenlimit.errors import ConfigError
from tokenlimit.eventloop import LoopThread, new_event_loop
from tokenlimit.gateway.addresses import LOOPBACK as LOOPBACK  # re-exported
from tokenlimit.gateway.http_server import AsgiServer


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket; a port in use is a :class:`ConfigError`."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    sock.listen(2048)
    sock.setblocking(False)
    return sock


@dataclass
class Listener:
    """One ASGI app on one bound socket."""

    name: str
    app: Any
    sock: socket.socket
    server: AsgiServer = field(init=False)
    address: tuple[str, int] = field(init=False)

    def __post_init__(self) -> None:
        name = self.sock.getsockname()
        self.address = (str(name[0]), int(name[1]))  # still known once the socket is closed
        # An app that writes its own Date header (the gateway passes the upstream's on) is
        # served without the server's, so that an answer carries one Date, not two.
        self.server = AsgiServer(self.app, graceful_seconds=10)

    @property
    def port(self) -> int:
        return self.address[1]

    @property
    def url(self) -> str:
        host = self.address[0]
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    def serve(self) -> Coroutine[Any, Any, None]:
        """Serve until ``server.should_exit`` is set."""
        return self.server.serve(sockets=[self.sock])


async def serve_all(listeners: Sequence[Listener], stop: asyncio.Event,
                    started: Callable[[], None] | None = None) -> None:
    """Run ``listeners`` until ``stop`` is set (or one of them ends); stop them in reverse order.

    ``started`` is called once every listener accepts connections.
    """
    tasks = [asyncio.ensure_future(listener.serve()) for listener in listeners]
    stopper = asyncio.ensure_future(stop.wait())
    while not all(listener.server.started for listener in listeners):
        if any(task.done() for task in tasks):
            break
        await asyncio.sleep(0.01)
    else:
        if started is not None:
            started()
    await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
    for listener, task in zip(reversed(listeners), reversed(tasks), strict=True):
        listener.server.should_exit = True
        await asyncio.wait([task])
    stopper.cancel()
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]


def run_foreground(listeners: Sequence[Listener], duration: float | None = None,
                   started: Callable[[], None] | None = None) -> None:
    """Serve until SIGINT / SIGTERM or ``duration`` seconds; every listener is shut down."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_signal() -> None:
            # The first Ctrl-C stops gracefully (answers in flight finish, up to 10 s);
            # a second one stops at once.
            if stop.is_set():
                for listener in listeners:
                    listener.server.force_exit = True
            stop.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, on_signal)
        if duration is not None:
            loop.call_later(duration, stop.set)
        try:
            await serve_all(listeners, stop, started)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.remove_signal_handler(sig)

    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(main())


class BackgroundServers:
    """Listeners served in a thread of their own; ``start`` returns once all accept connections.

    For example (tests do this)::

        with BackgroundServers([Listener("mock", MockLLM(), bind(LOOPBACK, 0))]) as servers:
            httpx.post(servers.listeners[0].url + "/v1/chat/completions", json=...)
    """

    def __init__(self, listeners: Sequence[Listener]) -> None:
        self.listeners = list(listeners)
        self._thread = LoopThread("tokenlimit-servers")

    def start(self, timeout: float = 10.0) -> BackgroundServers:
        """Start serving; :class:`ConfigError` when the servers do not come up."""

        async def main(ready: Callable[[], None], stop: asyncio.Event) -> None:
            await serve_all(self.listeners, stop, ready)

        try:
            self._thread.start(main, timeout)
        except Exception as exc:
            self.stop()
            reason = "timeout" if isinstance(exc, TimeoutError) else exc
            raise ConfigError(f"servers did not start: {reason}") from None
        return self

    def call(self, coroutine: Coroutine[Any, Any, Any], timeout: float = 10.0) -> Any:
        """Run a coroutine on the servers' event loop (e.g. ``gateway.drain()``)."""
        return self._thread.call(coroutine, timeout)

    def stop(self, timeout: float = 15.0) -> None:
        """Stop every listener (in reverse order) and wait for the thread to end."""
        self._thread.stop(timeout)
        for listener in self.listeners:
            listener.sock.close()

    def __enter__(self) -> BackgroundServers:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
