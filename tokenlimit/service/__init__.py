"""The rate-limit service: a drop-in replacement for the ASM example (``tokenlimit serve``).

It speaks the example's API (``/ratelimit?ratelimit_keys=[...]`` and
``/update_ratelimit_record``), reads the same configuration, keeps the same Redis layout and
arithmetic, and adds ``/healthz``, ``/readyz`` and ``/metrics``.

Python API (stable; other tokenlimit commands and tests use it)::

    from tokenlimit.service import ManualClock, ServiceOptions, running_service
    from tokenlimit.rules import load_rules

    clock = ManualClock(1_700_000_000.0)            # optional; default is the real clock
    with running_service(load_rules("samples/rules.json"), port=0, clock=clock) as svc:
        svc.url                                     # "http://127.0.0.1:PORT", no slash
        # GET f"{svc.url}/ratelimit?ratelimit_keys=..." etc.
        clock.advance(30)                           # the memory store sees the new time
        svc.set_rules(new_rules)                    # reload, keeping bucket state

``running_service(rules, *, host="127.0.0.1", port=0, options=None, backend=None, clock=None,
log=None)`` serves in a background thread and stops it (connections, loop, thread) on exit.
``rules``: a ``LoadedRules`` or a sequence of ``Rule``. ``options``: ``ServiceOptions`` (the
defaults are the example's behaviour). ``backend``: ``BackendConfig`` (default memory; see
``backend_config`` for the example's environment variables). ``clock``: a callable giving Unix
seconds; with Redis it is passed to the scripts instead of Redis ``TIME``. ``log``: called as
``log(event, **fields)`` for each incident.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tokenlimit._lazy import lazy_exports

if TYPE_CHECKING:
    from tokenlimit.bucket.reserve import EstimatePolicy
    from tokenlimit.service.app import RateLimitApp, ServiceOptions
    from tokenlimit.service.clock import ManualClock
    from tokenlimit.service.runner import (
        BackendConfig,
        RunningService,
        backend_config,
        build_store,
        running_service,
    )
else:
    __getattr__, __dir__ = lazy_exports(__name__, {
        "tokenlimit.service.app": ("RateLimitApp", "ServiceOptions"),
        "tokenlimit.service.clock": ("ManualClock",),
        "tokenlimit.bucket.reserve": ("EstimatePolicy",),
        "tokenlimit.service.runner": ("BackendConfig", "RunningService", "backend_config",
                                      "build_store", "running_service"),
    })

__all__ = [
    "BackendConfig",
    "EstimatePolicy",
    "ManualClock",
    "RateLimitApp",
    "RunningService",
    "ServiceOptions",
    "backend_config",
    "build_store",
    "running_service",
]
