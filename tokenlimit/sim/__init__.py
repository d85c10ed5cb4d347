"""Traces, limiter algorithms, the replay engine and statistics. Pure: no I/O but files.

This package's namespace stays light (no numpy or numba at import): the replay engine lives in
``tokenlimit.sim.engine``, traces in ``tokenlimit.sim.readers`` / ``trace``, the what-if
algorithms in ``tokenlimit.sim.algorithms``.
"""

from __future__ import annotations

from tokenlimit.sim.asm import AsmKeyspace, AsmLimiter, CheckResult
from tokenlimit.sim.keys import KeyTemplate, parse_key_templates, render_keys
from tokenlimit.sim.model import Charge, Decision, Outcome, TraceRequest
from tokenlimit.sim.oracle import replay_oracle

__all__ = [
    "AsmKeyspace",
    "AsmLimiter",
    "Charge",
    "CheckResult",
    "Decision",
    "KeyTemplate",
    "Outcome",
    "TraceRequest",
    "parse_key_templates",
    "render_keys",
    "replay_oracle",
]
