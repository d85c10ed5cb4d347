"""Traces, limiter algorithms, the replay engine and statistics. Pure: no I/O but files."""

from __future__ import annotations

from tokenlimit.sim.asm import AsmKeyspace, AsmLimiter, CheckResult
from tokenlimit.sim.model import Charge, Decision, Outcome, TraceRequest
from tokenlimit.sim.oracle import replay_oracle

__all__ = [
    "AsmKeyspace",
    "AsmLimiter",
    "Charge",
    "CheckResult",
    "Decision",
    "Outcome",
    "TraceRequest",
    "replay_oracle",
]
