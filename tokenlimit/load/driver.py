"""The async driver: runs a load shape against a target, bounded in time and requests.

Open loop: a scheduler sleeps until each request's intended send time (coarse sleep, then
yielding to the loop for the last ~2 ms, because event-loop timers have millisecond
granularity) and starts it without waiting for earlier answers; latency counts from the
intended time, so a slow server cannot hide its queueing. Closed loop: ``concurrency``
users, each sending its next request when the last one was answered. Either way the run
stops at ``duration`` seconds or ``requests`` requests, whichever comes first, or when
``stop`` is set (Ctrl-C): in-flight requests get a short grace period, then the partial
result is returned.

With ``workers > 1`` (``tokenlimit.load.multiprocess``), worker ``w`` of ``N`` takes the
requests ``w, w + N, ...`` of the same schedule, so the merged traffic is the schedule.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal, Protocol

from tokenlimit.eventloop import new_event_loop
from tokenlimit.load.client import Pool, Target, tls_context
from tokenlimit.load.modes import (
    GatewayMode,
    KeySpec,
    Mode,
    Planned,
    Planner,
    Range,
    ServiceMode,
)
from tokenlimit.load.observation import Observation
from tokenlimit.load.run_stats import RunStats
from tokenlimit.load.schedule import Schedule
from tokenlimit.load.waker import AlarmWaker
from tokenlimit.sim.records import TraceRequest

Shape = Literal["closed", "open"]
TICK_SECONDS = 0.25
DRAIN_ON_STOP = 2.0
WARM_LIMIT = 1.0  # seconds at most spent opening connections before the start


class StopFlag(Protocol):
    """``threading.Event`` or ``multiprocessing.Event``."""

    def is_set(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class LoadPlan:
    """Everything one run (or one worker) needs; picklable for worker processes."""

    target: str
    mode: Mode = "gateway"
    keys: tuple[KeySpec, ...] = (KeySpec("user-type", "regular-user", 1.0),)
    shape: Shape = "closed"
    concurrency: int = 1
    schedule: Schedule | None = None
    duration: float = 10.0
    requests: int | None = 100
    timeout: float = 10.0
    connections: int = 256
    seed: int = 0
    stream: bool = False
    model: str = "tokenlimit-load"
    tokens: Range = field(default_factory=lambda: Range(20, 200))
    prompt_tokens: int = 20
    latency: Range = field(default_factory=lambda: Range(0.0, 0.05))
    report_window: float = 0.02
    observe: bool = False
    host_header: str | None = None
    replay: tuple[TraceRequest, ...] | None = None
    replay_speed: float = 1.0
    # The fraction of a second the run starts at (a replay: its first request's), so the
    # service's whole-second clock splits the run where it splits the trace.
    start_fraction: float | None = None
    insecure: bool = False
    ca_cert: str | None = None


@dataclass(slots=True)
class RunResult:
    """Stats, observations (when asked for) and whether the run was interrupted."""

    stats: RunStats
    observations: list[Observation]
    interrupted: bool = False


class _Replayed:
    """Plans taken from a trace's requests (key, tokens, latency) instead of drawn.

    Latencies are divided by ``speed`` like the arrival times: a usage report then reaches
    the service where it falls among the checks in the trace, so the replay decides as the
    trace does (at 1000x, unscaled latencies would land every report after every check).
    """

    def __init__(self, header: str, requests: tuple[TraceRequest, ...], speed: float) -> None:
        self.header = header
        self.requests = requests
        self.speed = speed

    def plan(self, n: int) -> Planned:
        r = self.requests[n]
        return Planned(self.header, r.keys[0] if r.keys else "", r.completion_tokens,
                       r.prompt_tokens, max(r.latency, 0.0) / self.speed)


def _indices(plan: LoadPlan, worker: int, workers: int) -> Iterator[int]:
    limit = plan.requests
    if plan.replay is not None:
        limit = len(plan.replay) if limit is None else min(limit, len(plan.replay))
    return itertools.islice(itertools.count(), worker, limit, workers)


async def run_async(plan: LoadPlan, *, stop: StopFlag | None = None,
                    on_tick: Callable[[RunStats, float], None] | None = None,
                    worker: int = 0, workers: int = 1,
                    start_at: float | None = None) -> RunResult:
    """Run ``plan`` (this worker's share of it) on the running loop."""
    target = Target.parse(plan.target)
    if plan.host_header:
        target = dataclasses.replace(target, host_override=plan.host_header)
    stats = RunStats()
    observations: list[Observation] = []
    tls = tls_context(insecure=plan.insecure, ca_cert=plan.ca_cert) if target.tls else None
    pool = Pool(target, plan.connections, plan.timeout, tls)
    kept = observations if plan.observe else None
    mode: ServiceMode | GatewayMode
    if plan.mode == "service":
        mode = ServiceMode(target, pool, stats, kept)
        mode.ordered = plan.replay is not None
    else:
        mode = GatewayMode(target, pool, stats, kept, stream=plan.stream, model=plan.model,
                           report_window=plan.report_window)
    planner: Planner | _Replayed
    if plan.replay is not None:
        planner = _Replayed(plan.keys[0].header, plan.replay, plan.replay_speed)
    else:
        planner = Planner(plan.keys, plan.tokens, plan.prompt_tokens, plan.latency,
                          plan.seed * 1009 + worker)
    tasks: set[asyncio.Task[None]] = set()
    # Warming is bounded too: a target that never accepts cannot hold the run for long.
    await pool.warm(_warm_connections(plan, workers), within=min(WARM_LIMIT, plan.duration / 4))
    start_wall = start_instant(plan, time.time()) if start_at is None else start_at
    # Map wall-clock intended times onto the precise monotonic clock once.
    start_mono = time.perf_counter() + (start_wall - time.time())
    # --duration bounds the run from its start, sends, answers and usage reports included;
    # warming before it is bounded apart (WARM_LIMIT), so TLS handshakes do not eat into the
    # schedule.
    end_mono = start_mono + plan.duration
    stopped = stop.is_set if stop is not None else (lambda: False)
    stats.started = start_wall
    ticker = asyncio.ensure_future(_tick(stats, start_mono, on_tick)) if on_tick else None

    waker = AlarmWaker.open(asyncio.get_running_loop())

    async def wait_until(due: float) -> None:
        while True:
            delay = due - time.perf_counter()
            if delay <= 0:
                return
            if waker is not None:
                await waker.sleep_until(due)
                continue
            # Loop timers have millisecond granularity: sleep to ~1 ms before; then, with
            # nothing in flight, block for the rest (precise, no spinning: no answer can
            # arrive meanwhile); otherwise yield to the loop (answers keep being read).
            if delay > 0.0015:
                await asyncio.sleep(delay - 0.0012)
            elif not tasks:  # nothing started or in flight
                time.sleep(delay)
            else:
                await asyncio.sleep(0)

    async def wait_until_wall(due_wall: float) -> None:
        await wait_until(start_mono + (due_wall - start_wall))

    if isinstance(mode, ServiceMode):
        mode.wait_until_wall = wait_until_wall  # usage reports go out at their instants
    indices = _indices(plan, worker, workers)
    try:
        await wait_until(start_mono)
        if plan.shape == "open":
            assert plan.schedule is not None
            offsets = plan.schedule.offsets()
            if workers > 1:
                offsets = itertools.islice(offsets, worker, None, workers)
            loop = asyncio.get_running_loop()
            for n, offset in zip(indices, offsets, strict=False):
                if start_mono + offset >= end_mono or stopped():
                    break
                due = start_mono + offset
                if due > time.perf_counter():
                    await wait_until(due)
                    if stopped():
                        break
                if waker is not None and waker.release_until(due):
                    # Usage reports due before this check go first, even when the loop
                    # stalled and both are late: the replay keeps the trace's order.
                    await asyncio.sleep(0)
                task = loop.create_task(
                    mode.execute(n, planner.plan(n), start_wall + offset, True))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        else:
            users = max(1, plan.concurrency // workers + (worker < plan.concurrency % workers))

            async def user() -> None:
                for n in indices:  # a shared iterator: every index is taken once
                    if stopped() or time.perf_counter() >= end_mono:
                        return
                    await mode.execute(n, planner.plan(n), time.time(), False)

            for _ in range(users):
                task = asyncio.ensure_future(user())
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        interrupted = await _drain(tasks, stopped, end_mono)
    finally:
        if waker is not None:
            waker.close()
        if ticker is not None:
            ticker.cancel()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        pool.close()
    stats.finished = time.time()
    observations.sort(key=lambda o: o.index)
    return RunResult(stats, observations, interrupted or stopped())


def start_instant(plan: LoadPlan, earliest: float) -> float:
    """When the run starts: ``earliest``, or with ``plan.start_fraction`` the first instant
    from ``earliest`` on at that fraction of a second (at most a second later).

    >>> start_instant(LoadPlan("http://127.0.0.1:1", start_fraction=0.25), 100.5)
    101.25
    """
    if plan.start_fraction is None:
        return earliest
    start = math.floor(earliest) + plan.start_fraction
    return start if start >= earliest else start + 1.0


def _warm_connections(plan: LoadPlan, workers: int) -> int:
    """Connections to open before the start, so the first requests are not late by a connect.

    Opening a connection sends nothing the limiter sees.
    """
    if plan.shape == "closed":
        return min(plan.connections, max(1, plan.concurrency // workers))
    return min(plan.connections, 16)


async def _drain(tasks: set[asyncio.Task[None]], stopped: Callable[[], bool],
                 end_mono: float) -> bool:
    """Wait for in-flight work until ``end_mono`` at the latest: ``--duration`` bounds the
    whole run, drain included (what is still in flight then is left unanswered). A stop
    request shortens the wait to ``DRAIN_ON_STOP``. True when interrupted."""
    stop_deadline: float | None = None
    while tasks:
        now = time.perf_counter()
        if stopped() and stop_deadline is None:
            stop_deadline = min(now + DRAIN_ON_STOP, end_mono)
        if now >= end_mono or (stop_deadline is not None and now >= stop_deadline):
            return stop_deadline is not None
        wait = min(0.05, (stop_deadline or end_mono) - now)
        await asyncio.wait(set(tasks), timeout=max(wait, 0.0))
    return stop_deadline is not None


async def _tick(stats: RunStats, start_mono: float,
                on_tick: Callable[[RunStats, float], None]) -> None:
    while True:
        await asyncio.sleep(TICK_SECONDS)
        on_tick(stats, time.perf_counter() - start_mono)


def run(plan: LoadPlan, *, stop: StopFlag | None = None,
        on_tick: Callable[[RunStats, float], None] | None = None, worker: int = 0,
        workers: int = 1, start_at: float | None = None) -> RunResult:
    """Run ``plan`` on a fresh event loop (uvloop) and return what it measured."""
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(run_async(plan, stop=stop, on_tick=on_tick, worker=worker,
                                    workers=workers, start_at=start_at))
