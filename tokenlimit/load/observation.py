"""What the generator saw of one request: the record conformance checks are made from."""

from __future__ import annotations

from dataclasses import dataclass

from tokenlimit.load.run_stats import Answer


@dataclass(slots=True)
class Observation:
    """One request as the generator saw it (wall-clock seconds), for conformance.

    ``report_lo``/``report_hi``: the window in which its usage report reached the service
    (``None`` when none was sent); ``tokens``: completion tokens reported, or planned.
    """

    index: int
    key: str
    sent: float
    done: float
    outcome: Answer
    tokens: int
    report_lo: float | None = None
    report_hi: float | None = None
