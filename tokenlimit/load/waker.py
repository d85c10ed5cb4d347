"""Waking the event loop at a precise instant, without spinning.

Event-loop timers have millisecond granularity. ``signal.setitimer`` has microsecond
granularity, and the interpreter's C-level signal handler writes to the loop's wake-up file
descriptor at once, so a loop blocked in ``epoll`` wakes within tens of microseconds of the
instant while sleeping (no CPU taken from the target or other workers). It needs the main
thread and a ``SIGALRM`` nobody else uses (pytest-timeout, for one, uses it); ``AlarmWaker.open``
returns ``None`` otherwise and the driver yields to the loop instead.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time


class AlarmWaker:
    """``await waker.sleep_until(due)`` with ``due`` on ``time.perf_counter``'s clock."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.waiter: asyncio.Future[None] | None = None

    @classmethod
    def open(cls, loop: asyncio.AbstractEventLoop) -> AlarmWaker | None:
        """A waker on ``loop``, or ``None`` where SIGALRM cannot be used."""
        if (not hasattr(signal, "setitimer")
                or threading.current_thread() is not threading.main_thread()
                or signal.getsignal(signal.SIGALRM) not in (signal.SIG_DFL, None)
                or signal.getitimer(signal.ITIMER_REAL) != (0.0, 0.0)):
            return None
        waker = cls(loop)
        try:
            loop.add_signal_handler(signal.SIGALRM, waker._ring)
        except (NotImplementedError, RuntimeError, ValueError):
            return None
        return waker

    def _ring(self) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def sleep_until(self, due: float) -> None:
        """Return at ``due`` (or just after), having slept in the loop meanwhile."""
        delay = due - time.perf_counter()
        if delay <= 0:
            return
        self.waiter = self.loop.create_future()
        # Never 0: a zero interval would disarm the timer instead of ringing at once.
        signal.setitimer(signal.ITIMER_REAL, max(delay, 2e-6))
        try:
            await self.waiter
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            self.waiter = None

    def close(self) -> None:
        """Stop the timer and give SIGALRM back."""
        signal.setitimer(signal.ITIMER_REAL, 0)
        self.loop.remove_signal_handler(signal.SIGALRM)
