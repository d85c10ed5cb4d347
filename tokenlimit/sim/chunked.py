"""``simulate --chunk-rows N``: a trace larger than memory, replayed in one streaming pass.

A Parquet trace (a file, a folder of files or a glob) is read by polars in batches of ``N``
rows (only the trace's columns); a CSV or JSON Lines file (plain, gzip or zstd) in blocks of
about ``N`` lines, each read like a whole file. Each batch becomes a ``Trace`` and goes
through ``StreamingReplay``, whose decisions are the whole replay's. The
report's figures add up over batches; decisions are written as they come. Memory is the keys
plus one batch. Two things differ from reading the file whole, and are said in the README:
the file must be in time order, and a request without usage has its completion tokens drawn
from its batch's recorded usage (the whole-file reader draws from the whole file's).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from tokenlimit.bucket.types import Charge
from tokenlimit.errors import TraceError
from tokenlimit.rules.model import Rule
from tokenlimit.sim.columnar import Declined, build_trace
from tokenlimit.sim.replay_stats import Summary, key_figures, summary_from_figures
from tokenlimit.sim.stream import StreamingReplay
from tokenlimit.sim.trace_table import Trace

_COLUMNS = ("ts", "timestamp", "key", "keys", "latency", "prompt_tokens", "completion_tokens",
            "total_tokens", "input_length", "output_length", "id", "status")


@dataclass(frozen=True, slots=True)
class ChunkedResult:
    """The report, and how many requests had usage imputed or were recorded as 429."""

    summary: Summary
    requests: int
    recorded_429: int


def parquet_chunks(path: str, rows: int, *, key_field: str | None = None,
                   seed: int = 0) -> Iterator[tuple[int, Trace]]:
    """(first row, trace) for each batch of ``rows`` rows of a Parquet trace, in order."""
    import polars as pl

    try:
        frame = pl.scan_parquet(path)
        schema = frame.collect_schema()
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise TraceError(f"not a readable Parquet trace ({exc})".splitlines()[0],
                         path=path) from exc
    wanted = [c for c in schema if c in _COLUMNS or c == key_field]
    first = 0
    for batch in frame.select(wanted).collect_batches(chunk_size=rows):
        if batch.height == 0:
            continue
        try:
            trace = build_trace(batch, path, seed, key_field, first)
        except Declined:
            _locate(path, batch, first, key_field)
            raise TraceError("could not be read as a trace", path=path,
                             line=first + 1) from None
        yield first, trace
        first += batch.height


def trace_chunks(path: str, rows: int, *, key_field: str | None = None,
                 seed: int = 0) -> Iterator[tuple[int, Trace]]:
    """(first row, trace) for each batch of about ``rows`` requests of any trace file."""
    if is_parquet(path):
        yield from parquet_chunks(path, rows, key_field=key_field, seed=seed)
    else:
        yield from text_chunks(path, rows, key_field=key_field, seed=seed)


def text_chunks(path: str, rows: int, *, key_field: str | None = None,
                seed: int = 0) -> Iterator[tuple[int, Trace]]:
    """Batches of about ``rows`` lines of a CSV or JSON Lines file (plain, gzip or zstd),
    cut at line ends (a CSV line break inside quotes stays in its record); each batch is
    read like a whole file (the CSV header in front), errors name the file's line."""
    from tokenlimit.sim.readers import read_block, trace_format

    fmt, compression = trace_format(path)
    try:
        stream = _open_binary(path, compression)
    except OSError as exc:
        raise TraceError(f"cannot read: {exc.strerror or exc}", path=path) from exc
    with stream:
        header = stream.readline() if fmt == "csv" else b""
        first_row, first_line = 0, 2 if fmt == "csv" else 1
        hint = rows * 64  # bytes; adjusted to the lines seen
        while True:
            lines = stream.readlines(max(hint, 1))
            if not lines:
                return
            if fmt == "csv":
                while sum(line.count(b'"') for line in lines) % 2:
                    more = stream.readline()  # inside a quoted value: finish the record
                    if not more:
                        break
                    lines.append(more)
            data = b"".join(lines)
            hint = max(1, int(len(data) / len(lines) * rows))
            trace = read_block(path, fmt, header + data, key_field=key_field, seed=seed,
                               first_row=first_row, first_line=first_line)
            if len(trace):
                yield first_row, trace
            first_row += len(trace)
            first_line += data.count(b"\n")


def _open_binary(path: str, compression: str | None) -> Any:
    if compression == "gzip":
        import gzip

        return gzip.open(path, "rb")
    if compression == "zstd":
        import zstandard

        raw = open(path, "rb")  # noqa: SIM115 (closed with the reader)
        reader = zstandard.ZstdDecompressor().stream_reader(raw, closefd=True)
        return io.BufferedReader(reader)  # lines, which the decompressor does not give
    return open(path, "rb")


def _locate(path: str, batch: Any, first: int, key_field: str | None) -> None:
    from tokenlimit.sim.readers import check_rows

    check_rows(path, ((first + n, {k: v for k, v in row.items() if v is not None})
                      for n, row in enumerate(batch.iter_rows(named=True), start=1)),
               key_field)


def simulate_in_chunks(path: str, rules: Sequence[Rule], *, rows: int,
                       charge: Charge = "completion", key_field: str | None = None,
                       seed: int = 0, top: int = 10, price_per_1k: float | None = None,
                       decisions: IO[bytes] | None = None) -> ChunkedResult:
    """Replay a trace batch by batch; decisions as JSON Lines to ``decisions``."""
    stream = StreamingReplay(rules, charge)
    counts = np.zeros((0, 6), dtype=np.int64)
    first_limited = np.zeros(0)
    unmatched = np.zeros(6, dtype=np.int64)
    unmatched_first = np.inf
    imputed = requests = limited = 0
    for start, chunk in trace_chunks(path, rows, key_field=key_field, seed=seed):
        replay = stream.feed(chunk)
        n_keys = len(stream.names)
        chunk_counts, chunk_first = key_figures(chunk, replay, charge, n_keys)
        grow = n_keys - counts.shape[0]
        counts = np.vstack((counts, np.zeros((grow, 6), dtype=np.int64)))
        first_limited = np.append(first_limited, np.full(grow, np.inf))
        counts += chunk_counts[:n_keys]
        np.minimum(first_limited, chunk_first[:n_keys], out=first_limited)
        unmatched += chunk_counts[n_keys]
        unmatched_first = min(unmatched_first, float(chunk_first[n_keys]))
        imputed += chunk.imputed_count
        requests += len(chunk)
        if chunk.status is not None:
            limited += sum(1 for s in chunk.status if s == "429")
        if decisions is not None:
            decisions.write(_decision_lines(start, chunk, replay.outcome, replay.rule))
    deepest = stream.finish()
    summary = summary_from_figures(
        rules, stream.key_names, np.vstack((counts, unmatched)),
        np.append(first_limited, unmatched_first), deepest, engine="scan", imputed=imputed,
        charge=charge, top=top, price_per_1k=price_per_1k)
    return ChunkedResult(summary, requests, limited)


def _decision_lines(start: int, chunk: Trace, outcome: Any, rule: Any) -> bytes:
    if chunk.ids is None:
        from tokenlimit.sim.csvwrite import decision_lines

        return decision_lines(start, outcome, rule)
    names = ('"allow"', '"deny"', '"error"')
    return "".join(
        f'{{"id": {json.dumps(i)}, "outcome": {names[o]}, "rule": {"null" if r < 0 else r}}}\n'
        for i, o, r in zip(chunk.ids, outcome.tolist(), rule.tolist(), strict=True)).encode()


def is_parquet(path: str) -> bool:
    """A Parquet file, or a folder (or glob) of them."""
    lower = path.lower()
    return lower.endswith((".parquet", ".pq")) or Path(path).is_dir() or "*" in path
