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
import heapq
import itertools
import signal
import threading
import time


class AlarmWaker:
    """``await waker.sleep_until(due)`` with ``due`` on ``time.perf_counter``'s clock.

    Many coroutines may sleep at once (the scheduler, and usage reports due at their replayed
    instants): the timer is armed for the earliest instant, and each ring wakes every sleeper
    that is due, then re-arms for the next.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self.count = itertools.count()  # ties in ``due`` never compare futures
        self.armed: float | None = None

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
        self.armed = None
        self.release_until(time.perf_counter())

    def release_until(self, instant: float) -> int:
        """Wake every sleeper due at or before ``instant`` now, in order of their instants
        (a late scheduler lets what was due earlier go first); how many were woken."""
        woken = 0
        while self.sleepers and (self.sleepers[0][0] <= instant or self.sleepers[0][2].done()):
            _, _, waiter = heapq.heappop(self.sleepers)
            if not waiter.done():
                waiter.set_result(None)
                woken += 1
        self._arm()
        return woken

    def _arm(self) -> None:
        """Set the timer for the earliest sleeper (or stop it when none is left)."""
        if not self.sleepers:
            if self.armed is not None:
                signal.setitimer(signal.ITIMER_REAL, 0)
                self.armed = None
            return
        due = self.sleepers[0][0]
        if self.armed is not None and self.armed <= due:
            return
        self.armed = due
        # Never 0: a zero interval would disarm the timer instead of ringing at once.
        signal.setitimer(signal.ITIMER_REAL, max(due - time.perf_counter(), 2e-6))

    async def sleep_until(self, due: float) -> None:
        """Return at ``due`` (or just after), having slept in the loop meanwhile."""
        if due - time.perf_counter() <= 0:
            return
        waiter: asyncio.Future[None] = self.loop.create_future()
        heapq.heappush(self.sleepers, (due, next(self.count), waiter))
        self._arm()
        await waiter  # a cancelled sleeper stays in the heap until its instant; harmless

    def close(self) -> None:
        """Stop the timer and give SIGALRM back."""
        signal.setitimer(signal.ITIMER_REAL, 0)
        self.armed = None
        for _, _, waiter in self.sleepers:
            waiter.cancel()
        self.sleepers.clear()
        self.loop.remove_signal_handler(signal.SIGALRM)
