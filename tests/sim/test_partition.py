"""Partitioned replays (processes, a Dask cluster) equal the sequential one, exactly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from typer.testing import CliRunner

from tests.conftest import SAMPLES
from tests.sim.test_engine import rule_sets, traces
from tokenlimit.cli.main import app
from tokenlimit.rules.model import Rule
from tokenlimit.sim import TraceRequest
from tokenlimit.sim.engine import Replay, replay_asm
from tokenlimit.sim.generate import Tier, TraceSpec, generate_trace
from tokenlimit.sim.partition import (
    figures_partitioned,
    key_components,
    partition_requests,
    replay_partitioned,
)
from tokenlimit.sim.replay_stats import key_figures
from tokenlimit.sim.trace_table import Trace, trace_from_requests

RULES = str(SAMPLES / "rules.json")


def _same(a: Replay, b: Replay) -> None:
    for field in ("outcome", "rule", "key", "balance", "deepest"):
        assert getattr(a, field).tolist() == getattr(b, field).tolist(), field


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rule_sets(), traces())
def test_partitioned_replay_equals_the_sequential_one(rules: list[Rule],
                                                      requests: list[TraceRequest]) -> None:
    trace = trace_from_requests(requests)
    _same(replay_partitioned(rules, trace, jobs=3, min_rows=0), replay_asm(rules, trace))


def _same_figures(rules: list[Rule], trace: Trace, jobs: int, charge: str = "completion"
                  ) -> None:
    """The figures a report-only scan adds up (``jobs`` partitions) are those of the whole
    replay's decisions: per deciding key, counts by outcome, tokens admitted, first limited
    time, and each key's deepest debt."""
    replay = replay_asm(rules, trace, charge)  # type: ignore[arg-type]
    counts, first = key_figures(trace, replay, charge, len(trace.key_names))  # type: ignore[arg-type]
    found = figures_partitioned(rules, trace, charge, jobs, min_rows=0)  # type: ignore[arg-type]
    assert found is not None
    assert found[0].tolist() == counts.tolist()
    assert found[1].tolist() == first.tolist()
    assert found[2].tolist() == replay.deepest.tolist()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rule_sets(), traces())
def test_report_only_figures_equal_the_decisions_figures(rules: list[Rule],
                                                         requests: list[TraceRequest]) -> None:
    trace = trace_from_requests(requests)
    for jobs, charge in ((1, "completion"), (3, "completion"), (2, "total")):
        _same_figures(rules, trace, jobs, charge)


def test_keys_that_share_a_request_stay_in_one_partition() -> None:
    requests = [TraceRequest(0, 0.0, ("a", "b")), TraceRequest(1, 1.0, ("c",)),
                TraceRequest(2, 2.0, ("b", "d")), TraceRequest(3, 3.0, ("e",)),
                TraceRequest(4, 4.0, ("c",)), TraceRequest(5, 5.0, ())]
    trace = trace_from_requests(requests)
    assert key_components(trace).tolist() == [0, 0, 2, 0, 4]  # a b c d e: {a,b,d} {c} {e}
    # Largest component first, each to the lightest partition: {a,b,d} (2 requests) to the
    # first, {c} (2) to the second, {e} to the first (a tie); the keyless request decides
    # nothing and goes to the first.
    assert [p.tolist() for p in partition_requests(trace, 2)] == [[0, 2, 3, 5], [1, 4]]



def test_the_cli_on_two_processes_and_on_a_dask_cluster_decides_like_one(
        tmp_path: Path, dask_scheduler: str) -> None:
    runner = CliRunner()
    outputs = {}
    for name, extra in (("one", ["--jobs", "1"]), ("two", ["--jobs", "2"]),
                        ("dask", ["--jobs", "2", "--executor", "dask", "--scheduler",
                                  dask_scheduler])):
        out = tmp_path / f"{name}.jsonl"
        result = runner.invoke(app, ["simulate", str(SAMPLES / "trace.jsonl"), "-r", RULES,
                                     "-f", "json", "--decisions", str(out), *extra])
        assert result.exit_code == 0, result.output
        outputs[name] = (json.loads(result.stdout), out.read_text())
    assert outputs["two"] == outputs["one"] == outputs["dask"]
    assert outputs["one"][0]["totals"]["limited"] == 847


def test_scheduler_without_dask_is_a_usage_error() -> None:
    result = CliRunner().invoke(app, ["simulate", str(SAMPLES / "trace.jsonl"), "-r", RULES,
                                      "--scheduler", "tcp://127.0.0.1:1"])
    assert result.exit_code == 2
    assert "only with --executor dask" in result.stderr


def test_partitions_are_balanced_by_requests() -> None:
    requests = [TraceRequest(i, float(i), (f"k{i % 10}",)) for i in range(1000)]
    parts = partition_requests(trace_from_requests(requests), 2)
    assert [p.size for p in parts] == [500, 500]
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(1000))


def test_dask_partitions_equal_the_sequential_replay_on_many_traces(dask_scheduler: str) -> None:
    @settings(max_examples=15, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(rule_sets(), traces())
    def check(rules: list[Rule], requests: list[TraceRequest]) -> None:
        trace = trace_from_requests(requests)
        _same(replay_partitioned(rules, trace, jobs=2, executor="dask",
                                 scheduler=dask_scheduler), replay_asm(rules, trace))

    check()


@pytest.mark.parametrize("jobs", [2, 3, 7, 64, 200])
def test_partitions_of_many_words_of_checks_replay_exactly(jobs: int) -> None:
    """Thousands of checks over 400 keys: each partition's checks are a bit mask, 64 checks a
    word, prepared in blocks of whole words by as many threads; any number of partitions up
    to 64 (200 asked: 64 used) decides every check once, as one scan does."""
    trace = generate_trace(TraceSpec(duration=120.0, seed=3, tiers=(
        Tier("regular-user", users=400, rate=20.0),)))
    assert len(trace) > 64 * 16 and len(trace) % 64  # many words, the last one partial
    rules = [Rule(0, "regular-user.*", 200, 50, 30, 300)]
    _same(replay_partitioned(rules, trace, jobs=jobs, min_rows=0), replay_asm(rules, trace))
    _same_figures(rules, trace, jobs)
