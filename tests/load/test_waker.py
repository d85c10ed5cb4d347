"""The SIGALRM waker: wakes the loop at the instant, gives SIGALRM back, steps aside if taken."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys

from tests.conftest import REPO
from tokenlimit.load.waker import AlarmWaker

PROBE = """
import asyncio, signal, time
from tokenlimit.eventloop import new_event_loop
from tokenlimit.load.waker import AlarmWaker

async def main():
    waker = AlarmWaker.open(asyncio.get_running_loop())
    assert waker is not None
    early = []
    for step in (0.003, 0.0, -1.0, 1e-7, 0.02):
        due = time.perf_counter() + step
        await waker.sleep_until(due)
        early.append(time.perf_counter() < due)
    waker.close()
    print(early, signal.getsignal(signal.SIGALRM) == signal.SIG_DFL,
          signal.getitimer(signal.ITIMER_REAL))

asyncio.Runner(loop_factory=new_event_loop).run(main())
"""


def test_the_waker_never_returns_early_and_gives_sigalrm_back() -> None:
    # A process of its own: pytest-timeout holds SIGALRM in this one.
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[False, False, False, False, False] True (0.0, 0.0)"


def test_the_waker_steps_aside_when_sigalrm_is_taken() -> None:
    previous = signal.signal(signal.SIGALRM, lambda *_: None)
    try:
        loop = asyncio.new_event_loop()
        try:
            assert AlarmWaker.open(loop) is None
        finally:
            loop.close()
    finally:
        signal.signal(signal.SIGALRM, previous)
