"""``simulate --chunk-rows N``: a trace larger than memory, replayed in one streaming pass.

A Parquet trace (a file, a folder of files or a glob; local or at a URL) is read by polars in
batches of ``N`` rows (only the trace's columns); a CSV or JSON Lines file (plain, gzip or
zstd) in blocks of about ``N`` lines, each read like a whole file. A gateway log (``--from`` /
``--map``) is read the same way, each batch through the log's field map. Each batch becomes
a ``Trace`` and goes through ``StreamingReplay``, whose decisions are the whole replay's. The
report's figures add up over batches; decisions are written (in file order) as they come.
Memory is the keys plus two batches. One thing differs from reading the file whole: the file
must be in time order up to less than a batch (``stream_order.py``: a log written at response
end is). Requests without usage (lines answered 429) get exactly the whole replay's imputed
usage, at the price of reading the trace three times (``stream_imputation.py``); a trace
where every request has its usage is read once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

from tokenlimit.bucket.types import Charge
from tokenlimit.errors import TraceError
from tokenlimit.rules.model import Rule
from tokenlimit.sim.columnar import Declined, build_trace
from tokenlimit.sim.engine import Replay
from tokenlimit.sim.log_fields import FieldMap
from tokenlimit.sim.log_reader import limited_count, log_columns, read_log, read_log_batch
from tokenlimit.sim.replay_stats import Summary, key_figures, summary_from_figures
from tokenlimit.sim.stream import StreamingReplay
from tokenlimit.sim.stream_imputation import ImputationTally
from tokenlimit.sim.stream_order import FileOrderDecisions, TimeOrder
from tokenlimit.sim.stream_plot import ChartRequests
from tokenlimit.sim.trace_sources import (
    FileStarts,
    decompressing,
    is_dataset,
    is_parquet_name,
    is_url,
    open_raw,
    parquet_files,
    text_files,
)
from tokenlimit.sim.trace_table import IntArray, Trace


@dataclass(frozen=True, slots=True)
class ChunkedResult:
    """The report, how many requests there were and how many were recorded as 429, every
    key (first-appearance order) and, when asked for, the chart's requests."""

    summary: Summary
    requests: int
    recorded_429: int
    key_names: tuple[str, ...] = ()
    chart: tuple[Trace, Replay] | None = None  # what the replay chart draws


def parquet_chunks(path: str, rows: int, *, key_field: str | None = None, seed: int = 0,
                   fields: FieldMap | None = None, starts: FileStarts | None = None
                   ) -> Iterator[tuple[int, Trace]]:
    """(first row, trace) for each batch of ``rows`` rows of a Parquet trace or log (a file,
    folder or glob), in order. A dataset is read file by file: its files may store a column
    in different types (Int32 here, Int64 there), which one scan of them all refuses.
    ``starts``: as ``trace_chunks``'."""
    first = 0
    dataset = is_dataset(path)
    for file in parquet_files(path) if dataset else [path]:
        if starts is not None and dataset:
            starts.add(first, file)
        with contextlib.nullcontext(file) if not is_url(file) else open_raw(file) as source:
            for start, trace in _parquet_batches(file, source, rows, key_field, seed, fields,
                                                 first):
                yield start, dataclasses.replace(trace, path=path)
                first = start + len(trace)


def _parquet_batches(path: str, source: Any, rows: int, key_field: str | None, seed: int,
                     fields: FieldMap | None, first: int) -> Iterator[tuple[int, Trace]]:
    """The batches of the Parquet file ``path`` (``source``: it, or its bytes), whose first
    row is the ``first`` request of its dataset; errors name the file and its row."""
    import polars as pl

    from tokenlimit.sim.readers import trace_columns

    file_start = first
    try:
        frame = pl.scan_parquet(source)
        schema = frame.collect_schema()
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise TraceError(f"not a readable Parquet trace ({exc})".splitlines()[0],
                         path=path) from exc
    if fields is not None:
        wanted = log_columns(list(schema), fields)
    else:
        wanted = trace_columns(list(schema), key_field)
    batches = frame.select(wanted).collect_batches(chunk_size=rows)
    while True:
        try:
            batch = next(batches, None)
        except pl.exceptions.PolarsError as exc:
            raise TraceError(f"not a readable Parquet trace ({exc})".splitlines()[0],
                             path=path) from exc
        if batch is None:
            break
        if batch.height == 0:
            continue
        if fields is not None:
            trace = read_log_batch(path, batch, fields, seed, first, first - file_start)
        else:
            try:
                trace = build_trace(batch, path, seed, key_field, first)
            except Declined:  # as for a whole file: the per-row reader's trace, or its error
                trace = _batch_rows(path, batch, first, first - file_start, key_field, seed)
        yield first, trace
        first += batch.height


def trace_chunks(path: str, rows: int, *, key_field: str | None = None, seed: int = 0,
                 fields: FieldMap | None = None, starts: FileStarts | None = None
                 ) -> Iterator[tuple[int, Trace]]:
    """(first row, trace) for each batch of about ``rows`` requests of any trace file (or
    gateway log, with ``fields``), local or at a URL. ``starts``: noted where each file of
    a dataset starts, as it is read."""
    dataset = not is_parquet_name(path) and is_dataset(path)  # asked once: a remote store
    files = text_files(path) if dataset else None  # None: a Parquet dataset
    if is_parquet_name(path) or (dataset and files is None):
        yield from parquet_chunks(path, rows, key_field=key_field, seed=seed, fields=fields,
                                  starts=starts)
    elif files is not None:  # a folder or glob of text files: one after the other
        from tokenlimit.sim.text_dataset import dataset_format

        dataset_format(path, files)  # one format, one CSV header: as the whole read
        offset = 0
        for file in files:
            if starts is not None:
                starts.add(offset, file)
            for start, trace in text_chunks(file, rows, key_field=key_field, seed=seed,
                                            fields=fields, first_row=offset):
                yield start, dataclasses.replace(trace, path=path)  # requests numbered
                offset = start + len(trace)  # across files: the dataset's, not the file's
    else:
        yield from text_chunks(path, rows, key_field=key_field, seed=seed, fields=fields)


def text_chunks(path: str, rows: int, *, key_field: str | None = None, seed: int = 0,
                fields: FieldMap | None = None, first_row: int = 0
                ) -> Iterator[tuple[int, Trace]]:
    """Batches of about ``rows`` lines of a CSV or JSON Lines file (plain, gzip or zstd),
    cut at line ends (a CSV line break inside quotes stays in its record); each batch is
    read like a whole file (the CSV header in front), errors name the file's line.
    ``first_row``: the file's first request's position (in a folder of files)."""
    from tokenlimit.sim.readers import trace_format

    fmt, compression = trace_format(path)
    try:
        raw = open_raw(path)
    except OSError as exc:
        raise TraceError(f"cannot read: {exc.strerror or exc}", path=path) from exc
    try:
        yield from _text_batches(path, fmt, raw, compression, rows, key_field, seed, fields,
                                 first_row)
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:  # a cut-short or damaged file
        raise TraceError(f"not a readable {compression} file ({exc})", path=path) from exc


def _text_batches(path: str, fmt: str, raw: IO[bytes], compression: str | None, rows: int,
                  key_field: str | None, seed: int, fields: FieldMap | None, first_row: int
                  ) -> Iterator[tuple[int, Trace]]:
    from tokenlimit.sim.readers import read_block

    with raw, decompressing(raw, compression) as stream:
        header = stream.readline() if fmt == "csv" else b""
        first_line = 2 if fmt == "csv" else 1
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
            if fields is None:
                trace = read_block(path, fmt, header + data, key_field=key_field, seed=seed,
                                   first_row=first_row, first_line=first_line)
            else:
                trace = _log_block(path, fmt, header + data, fields, seed, first_row,
                                   first_line)
            if len(trace):
                yield first_row, trace
            first_row += len(trace)
            first_line += data.count(b"\n")


def _log_block(path: str, fmt: str, data: bytes, fields: FieldMap, seed: int, first_row: int,
               first_line: int) -> Trace:
    """One block of a gateway log; errors name the line in the file."""
    shift = first_line - (2 if fmt == "csv" else 1)  # block lines after its header
    try:
        trace: Trace = read_log(path, fmt, data, fields, seed, first_row)
    except TraceError as exc:
        where = None if exc.line is None else exc.line + shift
        raise TraceError(exc.message, path=path, line=where, field=exc.field) from None
    return trace


def _batch_rows(path: str, batch: Any, first: int, file_row: int, key_field: str | None,
                seed: int) -> Trace:
    """A Parquet batch the columnar reader declines (a dictionary-encoded id, a status
    stored as floats), read one row at a time as the whole file is; errors name the row
    (the batch's first is ``file_row`` of the file ``path``, and ``first`` of its dataset)."""
    from tokenlimit.sim.row_reader import RowColumns, add_row, finish_rows

    columns = RowColumns()
    columns.offset = first
    for n, row in enumerate(batch.iter_rows(named=True), start=file_row + 1):
        add_row(columns, {k: v for k, v in row.items() if v is not None}, path, n, None,
                key_field)
    return finish_rows(columns, path, seed)


def simulate_in_chunks(path: str, rules: Sequence[Rule], *, rows: int,
                       charge: Charge = "completion", key_field: str | None = None,
                       seed: int = 0, top: int = 10, price_per_1k: float | None = None,
                       decisions: IO[bytes] | None = None, fields: FieldMap | None = None,
                       speed: float = 1.0, chart: bool = False) -> ChunkedResult:
    """Replay a trace (or a gateway log, with ``fields``) batch by batch; decisions as JSON
    Lines to ``decisions`` (a seekable stream: rewritten when usage had to be imputed).
    ``speed``: as ``Trace.at_speed``. ``chart``: also gather what the replay chart draws
    (``ChunkedResult.chart``; one more pass)."""
    starts = FileStarts(path)

    def batches() -> Iterator[tuple[int, Trace]]:
        return trace_chunks(path, rows, key_field=key_field, seed=seed, fields=fields,
                            starts=starts)

    tally = ImputationTally()
    options: dict[str, Any] = {"charge": charge, "top": top, "price_per_1k": price_per_1k,
                               "speed": speed, "where": starts.where}
    result = replay_batches(batches(), rules, decisions, tally.add, **options)
    fill: Callable[[Trace], None] = _as_read
    if tally.total_missing:
        # Requests without usage: draw theirs from the whole trace's, as the whole replay does.
        draws = tally.draws(seed)
        for _, chunk in batches():
            draws.collect(chunk)
        if decisions is not None:
            decisions.seek(0)
            decisions.truncate()
        result = replay_batches(batches(), rules, decisions, draws.fill, **options)
        draws.rewind()
        fill = draws.fill
    if not chart:
        return result
    wanted = ChartRequests(result.key_names, [k for k, _, _ in result.summary.keys], charge)
    replay_batches(batches(), rules, None, fill, on_replay=wanted.add, **options)
    return dataclasses.replace(result, chart=wanted.trace_and_replay(path))


def _as_read(chunk: Trace) -> None:
    """Nothing to complete in a batch."""


def replay_batches(batches: Iterator[tuple[int, Trace]], rules: Sequence[Rule],
                   decisions: IO[bytes] | None, on_batch: Callable[[Trace], None], *,
                   charge: Charge, top: int, price_per_1k: float | None, speed: float = 1.0,
                   on_replay: Callable[[IntArray, Trace, Replay], None] | None = None,
                   where: Callable[[int], tuple[str, int]] | None = None) -> ChunkedResult:
    """One streamed replay; ``on_batch`` sees (and may complete) each batch as read,
    ``on_replay`` each part replayed (in time order) with its file positions and decisions."""
    figures = _Figures(rules, charge, decided=decisions is not None or on_replay is not None,
                       where=where)
    order = TimeOrder()
    written = FileOrderDecisions(decisions)
    origin = None  # the first request's time (parts come in time order)

    def replay(rows: IntArray, part: Trace) -> None:
        nonlocal origin
        if speed != 1.0:
            origin = float(part.ts.min()) if origin is None else origin
            part = part.at_speed(speed, origin)
        decided = figures.add(rows, part)
        if decided is not None:
            if on_replay is not None:
                on_replay(rows, part, decided)
            written.add(rows, part, decided.outcome, decided.rule)

    for start, batch in batches:
        on_batch(batch)
        for rows, part in order.push(start, batch):
            replay(rows, part)
        written.flush(order.first_waiting())
    for rows, part in order.finish():
        replay(rows, part)
    written.flush(None)
    return figures.result(top, price_per_1k)


class _Figures:
    """The streamed replay and the report's figures, added up part by part (``decided``:
    with each part's decisions; else the scan adds up the figures alone)."""

    def __init__(self, rules: Sequence[Rule], charge: Charge, *, decided: bool,
                 where: Callable[[int], tuple[str, int]] | None = None) -> None:
        self.rules, self.charge, self.decided = rules, charge, decided
        self.stream = StreamingReplay(rules, charge, where=where)
        self.counts = np.zeros((0, 6), dtype=np.int64)
        self.first_limited = np.zeros(0)
        self.unmatched = np.zeros(6, dtype=np.int64)
        self.unmatched_first = np.inf
        self.imputed = self.requests = self.limited = 0

    def add(self, rows: IntArray, part: Trace) -> Replay | None:
        """Replay one part; its decisions (``None`` without ``decided``)."""
        replay = None
        if self.decided:
            replay = self.stream.feed(part, rows)
            counts, first = key_figures(part, replay, self.charge, len(self.stream.names))
        else:
            counts, first = self.stream.feed_figures(part, rows)
        n_keys = len(self.stream.names)
        grow = n_keys - self.counts.shape[0]
        self.counts = np.vstack((self.counts, np.zeros((grow, 6), dtype=np.int64)))
        self.first_limited = np.append(self.first_limited, np.full(grow, np.inf))
        self.counts += counts[:n_keys]
        np.minimum(self.first_limited, first[:n_keys], out=self.first_limited)
        self.unmatched += counts[n_keys]
        self.unmatched_first = min(self.unmatched_first, float(first[n_keys]))
        self.imputed += part.imputed_count
        self.requests += len(part)
        self.limited += limited_count(part)
        return replay

    def result(self, top: int, price_per_1k: float | None) -> ChunkedResult:
        deepest = self.stream.finish()
        summary = summary_from_figures(
            self.rules, self.stream.key_names, np.vstack((self.counts, self.unmatched)),
            np.append(self.first_limited, self.unmatched_first), deepest, engine="scan",
            imputed=self.imputed, charge=self.charge, top=top, price_per_1k=price_per_1k)
        return ChunkedResult(summary, self.requests, self.limited, self.stream.key_names)

