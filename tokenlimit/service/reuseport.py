"""Several service processes sharing one port (SO_REUSEPORT), for the Redis backends.

The kernel spreads connections over the workers; each has its own event loop, Redis
connection and metrics (``/metrics`` reports the worker that answered). The parent forwards
SIGINT, SIGTERM and SIGHUP to every worker and waits for them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Callable

from tokenlimit.errors import ConfigError


def run_workers(count: int, work: Callable[[int], None]) -> int:
    """Fork ``count`` processes running ``work(index)``; the worst exit status of them."""
    if not hasattr(os, "fork"):
        raise ConfigError("--workers needs a system with fork()")
    children: list[int] = []
    for index in range(count):
        pid = os.fork()
        if pid == 0:  # the worker
            status = 0
            try:
                work(index)
            except KeyboardInterrupt:
                status = 130
            except BaseException as exc:  # a worker must never return into the parent's code
                message = " ".join(str(exc).split()) or type(exc).__name__
                sys.stderr.write(f"error: worker {index}: {message}\n")
                sys.stderr.flush()
                status = 1
            os._exit(status)
        children.append(pid)

    def forward(signum: int, _: object) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM,
                                                        signal.SIGHUP)}
    worst = 0
    try:
        for child in children:
            _, status = os.waitpid(child, 0)
            code = os.waitstatus_to_exitcode(status)  # negative: killed by that signal
            worst = worst or (1 if code < 0 else code)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return worst
