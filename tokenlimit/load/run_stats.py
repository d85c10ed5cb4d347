"""What a load run measured, as counts and histograms that merge exactly.

``RunStats`` is filled by the driver one request at a time and merged across workers,
runs or machines by adding counts: every figure of a merged report is what one run over all
the requests would have shown. Time series are keyed by absolute Unix second, so reports from
runs that overlapped in time line up when merged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from tokenlimit.load.histogram import LatencyHistogram

# What the target answered, as the report names it (the service's own decision is an
# ``Outcome``, allow/deny/error, in tokenlimit.bucket.types).
Answer = Literal["allowed", "limited", "error"]
ANSWERS: tuple[Answer, ...] = ("allowed", "limited", "error")


@dataclass(slots=True)
class KeyStats:
    """Per rate-limit key: requests, outcomes and completion tokens admitted."""

    requests: int = 0
    allowed: int = 0
    limited: int = 0
    errors: int = 0
    tokens_admitted: int = 0

    def merge(self, other: KeyStats) -> None:
        self.requests += other.requests
        self.allowed += other.allowed
        self.limited += other.limited
        self.errors += other.errors
        self.tokens_admitted += other.tokens_admitted

    def to_dict(self) -> dict[str, int]:
        return {"requests": self.requests, "allowed": self.allowed, "limited": self.limited,
                "errors": self.errors, "tokens_admitted": self.tokens_admitted}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> KeyStats:
        return cls(int(data["requests"]), int(data["allowed"]), int(data["limited"]),
                   int(data["errors"]), int(data["tokens_admitted"]))


@dataclass(slots=True)
class SecondStats:
    """One wall-clock second of a run (requests counted when their answer arrived)."""

    allowed: int = 0
    limited: int = 0
    errors: int = 0
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    tokens: dict[str, int] = field(default_factory=dict)

    def merge(self, other: SecondStats) -> None:
        self.allowed += other.allowed
        self.limited += other.limited
        self.errors += other.errors
        self.latency.merge(other.latency)
        for key, n in other.tokens.items():
            self.tokens[key] = self.tokens.get(key, 0) + n

    def to_dict(self) -> dict[str, Any]:
        return {"allowed": self.allowed, "limited": self.limited, "errors": self.errors,
                "latency": self.latency.to_dict(), "tokens": dict(sorted(self.tokens.items()))}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SecondStats:
        return cls(int(data["allowed"]), int(data["limited"]), int(data["errors"]),
                   LatencyHistogram.from_dict(data["latency"]),
                   {str(k): int(v) for k, v in data["tokens"].items()})


@dataclass(slots=True)
class RunStats:
    """Every count and histogram of one or more runs (see ``merge``)."""

    started: float = 0.0
    finished: float = 0.0
    sent: int = 0
    outcomes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ANSWERS, 0))
    statuses: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    by_outcome: dict[str, LatencyHistogram] = field(
        default_factory=lambda: {o: LatencyHistogram() for o in ANSWERS})
    ttfb: LatencyHistogram = field(default_factory=LatencyHistogram)
    lateness: LatencyHistogram = field(default_factory=LatencyHistogram)
    report_latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    report_statuses: dict[str, int] = field(default_factory=dict)
    keys: dict[str, KeyStats] = field(default_factory=dict)
    timeline: dict[int, SecondStats] = field(default_factory=dict)

    def record(self, key: str, outcome: Answer, status: int | str, latency: float,
               done: float, tokens: int = 0, ttfb: float | None = None) -> None:
        """One answered (or failed) request; ``status`` is the HTTP code or an error name."""
        self.outcomes[outcome] += 1
        code = str(status)
        if outcome == "error" and not isinstance(status, int):
            self.errors[code] = self.errors.get(code, 0) + 1
        else:
            self.statuses[code] = self.statuses.get(code, 0) + 1
        us = round(latency * 1e6)
        self.latency.record_us(us)
        self.by_outcome[outcome].record_us(us)
        if ttfb is not None:
            self.ttfb.record(ttfb)
        stats = self.keys.get(key)
        if stats is None:
            stats = self.keys[key] = KeyStats()
        stats.requests += 1
        second = self.timeline.get(int(done))
        if second is None:
            second = self.timeline[int(done)] = SecondStats()
        second.latency.record_us(us)
        if outcome == "allowed":
            stats.allowed += 1
            stats.tokens_admitted += tokens
            second.allowed += 1
            if tokens:
                second.tokens[key] = second.tokens.get(key, 0) + tokens
        elif outcome == "limited":
            stats.limited += 1
            second.limited += 1
        else:
            stats.errors += 1
            second.errors += 1

    def record_report(self, status: int | str, latency: float) -> None:
        """One usage report (service mode): its status and latency."""
        code = str(status)
        self.report_statuses[code] = self.report_statuses.get(code, 0) + 1
        self.report_latency.record(latency)

    @property
    def completed(self) -> int:
        return sum(self.outcomes.values())

    @property
    def duration(self) -> float:
        return max(self.finished - self.started, 0.0)

    def merge(self, other: RunStats) -> None:
        """Add ``other`` into this (exact; the run spans both time ranges)."""
        if other.sent == 0 and other.completed == 0 and other.started == 0.0:
            return
        empty = self.started == 0.0 and self.sent == 0 and self.completed == 0
        self.started = other.started if empty else min(self.started, other.started)
        self.finished = max(self.finished, other.finished)
        self.sent += other.sent
        for name in ANSWERS:
            self.outcomes[name] += other.outcomes[name]
            self.by_outcome[name].merge(other.by_outcome[name])
        for mine, theirs in ((self.statuses, other.statuses), (self.errors, other.errors),
                             (self.report_statuses, other.report_statuses)):
            for code, n in theirs.items():
                mine[code] = mine.get(code, 0) + n
        self.latency.merge(other.latency)
        self.ttfb.merge(other.ttfb)
        self.lateness.merge(other.lateness)
        self.report_latency.merge(other.report_latency)
        for key, stats in other.keys.items():
            self.keys.setdefault(key, KeyStats()).merge(stats)
        for second, stats2 in other.timeline.items():
            self.timeline.setdefault(second, SecondStats()).merge(stats2)

    def to_dict(self) -> dict[str, Any]:
        """The exact state (histograms with their buckets), for ``--output`` and merging."""
        return {
            "started": self.started,
            "finished": self.finished,
            "sent": self.sent,
            "outcomes": dict(self.outcomes),
            "statuses": dict(sorted(self.statuses.items())),
            "errors": dict(sorted(self.errors.items())),
            "latency": self.latency.to_dict(),
            "latency_by_outcome": {o: self.by_outcome[o].to_dict() for o in ANSWERS},
            "ttfb": self.ttfb.to_dict(),
            "send_lateness": self.lateness.to_dict(),
            "report_latency": self.report_latency.to_dict(),
            "report_statuses": dict(sorted(self.report_statuses.items())),
            "keys": {k: self.keys[k].to_dict() for k in sorted(self.keys)},
            "timeline": {str(s): self.timeline[s].to_dict() for s in sorted(self.timeline)},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunStats:
        """Read ``to_dict``'s output (``KeyError``/``ValueError``/``TypeError`` on bad shape)."""
        raw = data["latency_by_outcome"]
        by_outcome = {str(o): LatencyHistogram.from_dict(raw[o]) for o in ANSWERS}
        return cls(
            started=float(data["started"]), finished=float(data["finished"]),
            sent=int(data["sent"]),
            outcomes={o: int(data["outcomes"][o]) for o in ANSWERS},
            statuses={str(k): int(v) for k, v in data["statuses"].items()},
            errors={str(k): int(v) for k, v in data["errors"].items()},
            latency=LatencyHistogram.from_dict(data["latency"]),
            by_outcome=by_outcome,
            ttfb=LatencyHistogram.from_dict(data["ttfb"]),
            lateness=LatencyHistogram.from_dict(data["send_lateness"]),
            report_latency=LatencyHistogram.from_dict(data["report_latency"]),
            report_statuses={str(k): int(v) for k, v in data["report_statuses"].items()},
            keys={str(k): KeyStats.from_dict(v) for k, v in data["keys"].items()},
            timeline={int(s): SecondStats.from_dict(v) for s, v in data["timeline"].items()},
        )
