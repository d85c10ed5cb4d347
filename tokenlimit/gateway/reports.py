"""Usage reports that reach the service exactly once, even across an outage.

Reports go out in the background as soon as they are made: those made while earlier ones are on
their way are sent together, pipelined on one kept-alive connection in one write (each is still
its own ``POST /update_ratelimit_record``, as the plug-in sends it), which costs the gateway far
fewer system calls under load.

A report that surely did not reach the service (no connection could be opened; or the service
answered 500 to a one-key report, which the ASM service does only when its one ``DECRBY``
failed) is kept in a spool and retried, oldest first, with exponential backoff (50 ms doubling
up to 5 s) until the service takes it. A report whose fate is unknown (a timeout or a broken
connection after it was sent, a 500 to a multi-key report where some keys may have been
charged) is never retried: retrying could charge it twice.

The spool holds at most ``MAX_SPOOLED`` reports; one more is dropped and counted, as are those
still spooled when the gateway stops after its grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import json
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from tokenlimit.bucket.types import Usage
from tokenlimit.gateway.client import ClientFailure, ConnectFailed, HttpClient
from tokenlimit.gateway.health import GatewayStats, ServiceHealth

MAX_SPOOLED = 100_000
MAX_BATCH = 64  # reports pipelined in one write
REPORT_PATH = b"/update_ratelimit_record"
JSON_TYPE = [(b"content-type", b"application/json")]
FIRST_RETRY_DELAY = 0.05
MAX_RETRY_DELAY = 5.0


class Delivery(enum.Enum):
    """What became of one attempt to deliver a report."""

    DELIVERED = "delivered"
    NOT_DELIVERED = "not_delivered"  # surely not applied: safe to retry
    UNKNOWN = "unknown"  # maybe applied, maybe not: never retried (it could be doubled)


@dataclass(frozen=True, slots=True)
class PendingReport:
    """A report on its way; ``context`` is handed back to ``on_delivered``."""

    keys: tuple[str, ...]
    usage: Usage
    context: object = None


Deliver = Callable[[Sequence[PendingReport]], Awaitable[list[Delivery]]]


class ReportSpool:
    """Sends reports in the background, keeps those that surely failed and retries them."""

    def __init__(self, deliver: Deliver, stats: GatewayStats,
                 on_delivered: Callable[[PendingReport, bool], None] | None = None,
                 limit: int = MAX_SPOOLED) -> None:
        self.deliver = deliver
        self.stats = stats
        self.on_delivered = on_delivered
        self.limit = limit
        self.outbox: deque[PendingReport] = deque()
        self.pending: deque[PendingReport] = deque()  # the spool: waiting for a retry
        self._sending: asyncio.Task[None] | None = None
        self._retrying: asyncio.Task[None] | None = None

    def submit(self, report: PendingReport) -> None:
        """Send ``report`` in the background (with those submitted meanwhile)."""
        self.outbox.append(report)
        if self._sending is None or self._sending.done():
            self._sending = asyncio.get_running_loop().create_task(self._send())

    async def send(self, report: PendingReport) -> None:
        """Submit ``report`` and wait until it was delivered, given up or spooled."""
        self.submit(report)
        await self.sent()

    async def _send(self) -> None:
        while self.outbox:
            batch = [self.outbox.popleft() for _ in range(min(len(self.outbox), MAX_BATCH))]
            for report, outcome in zip(batch, await self.deliver(batch), strict=True):
                if outcome is Delivery.NOT_DELIVERED:
                    self._spool(report)
                else:
                    self._done(report, outcome)

    def _done(self, report: PendingReport, outcome: Delivery) -> None:
        if outcome is Delivery.DELIVERED:
            self.stats.reports += 1
        else:
            self.stats.report_errors += 1
        if self.on_delivered is not None:
            self.on_delivered(report, outcome is Delivery.DELIVERED)

    def _spool(self, report: PendingReport) -> None:
        if len(self.pending) >= self.limit:
            self.stats.reports_dropped += 1
            self._done(report, Delivery.UNKNOWN)
            return
        self.pending.append(report)
        self.stats.reports_spooled += 1
        if self._retrying is None or self._retrying.done():
            self._retrying = asyncio.get_running_loop().create_task(self._retry())

    async def _retry(self) -> None:
        delay = FIRST_RETRY_DELAY
        while self.pending:
            batch = list(self.pending)[:MAX_BATCH]
            outcomes = await self.deliver(batch)
            failed = 0
            for report, outcome in zip(batch, outcomes, strict=True):
                if outcome is Delivery.NOT_DELIVERED:
                    failed += 1
                    continue
                self.pending.remove(report)
                if outcome is Delivery.DELIVERED:
                    self.stats.reports_retried += 1
                self._done(report, outcome)
            if failed:
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RETRY_DELAY)
            else:
                delay = FIRST_RETRY_DELAY

    async def sent(self) -> None:
        """Wait until everything submitted so far was delivered, given up or spooled."""
        while self._sending is not None and not self._sending.done():
            await asyncio.shield(self._sending)

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until the spool is empty (``timeout``: give up then); True when it is."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self.sent()
                while self._retrying is not None and not self._retrying.done():
                    await asyncio.shield(self._retrying)
        return not self.pending and not self.outbox

    async def close(self) -> None:
        """Stop sending; what is still spooled or unsent is dropped and counted."""
        for task in (self._sending, self._retrying):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._sending = self._retrying = None
        self.stats.reports_dropped += len(self.pending) + len(self.outbox)
        self.pending.clear()
        self.outbox.clear()


def report_body(keys: tuple[str, ...], usage: Usage) -> bytes:
    """The ``/update_ratelimit_record`` body, as ``json.dumps`` writes it (the keys' JSON made
    once per key list: the same few lists come again and again).

    >>> report_body(("u",), Usage(5, 60, 65)).decode()
    '{"ratelimit_keys": ["u"], "prompt_tokens": 5, "completion_tokens": 60, "total_tokens": 65}'
    """
    return b'{"ratelimit_keys": %s, "prompt_tokens": %d, "completion_tokens": %d, ' \
           b'"total_tokens": %d}' % (_keys_json(keys), usage.prompt_tokens,
                                     usage.completion_tokens, usage.total_tokens)


@functools.lru_cache(maxsize=4096)
def _keys_json(keys: tuple[str, ...]) -> bytes:
    return json.dumps(list(keys), ensure_ascii=False).encode()


async def deliver_reports(service: HttpClient, reports: Sequence[PendingReport], timeout: float,
                          health: ServiceHealth) -> list[Delivery]:
    """Send ``reports`` to the service, pipelined on one connection; what became of each."""
    bodies = [report_body(r.keys, r.usage) for r in reports]
    try:
        async with asyncio.timeout(timeout):
            statuses = await service.pipeline("POST", REPORT_PATH, JSON_TYPE, bodies)
    except ConnectFailed:
        health.failure(f"unreachable at {service.origin}")
        return [Delivery.NOT_DELIVERED] * len(reports)  # nothing was sent
    except (ClientFailure, TimeoutError) as exc:
        health.failure(f"did not confirm reports ({type(exc).__name__})")
        return [Delivery.UNKNOWN] * len(reports)
    outcomes = [_outcome(status, report) for status, report in zip(statuses, reports,
                                                                   strict=True)]
    failed = [s for s, o in zip(statuses, outcomes, strict=True) if o is not Delivery.DELIVERED]
    if failed:
        health.failure(f"answered {failed[0] or 'nothing'} to /update_ratelimit_record")
    else:
        health.success()
    return outcomes


def _outcome(status: int | None, report: PendingReport) -> Delivery:
    if status == 200:
        return Delivery.DELIVERED
    # The ASM service answers 500 at its first failed DECRBY: with one key, nothing was
    # charged, so the report can go again; with more, earlier keys may have been charged.
    if status == 500 and len(report.keys) == 1:
        return Delivery.NOT_DELIVERED
    return Delivery.UNKNOWN
