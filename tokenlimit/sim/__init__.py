"""Traces, limiter algorithms, the replay engine and statistics. Pure: no I/O but files.

This package's namespace stays light (no numpy or numba at import): the replay engine lives in
``tokenlimit.sim.engine``, traces in ``tokenlimit.sim.readers`` / ``trace``, the what-if
algorithms in ``tokenlimit.sim.algorithms``.
"""

from __future__ import annotations

from tokenlimit.sim.oracle import replay_oracle
from tokenlimit.sim.records import Decision, TraceRequest

__all__ = [
    "Decision",
    "TraceRequest",
    "replay_oracle",
]
