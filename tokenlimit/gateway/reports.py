"""Usage reports that reach the service exactly once, even across an outage.

A report goes out at once (``POST /update_ratelimit_record``). One that surely did not reach the
service (it could not connect; or the service answered 500 to a one-key report, which the ASM
service does only when its one ``DECRBY`` failed) is kept in a spool and retried, oldest first,
with exponential backoff (50 ms doubling up to 5 s) until the service takes it. A report whose
fate is unknown (a timeout or a dropped connection after it was sent, a 500 to a multi-key
report where some keys may have been charged) is never retried: retrying could charge it twice.

The spool holds at most ``MAX_SPOOLED`` reports; one more is dropped and counted, as are those
still spooled when the gateway stops after its grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from tokenlimit.bucket.types import Usage
from tokenlimit.gateway.health import GatewayStats

MAX_SPOOLED = 100_000
FIRST_RETRY_DELAY = 0.05
MAX_RETRY_DELAY = 5.0


class Delivery(enum.Enum):
    """What became of one attempt to deliver a report."""

    DELIVERED = "delivered"
    NOT_DELIVERED = "not_delivered"  # surely not applied: safe to retry
    UNKNOWN = "unknown"  # maybe applied, maybe not: never retried (it could be doubled)


@dataclass(frozen=True, slots=True)
class PendingReport:
    """A report waiting in the spool; ``context`` is handed back to ``on_delivered``."""

    keys: tuple[str, ...]
    usage: Usage
    context: object = None


Deliver = Callable[[Sequence[str], Usage], Awaitable[Delivery]]


class ReportSpool:
    """Sends reports, keeps those that surely failed and retries them in the background."""

    def __init__(self, deliver: Deliver, stats: GatewayStats,
                 on_delivered: Callable[[PendingReport, bool], None] | None = None,
                 limit: int = MAX_SPOOLED) -> None:
        self.deliver = deliver
        self.stats = stats
        self.on_delivered = on_delivered
        self.limit = limit
        self.pending: deque[PendingReport] = deque()
        self._retrying: asyncio.Task[None] | None = None

    async def send(self, report: PendingReport) -> Delivery:
        """Deliver ``report`` now; spool it when it surely did not arrive."""
        outcome = await self.deliver(report.keys, report.usage)
        if outcome is Delivery.NOT_DELIVERED:
            self._spool(report)
        else:
            self._done(report, outcome)
        return outcome

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
            report = self.pending[0]
            outcome = await self.deliver(report.keys, report.usage)
            if outcome is Delivery.NOT_DELIVERED:
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RETRY_DELAY)
                continue
            self.pending.popleft()
            if outcome is Delivery.DELIVERED:
                self.stats.reports_retried += 1
            self._done(report, outcome)
            delay = FIRST_RETRY_DELAY

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until the spool is empty (``timeout``: give up then); True when it is."""
        task = self._retrying
        if task is not None and not task.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), timeout)
        return not self.pending

    async def close(self) -> None:
        """Stop retrying; what is still spooled is dropped and counted."""
        task, self._retrying = self._retrying, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.stats.reports_dropped += len(self.pending)
        self.pending.clear()
