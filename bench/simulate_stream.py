"""Benchmark of `tokenlimit simulate --chunk-rows` on a trace larger than memory (prints figures).

    .venv/bin/python bench/simulate_stream.py [--requests 200000000] [--part 5000000]
                                              [--chunk-rows 2000000] [--compare 2000000]

Generates a time-ordered trace on the fly into a Parquet dataset (a folder of ``--part``-row
files, 10,000 keys, removed afterwards), then runs the whole CLI with ``--chunk-rows`` in a
subprocess and prints wall time, requests/s and the subprocess's peak resident memory against
the target (<= 2 GiB). Then checks exactness: the first ``--compare`` requests, replayed whole
in memory and streamed in chunks of ``--compare / 7`` rows, must give identical decisions.
The full run (200 million requests) took about a minute on the 2-core development machine
(2026-11-30) and takes 1.6 GiB of disk (in
``TMPDIR``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
from simulate import CLI_WRAPPER  # bench/simulate.py: the CLI, printing its peak memory

RULES = [{"rate_limit_key_regex": "regular-user.*", "redis_expired_seconds": 300,
          "fill_interval_second": 30, "tokens_per_fill": 50, "max_tokens": 200},
         {"rate_limit_key_regex": "subscriber.*", "redis_expired_seconds": 600,
          "fill_interval_second": 60, "tokens_per_fill": 100, "max_tokens": 1000}]
TARGET_GIB = 2.0


def _part(index: int, rows: int, rate: float) -> pl.DataFrame:
    """``rows`` requests after the previous parts, in time order (seeded per part)."""
    rng = np.random.default_rng(index)
    start = index * rows / rate
    ts = np.sort(start + rng.uniform(0, rows / rate, rows))
    users = np.array([f"regular-user-{i:05d}" for i in range(7000)]
                     + [f"subscriber-{i:05d}" for i in range(3000)])
    return pl.DataFrame({
        "id": np.arange(index * rows, (index + 1) * rows, dtype=np.int64),
        "ts": 1_700_000_000.0 + np.round(ts, 3),
        "key": pl.Series(users).gather(rng.integers(0, users.size, rows)),
        "latency": np.round(rng.exponential(2.0, rows), 3),
        "prompt_tokens": rng.integers(1, 500, rows),
        "completion_tokens": rng.integers(1, 120, rows),
    })


def _cli(*args: str) -> tuple[float, float, str]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", CLI_WRAPPER, "simulate", *args], check=True,
                          capture_output=True, text=True)
    peak = done.stderr.strip().splitlines()[-1].removesuffix(" MiB")
    return time.perf_counter() - started, float(peak), done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200_000_000)
    parser.add_argument("--part", type=int, default=5_000_000)
    parser.add_argument("--chunk-rows", type=int, default=2_000_000)
    parser.add_argument("--compare", type=int, default=2_000_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tokenlimit-stream-"))
    try:
        rules = work / "rules.json"
        rules.write_text(json.dumps(RULES))
        dataset = work / "trace"
        dataset.mkdir()
        parts = max(1, args.requests // args.part)
        rate = 2000.0  # requests per second of trace time
        started = time.perf_counter()
        for index in range(parts):
            _part(index, args.part, rate).write_parquet(dataset / f"part-{index:05d}.parquet")
        size = sum(p.stat().st_size for p in dataset.iterdir()) / 2**30
        total = parts * args.part
        print(f"generated {total:,} requests in {parts} Parquet files ({size:.1f} GiB) in "
              f"{time.perf_counter() - started:.0f} s")
        wall, peak, out = _cli(str(dataset), "-r", str(rules), "-f", "json", "--chunk-rows",
                               str(args.chunk_rows))
        report = json.loads(out)
        verdict = "met" if peak / 1024 <= TARGET_GIB else "not met"
        print(f"streamed in batches of {args.chunk_rows:,}: {wall:.1f} s, "
              f"{report['totals']['requests'] / wall / 1e6:.2f} M requests/s, "
              f"{report['totals']['limited_pct']:.1f}% limited; peak memory {peak:.0f} MiB "
              f"(target <= {TARGET_GIB:g} GiB: {verdict})")
        first = work / "first.parquet"
        pl.scan_parquet(dataset).head(args.compare).sink_parquet(first)
        _, _, _ = _cli(str(first), "-r", str(rules), "-f", "json", "--decisions",
                       str(work / "whole.jsonl"))
        _, _, _ = _cli(str(first), "-r", str(rules), "-f", "json", "--chunk-rows",
                       str(max(1, args.compare // 7)), "--decisions",
                       str(work / "streamed.jsonl"))
        same = (work / "whole.jsonl").read_bytes() == (work / "streamed.jsonl").read_bytes()
        print(f"first {args.compare:,} requests: streamed decisions identical to the in-memory "
              f"replay: {same}")
    finally:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
