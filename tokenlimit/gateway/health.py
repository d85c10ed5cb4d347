"""What the gateway counts and tells: counters, service outages (logged once), live events."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass

log = logging.getLogger("tokenlimit.gateway")


@dataclass(slots=True)
class GatewayStats:
    """Counters of what the gateway did (read them from any thread).

    ``no_usage``: 2xx answers without a ``usage`` object; ``estimated``: the reports among them
    charged by the documented estimate; ``drained``: answers read to their end after the client
    hung up; ``too_large``: requests refused with 431; ``bad_requests``: refused with 400;
    ``reports_spooled`` / ``reports_retried`` / ``reports_dropped``: reports kept for a retry,
    delivered by a retry, given up (spool full, or still spooled when the gateway stopped).
    """

    requests: int = 0
    unmatched: int = 0
    allowed: int = 0
    limited: int = 0
    service_errors: int = 0
    failed_open: int = 0
    failed_closed: int = 0
    upstream_errors: int = 0
    client_gone: int = 0
    reports: int = 0
    report_errors: int = 0
    no_usage: int = 0
    estimated: int = 0
    drained: int = 0
    too_large: int = 0
    bad_requests: int = 0
    reports_spooled: int = 0
    reports_retried: int = 0
    reports_dropped: int = 0

    def to_dict(self) -> dict[str, int]:
        """The counters as a JSON-ready mapping."""
        return asdict(self)


class ServiceHealth:
    """Logs a service outage once when it starts and once when it ends, not per request."""

    def __init__(self, fail_open: bool) -> None:
        self.fail_open = fail_open
        self.failing = False
        self.failures = 0
        self.incidents = 0

    def failure(self, what: str) -> None:
        """A call failed; the first failure of an incident is logged."""
        self.failures += 1
        if not self.failing:
            self.failing = True
            self.incidents += 1
            mode = "letting requests through (fail-open)" if self.fail_open else (
                "answering 503 (fail-closed)")
            log.warning("rate-limit service %s; %s until it answers again", what, mode)

    def success(self) -> None:
        """A call succeeded; an incident in progress ends (and that is logged)."""
        if self.failing:
            log.warning("rate-limit service answers again after %d failed calls", self.failures)
            self.failing = False
            self.failures = 0


@dataclass(frozen=True, slots=True)
class GatewayEvent:
    """What happened to one request, or to one usage report, for a live view.

    ``kind``: ``allowed``, ``limited``, ``failed_open``, ``failed_closed``, ``unmatched``
    (status: what the client got; ``None`` when it hung up), ``reported`` or
    ``report_failed`` (detail: the usage).
    """

    kind: str
    method: str
    path: str
    host: str
    keys: tuple[str, ...]
    status: int | None
    detail: str = ""


EventSink = Callable[[GatewayEvent], None]
