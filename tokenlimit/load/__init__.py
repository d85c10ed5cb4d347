"""Load generation: shapes, the async driver, latency histograms, reports, conformance.

Usable as a library (the ``tokenlimit loadtest`` command is a thin layer over it)::

    from tokenlimit.load import ConstantRate, KeySpec, LoadPlan, run_loadtest
    plan = LoadPlan("http://127.0.0.1:8080", mode="service", shape="open",
                    schedule=ConstantRate(100), requests=500, observe=True,
                    keys=(KeySpec("user-type", "regular-user", 1),))
    report = run_loadtest(plan, rules=rules)     # rules: Rule values, for conformance
    report.to_dict()                             # the documented JSON report

Only ``tokenlimit.cli`` imports the terminal libraries; nothing here prints.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tokenlimit._lazy import lazy_exports

if TYPE_CHECKING:
    from tokenlimit.load.conformance import Conformance, check_conformance
    from tokenlimit.load.driver import LoadPlan, RunResult, run
    from tokenlimit.load.histogram import LatencyHistogram
    from tokenlimit.load.loadtest import run_loadtest
    from tokenlimit.load.modes import KeySpec, Range
    from tokenlimit.load.observation import Observation
    from tokenlimit.load.run_report import LoadReport, format_report, merge_reports, read_report
    from tokenlimit.load.run_stats import RunStats
    from tokenlimit.load.schedule import ConstantRate, PoissonRate, ReplaySchedule, SteppedRamp
else:
    __getattr__, __dir__ = lazy_exports(__name__, {
        "tokenlimit.load.conformance": ("Conformance", "check_conformance"),
        "tokenlimit.load.driver": ("LoadPlan", "RunResult", "run"),
        "tokenlimit.load.histogram": ("LatencyHistogram",),
        "tokenlimit.load.loadtest": ("run_loadtest",),
        "tokenlimit.load.modes": ("KeySpec", "Range"),
        "tokenlimit.load.observation": ("Observation",),
        "tokenlimit.load.run_report": ("LoadReport", "format_report", "merge_reports",
                                       "read_report"),
        "tokenlimit.load.schedule": ("ConstantRate", "PoissonRate", "ReplaySchedule",
                                     "SteppedRamp"),
        "tokenlimit.load.run_stats": ("RunStats",),
    })

__all__ = [
    "Conformance",
    "ConstantRate",
    "KeySpec",
    "LatencyHistogram",
    "LoadPlan",
    "LoadReport",
    "Observation",
    "PoissonRate",
    "Range",
    "ReplaySchedule",
    "RunResult",
    "RunStats",
    "SteppedRamp",
    "check_conformance",
    "format_report",
    "merge_reports",
    "read_report",
    "run",
    "run_loadtest",
]
