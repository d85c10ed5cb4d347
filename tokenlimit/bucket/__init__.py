"""The ASM service's semantics, written once: keyspace, check, report, multi-key check, reserve.

Everything that decides like the ASM example service takes its decisions from here: the
in-memory store of ``tokenlimit serve``, the event-by-event replay of ``tokenlimit simulate``,
loadtest's conformance check and the gateway's key templates. Faster engines (the numba scan in
``tokenlimit.sim.scan``, the Lua scripts in ``tokenlimit/service/lua``) are separate
implementations by necessity; each names the function here that it must equal and the property
test that holds it to it.
"""

from __future__ import annotations

from tokenlimit.bucket.key_templates import KeyTemplate, parse_key_templates, render_keys
from tokenlimit.bucket.limiter import AsmKeyspace, AsmLimiter, CheckResult
from tokenlimit.bucket.reserve import EstimatePolicy, ReserveBook

__all__ = [
    "AsmKeyspace",
    "AsmLimiter",
    "CheckResult",
    "EstimatePolicy",
    "KeyTemplate",
    "ReserveBook",
    "parse_key_templates",
    "render_keys",
]
