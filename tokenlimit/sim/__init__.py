"""Traces, limiter algorithms, the replay engine and statistics. Pure: no I/O but files."""

from __future__ import annotations

from tokenlimit.sim.asm import AsmKeyspace, AsmLimiter, CheckResult

__all__ = ["AsmKeyspace", "AsmLimiter", "CheckResult"]
