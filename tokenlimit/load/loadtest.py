"""One load test from start to report: run the plan (one or more workers), then conformance."""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Callable, Iterator, Sequence
from typing import IO

from tokenlimit.errors import TraceError
from tokenlimit.load.conformance import check_conformance
from tokenlimit.load.driver import LoadPlan, StopFlag
from tokenlimit.load.modes import has_control
from tokenlimit.load.multiprocess import run_workers
from tokenlimit.load.run_report import LoadReport
from tokenlimit.load.run_stats import RunStats
from tokenlimit.rules.model import Rule
from tokenlimit.sim.records import TraceRequest
from tokenlimit.sim.text_dataset import joined_text
from tokenlimit.sim.trace_sources import (
    decompressing,
    is_dataset,
    is_url,
    text_files,
    trace_format,
)
from tokenlimit.sim.trace_table import Trace


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


def replay_requests(trace: Trace) -> tuple[TraceRequest, ...]:
    """A trace's requests in replay order (by time, ties in file order), for ``--replay``.

    A load test sends one key per request (the value of one header, or one key to the
    service), so a request with no key or several, or a key with a control character (CR,
    LF, ...), is a ``TraceError`` naming its line.
    """
    if len(trace) == 0:
        raise TraceError("no requests in the trace", path=trace.path)
    counts = trace.key_ptr[1:] - trace.key_ptr[:-1]
    bad = [i for i, n in enumerate(counts.tolist()) if n != 1]
    if bad:
        n = int(counts[bad[0]])
        problem = ("has no key" if n == 0 else
                   f"has {n} keys; a load test sends one key per request "
                   "(give one key, or one --key-template)")
        raise _located(TraceError(problem, path=trace.path, field="keys"), bad[0])
    for k, name in enumerate(trace.key_names):
        if has_control(name):
            first = int((trace.key_index == k).argmax())  # one key per request: row == request
            raise _located(TraceError(f"{name!r} holds a control character (it goes in a "
                                      "header)", path=trace.path, field="key"), first)
    requests = trace.requests()
    order = trace.time_order()
    if order is not None:
        requests = [requests[i] for i in order.tolist()]
    return tuple(requests)


def _located(exc: TraceError, index: int) -> TraceError:
    """``exc`` about the ``index``-th request of its trace, naming the file and line it is
    on: in a folder or glob of CSV or JSON Lines files, the file of the folder."""
    path = exc.path or ""
    if is_dataset(path) and not is_url(path):
        try:
            files = text_files(path)
            joined = joined_text(path, files) if files else None
        except TraceError:
            joined = None
        if joined is not None:
            stream = io.TextIOWrapper(io.BytesIO(joined.data), encoding="utf-8-sig",
                                      newline="")
            line = _nth_line(stream, joined.fmt == "csv", index)
            return joined.located(TraceError(exc.message, path=path, line=line,
                                             field=exc.field), path)
    return TraceError(exc.message, path=path, line=trace_line(path, index), field=exc.field)


def trace_line(path: str, index: int) -> int | None:
    """The 1-based line of the ``index``-th request of a trace file, numbered as the
    simulator's readers number it (blank lines skipped; CSV: after the header); plain,
    ``.gz`` or ``.zst`` as the readers take them (``None`` for Parquet, which has no lines)."""
    kind, compression = trace_format(path)
    if kind == "parquet":
        return None
    try:
        with open(path, "rb") as raw, decompressing(raw, compression) as binary:
            stream = io.TextIOWrapper(binary, encoding="utf-8-sig", newline="")
            return _nth_line(stream, kind == "csv", index)
    except (OSError, ValueError, EOFError):
        return None


def _nth_line(stream: IO[str], csv_file: bool, index: int) -> int | None:
    lines = _csv_lines(stream) if csv_file else _jsonl_lines(stream)
    return next(itertools.islice(lines, index, None), None)


def _jsonl_lines(stream: IO[str]) -> Iterator[int]:
    for number, text in enumerate(stream, start=1):
        if text.strip():
            yield number


def _csv_lines(stream: IO[str]) -> Iterator[int]:
    reader = csv.reader(stream)
    next(reader, None)
    for row in reader:
        if row and not (len(row) == 1 and not row[0].strip()):
            yield reader.line_num
