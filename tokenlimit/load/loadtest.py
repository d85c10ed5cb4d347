"""One load test from start to report: run the plan (one or more workers), then conformance."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from tokenlimit.load.conformance import check_conformance
from tokenlimit.load.driver import LoadPlan, StopFlag
from tokenlimit.load.report import LoadReport
from tokenlimit.load.stats import RunStats
from tokenlimit.load.workers import run_workers
from tokenlimit.rules.model import Rule


def describe_load(plan: LoadPlan) -> str:
    """The load shape in a few words, for the report.

    >>> describe_load(LoadPlan("http://127.0.0.1:1", concurrency=4))
    'closed loop, 4 users'
    """
    if plan.shape == "closed":
        return f"closed loop, {plan.concurrency} users"
    assert plan.schedule is not None
    return f"open loop, {plan.schedule.describe()}"


def run_loadtest(plan: LoadPlan, *, workers: int = 1, rules: Sequence[Rule] | None = None,
                 tolerance: float = 0.001, stop: StopFlag | None = None,
                 on_tick: Callable[[RunStats, float], None] | None = None) -> LoadReport:
    """Run ``plan`` and build its report; with ``rules``, check conformance too."""
    result = run_workers(plan, workers, stop=stop, on_tick=on_tick)
    conformance = None
    if rules is not None:
        conformance = check_conformance(rules, result.observations, tolerance=tolerance)
    return LoadReport(result.stats, plan.target, plan.mode, describe_load(plan), workers, 1,
                      result.interrupted,
                      None if rules is None else [r.to_config() for r in rules], conformance)
