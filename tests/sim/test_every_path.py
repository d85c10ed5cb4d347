"""Every path a trace can take (each reader, chunking, partitioning) decides exactly as the
event-by-event reference model (``replay_oracle``) on hypothesis-generated traces."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.sim.test_engine import rule_sets, traces
from tokenlimit.rules.model import Rule
from tokenlimit.sim import TraceRequest, replay_oracle
from tokenlimit.sim.chunked import trace_chunks
from tokenlimit.sim.engine import OUTCOME_NAMES
from tokenlimit.sim.partition import replay_partitioned
from tokenlimit.sim.readers import read_trace
from tokenlimit.sim.stream import StreamingReplay


def _write(folder: Path, requests: list[TraceRequest], fmt: str) -> Path:
    rows = [{"id": r.id, "ts": r.ts, "keys": list(r.keys), "latency": r.latency,
             "prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens}
            for r in requests]
    path = folder / f"t.{fmt}"
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    else:
        pl.DataFrame(rows, schema={"id": pl.Int64, "ts": pl.Float64, "keys": pl.List(pl.String),
                                   "latency": pl.Float64, "prompt_tokens": pl.Int64,
                                   "completion_tokens": pl.Int64}).write_parquet(path)
    return path


def _named(outcome: list[int], rule: list[int]) -> list[tuple[str, int | None]]:
    return [(OUTCOME_NAMES[o], None if r < 0 else r) for o, r in zip(outcome, rule, strict=True)]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rule_sets(), traces(), st.sampled_from(["jsonl", "parquet"]), st.integers(1, 9))
def test_each_reader_chunking_and_partitioning_decides_like_the_oracle(
        rules: list[Rule], requests: list[TraceRequest], fmt: str, rows: int) -> None:
    ordered = sorted(requests, key=lambda r: r.ts)  # streaming needs time order
    ordered = [TraceRequest(i, r.ts, r.keys, r.latency, r.prompt_tokens, r.completion_tokens,
                            r.total_tokens) for i, r in enumerate(ordered)]
    expected = [(d.outcome, d.rule) for d in replay_oracle(rules, ordered)]
    with tempfile.TemporaryDirectory() as folder:
        path = _write(Path(folder), ordered, fmt)
        trace = read_trace(path)
        partitioned = replay_partitioned(rules, trace, jobs=2, min_rows=0)
        stream = StreamingReplay(rules)
        streamed: list[tuple[str, int | None]] = []
        for _, chunk in trace_chunks(str(path), rows):
            replay = stream.feed(chunk)
            streamed += _named(replay.outcome.tolist(), replay.rule.tolist())
        stream.finish()
    assert _named(partitioned.outcome.tolist(), partitioned.rule.tolist()) == expected
    assert streamed == expected
