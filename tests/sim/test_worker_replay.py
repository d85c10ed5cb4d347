"""Dask workers that read a Parquet trace themselves give the whole replay's report exactly,
or say they cannot (the client then reads the trace whole)."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from tests.conftest import SAMPLES
from tokenlimit.rules.sources import load_rules
from tokenlimit.sim.partition import Parallelism
from tokenlimit.sim.readers import read_trace
from tokenlimit.sim.simulation import simulate_on_workers, simulate_trace


def _dataset(folder: Path, frame: pl.DataFrame, files: int = 3) -> Path:
    folder.mkdir()
    size = -(-frame.height // files)
    for n in range(files):
        frame[n * size:(n + 1) * size].write_parquet(folder / f"part-{n}.parquet")
    return folder


def test_workers_reading_their_keys_report_what_one_replay_reports(
        tmp_path: Path, dask_scheduler: str) -> None:
    """Keys spread over three files and three workers, a key and its refill-time twin
    (one Redis entry: they must stay together, and the reference decides them), requests out
    of time order across files and lines answered 429: the same report, figure for figure."""
    rules = load_rules(SAMPLES / "rules.json").rules
    frame = pl.read_csv(SAMPLES / "trace.csv")
    twin = frame.head(40).with_columns(pl.lit(frame["key"][0] + "_last_fill_time")
                                       .alias("key"), pl.col("ts") + 0.5)
    frame = pl.concat([frame, twin], how="diagonal_relaxed").with_columns(
        pl.when(pl.int_range(pl.len()) % 7 == 0).then(pl.lit("429")).otherwise(pl.lit("200"))
        .alias("status")).reverse()
    frame.write_parquet(tmp_path / "whole.parquet")
    folder = _dataset(tmp_path / "dataset", frame)
    whole = simulate_trace(read_trace(tmp_path / "whole.parquet"), rules, top=1000)
    summary, limited = simulate_on_workers(
        str(folder), rules, Parallelism(3, "dask", dask_scheduler), top=1000) or (None, 0)
    assert summary is not None
    assert summary.to_dict() == whole.summaries[0][1].to_dict()
    assert summary.engine == "oracle"  # the twin's worker ran the reference
    assert limited == frame.filter(pl.col("status") == "429").height > 0
    assert summary.totals.requests == frame.height


def test_workers_decline_what_only_the_whole_trace_decides(tmp_path: Path,
                                                           dask_scheduler: str) -> None:
    """Usage to impute (one sequence of draws over the whole trace) and requests with
    several keys (coupled keys): ``None``, so the client reads the trace whole."""
    rules = load_rules(SAMPLES / "rules.json").rules
    parallel = Parallelism(2, "dask", dask_scheduler)
    frame = pl.read_csv(SAMPLES / "trace.csv")
    missing = frame.with_columns(pl.when(pl.int_range(pl.len()) == 3).then(None)
                                 .otherwise(pl.col("completion_tokens"))
                                 .alias("completion_tokens")).drop("total_tokens")
    coupled = frame.with_columns(pl.concat_list("key", pl.lit("tenant-a")).alias("keys")
                                 ).drop("key")
    for name, data in (("missing", missing), ("coupled", coupled)):
        folder = _dataset(tmp_path / name, data)
        assert simulate_on_workers(str(folder), rules, parallel) is None, name


def test_workers_without_keys_of_their_own_add_nothing(tmp_path: Path,
                                                       dask_scheduler: str) -> None:
    """One key, three workers: two replay nothing, and the report is still the whole one."""
    rules = load_rules(SAMPLES / "rules.json").rules
    frame = pl.read_csv(SAMPLES / "trace.csv")
    frame = frame.filter(pl.col("key") == frame["key"][0])
    frame.write_parquet(tmp_path / "whole.parquet")
    folder = _dataset(tmp_path / "dataset", frame, files=2)
    whole = simulate_trace(read_trace(tmp_path / "whole.parquet"), rules)
    on_workers = simulate_on_workers(str(folder), rules, Parallelism(3, "dask", dask_scheduler))
    assert on_workers is not None
    assert on_workers[0].to_dict() == whole.summaries[0][1].to_dict()
    assert on_workers[0].totals.requests == frame.height > 1
