"""Which columnar engine reads traces fastest here: polars or pyarrow (prints figures).

    .venv/bin/python bench/trace_engines.py [--requests 3000000]

Writes one trace (``id``, ``ts``, ``key``, ``latency``, token counts and three extra string
columns, as real exports have) as CSV, JSON Lines and Parquet, then times each engine reading
each file into numpy columns (ts, key codes, tokens), side by side in one run, best of three.
The reader in ``tokenlimit/sim/columnar.py`` uses the engine this prints as faster overall.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq


def _frame(n: int) -> pl.DataFrame:
    rng = np.random.default_rng(7)
    keys = np.array([f"user-{i}" for i in range(10_000)])
    return pl.DataFrame({
        "id": np.arange(n, dtype=np.int64),
        "ts": np.round(1_700_000_000 + np.sort(rng.uniform(0, 86_400, n)), 3),
        "key": keys[rng.integers(0, keys.size, n)],
        "latency": np.round(rng.uniform(0, 5, n), 3),
        "prompt_tokens": rng.integers(0, 2000, n),
        "completion_tokens": rng.integers(0, 800, n),
        "model": np.array(["qwen-max", "qwen-plus", "qwen-turbo"])[rng.integers(0, 3, n)],
        "route": np.array(["/v1/chat/completions", "/v1/completions"])[rng.integers(0, 2, n)],
        "region": np.array(["cn-hangzhou", "cn-beijing", "us-west-1"])[rng.integers(0, 3, n)],
    })


def _polars_columns(frame: pl.DataFrame) -> int:
    ts = frame["ts"].cast(pl.Float64).to_numpy()
    codes = frame["key"].cast(pl.Categorical).to_physical().to_numpy()
    tokens = frame["completion_tokens"].cast(pl.Int64).to_numpy()
    return int(ts.size + codes.size + tokens.size)


def _arrow_columns(table: pa.Table) -> int:
    ts = table["ts"].to_numpy()
    codes = pc.dictionary_encode(table["key"]).combine_chunks().indices.to_numpy()
    tokens = table["completion_tokens"].to_numpy()
    return int(ts.size + codes.size + tokens.size)


def _best(read: Callable[[], int]) -> float:
    times = []
    for _ in range(3):
        started = time.perf_counter()
        read()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3_000_000)
    args = parser.parse_args()
    n = args.requests
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        frame = _frame(n)
        csv, jsonl, parquet = folder / "t.csv", folder / "t.jsonl", folder / "t.parquet"
        frame.write_csv(csv)
        frame.write_ndjson(jsonl)
        frame.write_parquet(parquet)
        del frame
        readers: dict[str, dict[str, Callable[[], int]]] = {
            "CSV": {"polars": lambda: _polars_columns(pl.read_csv(csv)),
                    "pyarrow": lambda: _arrow_columns(pa_csv.read_csv(csv))},
            "JSON Lines": {"polars": lambda: _polars_columns(pl.read_ndjson(jsonl)),
                           "pyarrow": lambda: _arrow_columns(pa_json.read_json(jsonl))},
            "Parquet": {"polars": lambda: _polars_columns(pl.read_parquet(parquet)),
                        "pyarrow": lambda: _arrow_columns(pq.read_table(parquet))},
        }
        totals = {"polars": 0.0, "pyarrow": 0.0}
        print(f"{n:,} requests, id + 3 extra string columns; best of 3, seconds "
              "(to numpy columns)")
        for fmt, engines in readers.items():
            figures = {engine: _best(read) for engine, read in engines.items()}
            for engine, seconds in figures.items():
                totals[engine] += seconds
            print(f"  {fmt:<10}  polars {figures['polars']:6.2f} s "
                  f"({n / figures['polars'] / 1e6:5.1f} M/s)   pyarrow {figures['pyarrow']:6.2f} s "
                  f"({n / figures['pyarrow'] / 1e6:5.1f} M/s)")
        faster = min(totals, key=totals.__getitem__)
        print(f"all three formats: polars {totals['polars']:.2f} s, pyarrow "
              f"{totals['pyarrow']:.2f} s: {faster} is faster here")


if __name__ == "__main__":
    main()
