"""One simulation: a trace through rules (or through each setting of a sweep), with figures.

This is what ``tokenlimit simulate`` runs between reading its inputs and rendering; it is
usable as a library:

>>> from tokenlimit.rules.model import Rule
>>> from tokenlimit.sim import TraceRequest
>>> from tokenlimit.sim.trace_table import trace_from_requests
>>> trace = trace_from_requests([TraceRequest(0, 0.0, ("u",), 0.0, completion_tokens=60),
...                              TraceRequest(1, 1.0, ("u",))])
>>> result = simulate_trace(trace, [Rule(0, "u", 100, 50, 60, 600)])
>>> result.summaries[0][1].totals.limited, result.replay is not None
(1, True)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tokenlimit.bucket.reserve import EstimatePolicy
from tokenlimit.bucket.types import Charge
from tokenlimit.errors import ConfigError
from tokenlimit.rules import LoadedRules, Severity, lint
from tokenlimit.rules.model import Rule
from tokenlimit.sim.algorithms import ALGORITHMS
from tokenlimit.sim.engine import Replay
from tokenlimit.sim.partition import Parallelism
from tokenlimit.sim.replay_stats import Summary, summarize, summary_from_figures
from tokenlimit.sim.sweep import Setting, sweep_rules
from tokenlimit.sim.trace_table import Trace


@dataclass(frozen=True, slots=True, eq=False)
class SimulationResult:
    """``summaries``: (setting label, figures) per variant; one unlabelled entry without a
    sweep. ``replay`` and ``rules``: the decisions and rules of a single run (``None`` and
    the base rules for a sweep, which keeps figures only; ``replay`` may be ``None`` too when
    decisions were not asked for)."""

    rules: tuple[Rule, ...]
    replay: Replay | None
    summaries: tuple[tuple[str, Summary], ...]


def simulate_trace(trace: Trace, rules: Sequence[Rule], *, semantics: str = "asm",
                   charge: Charge = "completion", settings: Sequence[Setting] = (),
                   top: int = 10, price_per_1k: float | None = None,
                   origin: str = "<rules>", estimate: EstimatePolicy | None = None,
                   on_step: Callable[[str], None] | None = None,
                   parallel: Parallelism | None = None,
                   decisions: bool = True) -> SimulationResult:
    """Replay ``trace`` through ``rules`` (each sweep setting in turn) and summarize.

    ``estimate``: the reservation policy of ``asm-reserve`` (serve's ``--estimate``).
    ``parallel``: replay ``asm`` on several partitions (``sim/partition.py``).
    ``decisions=False``: only the figures are needed (``replay`` is then ``None``); the
    ``asm`` scan adds them up as it decides instead of writing each request's decision.
    ``ConfigError`` for an unknown semantics or a sweep setting the service would refuse.
    """
    if semantics not in ALGORITHMS:
        raise ConfigError(f"unknown semantics {semantics!r}: choose one of "
                          f"{', '.join(ALGORITHMS)}")
    variants = sweep_rules(rules, settings) if settings else [("", tuple(rules))]
    for label, variant in variants:
        errors = [f for f in lint(LoadedRules(variant, (), origin))
                  if f.severity is Severity.ERROR]
        if errors:
            raise ConfigError(f"--set {label}: {errors[0].message}")
    algorithm = ALGORITHMS[semantics]
    summaries = []
    replay: Replay | None = None
    figures_only = semantics == "asm" and (not decisions or bool(settings)) and (
        parallel is None or parallel.executor == "local")
    for label, variant in variants:
        summary = _figures_only(variant, trace, charge, parallel, top,
                                price_per_1k) if figures_only else None
        if summary is None:
            if semantics == "asm" and parallel is not None and parallel.jobs > 1:
                from tokenlimit.sim.partition import replay_partitioned

                replay = replay_partitioned(variant, trace, charge, parallel.jobs,
                                            parallel.executor, parallel.scheduler)
            else:
                replay = algorithm.replay(variant, trace, charge, estimate)
            summary = summarize(variant, trace, replay, semantics=semantics, charge=charge,
                                top=top, price_per_1k=price_per_1k)
        summaries.append((label, summary))
        if settings:
            replay = None  # a sweep keeps each setting's figures, not its decisions
        if on_step is not None:
            on_step("replaying")
    return SimulationResult(tuple(rules), replay, tuple(summaries))


def _figures_only(rules: Sequence[Rule], trace: Trace, charge: Charge,
                  parallel: Parallelism | None, top: int,
                  price_per_1k: float | None) -> Summary | None:
    """The ``asm`` report from the scan's figures alone (``None``: the oracle must replay)."""
    from tokenlimit.sim.partition import figures_partitioned

    jobs = parallel.jobs if parallel is not None else 1
    figures = figures_partitioned(rules, trace, charge, jobs)
    if figures is None:
        return None
    counts, first, deepest = figures
    return summary_from_figures(rules, trace.key_names, counts, first, deepest,
                                engine="scan", imputed=trace.imputed_count, charge=charge,
                                top=top, price_per_1k=price_per_1k)


def simulate_on_workers(path: str, rules: Sequence[Rule], parallel: Parallelism, *,
                        charge: Charge = "completion", top: int = 10,
                        price_per_1k: float | None = None, key_field: str | None = None,
                        seed: int = 0) -> tuple[Summary, int] | None:
    """(the report, how many requests were answered 429 when recorded) of the Parquet trace
    at ``path`` replayed by Dask workers that read it themselves (``worker_replay.py``), or
    ``None`` when the trace must be read whole and shipped (``simulate_trace``)."""
    from tokenlimit.sim.partition import dask_client
    from tokenlimit.sim.worker_replay import replay_on_workers

    with dask_client(parallel.scheduler, parallel.jobs) as client:
        figures = replay_on_workers(path, rules, charge, parallel.jobs, client,
                                    key_field=key_field, seed=seed)
    if figures is None or figures.requests == 0:
        return None  # the whole trace's reader says what is wrong
    summary = summary_from_figures(rules, figures.key_names, figures.counts, figures.first,
                                   figures.deepest, engine=figures.engine, imputed=0,
                                   charge=charge, top=top, price_per_1k=price_per_1k)
    return summary, figures.recorded_429
