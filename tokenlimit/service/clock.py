"""A settable clock, so tests of the service's arithmetic never sleep."""

from __future__ import annotations

import threading


class ManualClock:
    """Unix seconds that move only when told; safe to read and set from several threads.

    >>> clock = ManualClock(100.0)
    >>> clock.advance(2.5); clock()
    102.5
    """

    def __init__(self, now: float) -> None:
        self._now = now
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def set(self, now: float) -> None:
        with self._lock:
            self._now = now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds
