"""The ASM service's semantics, written once: keyspace, check, report, multi-key check, reserve.

Everything that decides like the ASM example service takes its decisions from here: the
in-memory store of ``tokenlimit serve``, the event-by-event replay of ``tokenlimit simulate``,
loadtest's conformance check and the gateway's key templates. Where each behaviour is defined:

============================  ==============================================================
behaviour                     defined by
============================  ==============================================================
Redis keys and expiry         ``keyspace.AsmKeyspace``
one key's check (Lua)         ``script.check_script`` (refill arithmetic: ``script.refill``)
several keys in one check     ``multikey.multi_key_check`` (first limited key ends it)
retry-after                   ``script.KeyCheck.retry_after``
usage report (DECRBY)         ``limiter.AsmLimiter.report``
``serve --mode reserve``      ``reserve.ReserveLimiter`` (``simulate --semantics asm-reserve``)
key templates                 ``key_templates.KeyTemplate``
outcomes, charge, usage       ``types``
============================  ==============================================================

Faster engines (the numba scan in ``tokenlimit.sim.scan``, the Lua scripts in
``tokenlimit/service/lua``) are separate implementations by necessity; each names the function
here that it must equal and the property test that holds it to it.
"""

from __future__ import annotations

from tokenlimit.bucket.key_templates import KeyTemplate, parse_key_templates, render_keys
from tokenlimit.bucket.keyspace import AsmKeyspace
from tokenlimit.bucket.limiter import AsmLimiter
from tokenlimit.bucket.multikey import CheckResult
from tokenlimit.bucket.reserve import EstimatePolicy, ReserveLimiter
from tokenlimit.bucket.types import Charge, Outcome, Usage

__all__ = [
    "AsmKeyspace",
    "AsmLimiter",
    "Charge",
    "CheckResult",
    "EstimatePolicy",
    "KeyTemplate",
    "Outcome",
    "ReserveLimiter",
    "Usage",
    "parse_key_templates",
    "render_keys",
]
