"""``--workers N``: the same plan over N processes, merged exactly.

Worker ``w`` takes requests ``w, w + N, ...`` of one schedule (``driver.run``), all starting at
one wall-clock instant chosen once every worker is ready. Each worker sends back its exact
counts and histograms and its observations; merging adds them, so the merged report is the
report of the whole schedule. Workers ignore Ctrl-C; the parent forwards it as a stop event.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.sharedctypes import SynchronizedArray
from typing import Any

from tokenlimit.errors import RemoteError
from tokenlimit.load.driver import LoadPlan, RunResult, StopFlag, run, start_instant
from tokenlimit.load.run_stats import RunStats

_FIELDS = 4  # sent, allowed, limited, errors, per worker, for live progress
_STOPS = {signal.SIGINT, signal.SIGTERM}  # the signals that stop a run (the parent's)
START_DELAY = 0.5  # every worker warms its connections, then starts at one instant


def _worker(plan: LoadPlan, worker: int, workers: int, conn: Connection, stop: Any,
            counters: SynchronizedArray[int]) -> None:
    for sig in _STOPS:  # the parent stops the run on these (a process group gets them too)
        signal.signal(sig, signal.SIG_IGN)
    parent = os.getppid()
    conn.send("ready")
    start_at = float(conn.recv())

    def tick(stats: RunStats, _elapsed: float) -> None:
        if os.getppid() != parent:  # the parent was killed: stop, never load on alone
            stop.set()
        base = worker * _FIELDS
        counters[base] = stats.sent
        counters[base + 1] = stats.outcomes["allowed"]
        counters[base + 2] = stats.outcomes["limited"]
        counters[base + 3] = stats.outcomes["error"]

    try:
        result = run(plan, stop=stop, on_tick=tick, worker=worker, workers=workers,
                     start_at=start_at)
        message: tuple[Any, ...] = ("ok", result.stats.to_dict(), result.observations,
                                    result.interrupted)
    except Exception as exc:  # reported to the parent as one line
        message = ("error", f"worker {worker}: {exc}", [], False)
    try:
        conn.send(message)
    except OSError:  # the parent is gone: nobody to tell
        pass
    finally:
        conn.close()


def run_workers(plan: LoadPlan, workers: int, *, stop: StopFlag | None = None,
                on_tick: Callable[[RunStats, float], None] | None = None) -> RunResult:
    """Run ``plan`` split over ``workers`` processes; results merged exactly."""
    if workers <= 1:
        return run(plan, stop=stop, on_tick=on_tick)
    ctx = mp.get_context("spawn")
    event = ctx.Event()
    counters: SynchronizedArray[int] = ctx.Array("q", workers * _FIELDS)
    pipes: list[Connection] = []
    procs: list[Any] = []
    # A terminal's Ctrl-C (and `timeout`'s SIGTERM) goes to the whole process group: a worker
    # still importing (before _worker ignores it) would die, in a KeyboardInterrupt traceback,
    # and the run end with no report. Workers start with both blocked (the mask is inherited
    # and kept across exec); the parent's own signal waits until it is unblocked and then
    # stops the run as usual.
    blocking = hasattr(signal, "pthread_sigmask")
    if blocking:
        signal.pthread_sigmask(signal.SIG_BLOCK, _STOPS)
    try:
        for w in range(workers):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(plan, w, workers, child, event, counters),
                               daemon=True)
            proc.start()
            child.close()
            pipes.append(parent)
            procs.append(proc)
    finally:
        if blocking:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOPS)
    try:
        for w, pipe in enumerate(pipes):
            try:
                ready = pipe.poll(60) and pipe.recv() == "ready"
            except (EOFError, OSError):
                ready = False
            if not ready:
                raise RemoteError(f"load worker {w} did not start (exit status "
                                  f"{procs[w].exitcode})")
        start_at = start_instant(plan, time.time() + START_DELAY)
        for pipe in pipes:
            pipe.send(start_at)
        results: list[Any] = [None] * workers
        waiting = set(range(workers))
        while waiting:
            if stop is not None and stop.is_set():
                event.set()
            for w in list(waiting):
                if pipes[w].poll(0):
                    try:
                        results[w] = pipes[w].recv()
                    except (EOFError, OSError):
                        raise RemoteError(f"load worker {w} exited with status "
                                          f"{procs[w].exitcode}") from None
                    waiting.discard(w)
                elif not procs[w].is_alive() and not pipes[w].poll(0):
                    raise RemoteError(f"load worker {w} exited with status "
                                      f"{procs[w].exitcode}")
            if on_tick is not None:
                on_tick(_progress(counters, workers, start_at), time.time() - start_at)
            time.sleep(0.05)
    finally:
        event.set()
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()  # it ignores SIGTERM
                proc.join(timeout=5)
    merged = RunStats()
    observations = []
    interrupted = False
    for status, payload, obs, stopped in results:
        if status != "ok":
            raise RemoteError(payload)
        merged.merge(RunStats.from_dict(payload))
        observations.extend(obs)
        interrupted = interrupted or stopped
    observations.sort(key=lambda o: o.index)
    return RunResult(merged, observations, interrupted)


def _progress(counters: SynchronizedArray[int], workers: int, start_at: float) -> RunStats:
    stats = RunStats(started=start_at)
    for w in range(workers):
        base = w * _FIELDS
        stats.sent += counters[base]
        stats.outcomes["allowed"] += counters[base + 1]
        stats.outcomes["limited"] += counters[base + 2]
        stats.outcomes["error"] += counters[base + 3]
    return stats
