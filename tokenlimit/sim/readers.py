"""Reading traces from files: CSV, JSON Lines or Parquet, plain or compressed (gzip, zstd),
canonical or Mooncake/AIPerf; gateway logs through a field map (``--from`` / ``--map``).

One request per line (CSV: per row after the header). Canonical fields: ``ts`` (Unix
seconds), ``key`` | ``keys`` | ``headers`` (with key templates, which may also read the
``path``, ``host`` and ``method`` fields: ``TraceKeys``), ``latency``,
``prompt_tokens``, ``completion_tokens``, ``total_tokens``, ``id``, ``status``. A line with
``timestamp`` (milliseconds) instead of ``ts`` is read as Mooncake/AIPerf: ``input_length``
and ``output_length`` are the prompt and completion tokens, and the key comes from
``--key-field`` (or ``key``/``keys``/headers as above). In CSV, ``keys`` holds a JSON array
and header columns are named ``headers.<name>``.

``read_trace`` tries the columnar reader (``columnar.py``) and, where it declines, reads
the file again one row at a time (``row_reader.py``), which also locates errors. A trace may
be at a URL (``trace_sources.py``: fetched whole) and a Parquet trace may be a dataset (a
folder or glob of files, read as one trace).

A request recorded without usage (no completion and no total tokens: it was limited when
recorded) gets completion tokens drawn, with a seeded generator, from the completion tokens
recorded for its first key (all recorded requests when that key has none).
"""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from tokenlimit.bucket.key_templates import KeyTemplate
from tokenlimit.errors import TraceError
from tokenlimit.sim.imputation import MISSING, impute_completion
from tokenlimit.sim.log_fields import FieldMap
from tokenlimit.sim.row_reader import (
    TRACE_FIELDS,
    RowColumns,
    TraceKeys,
    add_row,
    csv_rows,
    finish_rows,
    json_lines,
)
from tokenlimit.sim.trace_sources import (
    FileStarts,
    decompressed,
    is_dataset,
    is_local_folder,
    is_url,
    parquet_files,
    read_bytes,
    read_raw,
    text_files,
    trace_format,
)
from tokenlimit.sim.trace_table import Trace

__all__ = ["MISSING", "TRACE_FIELDS", "TraceKeys", "impute_completion", "read_trace",
           "read_trace_rows", "trace_format"]



# The columns a trace's reader reads (others are ignored): canonical, Mooncake/AIPerf.
TRACE_COLUMNS = ("ts", "timestamp", "key", "keys", "latency", "prompt_tokens",
                 "completion_tokens", "total_tokens", "input_length", "output_length", "id",
                 "status", "headers")


def read_trace(path: str | Path, *, key_templates: Sequence[KeyTemplate] = (),
               key_field: str | None = None, seed: int = 0,
               fields: FieldMap | None = None, ids: bool = True) -> Trace:
    """Read a trace file: CSV, JSON Lines or Parquet, by suffix (``.gz`` or ``.zst`` after
    it for compressed text), with the columnar reader; the per-row reader below reads what
    the columnar one declines and locates errors.

    ``fields`` (``--from`` / ``--map``) reads a gateway's log instead of a trace.
    ``ids=False``: the caller never looks at the requests' ids (``simulate`` without
    ``--decisions``), so the columnar reader may skip them (``Trace.ids`` is then ``None``).
    Raises ``TraceError`` naming the file, the 1-based line (Parquet: row) and the field
    for bad input.
    """
    name = str(path)
    fmt, compression = trace_format(name)
    dataset = is_dataset(name)  # asked once: a remote store answers over the network
    texts = text_files(name) if dataset else None
    if texts is not None:  # CSV or JSON Lines files
        return _read_text_dataset(name, texts, key_templates, key_field, seed, fields, ids)
    if _read_as_dataset(name, fmt, dataset) or (dataset and (
            fields is not None or fmt != "parquet")):  # a local Parquet glob: polars' below
        return _read_parquet_dataset(name, key_templates, key_field, seed, fields)
    if fields is not None:
        return _read_log(name, fmt, fields, seed)
    if is_url(name) and not key_templates:
        from tokenlimit.sim.columnar import read_columnar

        fast = read_columnar(name, fmt, read_bytes(name), key_field=key_field, seed=seed,
                             ids=ids)
        if fast is not None:
            return fast
    elif not key_templates:
        from tokenlimit.sim.columnar import read_columnar

        try:
            data = None if compression is None else read_bytes(name)
        except (OSError, EOFError, zlib.error, ValueError):
            data = b""  # the per-row reader meets the same problem and names it
        if data != b"" or compression is None:
            fast = read_columnar(name, fmt, data, key_field=key_field, seed=seed, ids=ids)
            if fast is not None:
                return fast
        if fmt == "parquet" and is_dataset(name):  # a glob of files whose types differ
            return _read_parquet_dataset(name, key_templates, key_field, seed, fields)
    return read_trace_rows(name, key_templates=key_templates, key_field=key_field, seed=seed)


def trace_columns(names: Sequence[str], key_field: str | None) -> list[str]:
    """Those of a file's column ``names`` a trace's reader reads.

    >>> trace_columns(["id", "ts", "user", "model"], "user")
    ['id', 'ts', 'user']
    """
    return [n for n in names if n in TRACE_COLUMNS or n == key_field]


def _read_as_dataset(name: str, fmt: str, dataset: bool) -> bool:
    """Read through ``_read_parquet_dataset``: a Parquet file at a URL, or a folder (local or
    remote) or a remote glob of Parquet files. A local Parquet file or glob is polars' own."""
    if is_url(name):
        return fmt == "parquet" or dataset
    return is_local_folder(name)


def parquet_frame(name: str, columns: Callable[[list[str]], list[str]] | None = None) -> Any:
    """One frame of a Parquet file at a URL, or of a dataset's files (``columns``: those
    wanted of each file's columns; the files' types are reconciled as polars can)."""
    return _parquet_frame_of_files(name, columns)[0]


def _parquet_frame_of_files(name: str, columns: Callable[[list[str]], list[str]] | None
                            ) -> tuple[Any, FileStarts]:
    """``parquet_frame``, and where each file's rows start in it."""
    import polars as pl

    files = parquet_files(name) if is_dataset(name) else [name]
    frames = [_parquet_file_frame(file, columns) for file in files]
    starts, first = FileStarts(name), 0
    for file, frame in zip(files, frames, strict=True):
        starts.add(first, file)
        first += frame.height
    unfit = _unfit_column(files, frames)
    if unfit is not None:
        raise UnfitFiles(f"the dataset's files do not fit together ({unfit})", path=name)
    try:
        return pl.concat(frames, how="diagonal_relaxed"), starts
    except pl.exceptions.PolarsError as exc:
        raise UnfitFiles(f"the dataset's files do not fit together ({exc})".splitlines()[0],
                         path=name) from exc


class UnfitFiles(TraceError):
    """A dataset's files keep a column in types one frame cannot hold as they are: a trace
    is then read file by file (``_parquet_trace_rows``), a log is refused."""


def _unfit_column(files: Sequence[str], frames: Sequence[Any]) -> str | None:
    """Which column the files keep as values of different kinds, and where (``None`` when
    each column's values are of one kind in every file). polars' relaxed join widens
    numbers exactly, but turns a timestamp or a duration beside numbers into its count of
    units (milliseconds read as seconds) and integer ids beside text into text."""
    import polars as pl

    seen: dict[str, tuple[str, Any, str]] = {}
    for file, frame in zip(files, frames, strict=True):
        for column, dtype in frame.schema.items():
            if dtype == pl.Null:  # a column of nulls only: of any kind
                continue
            kind, first_type, first_file = seen.setdefault(column, (_kind(dtype), dtype, file))
            if kind != _kind(dtype):
                return f"column {column!r} is {first_type} in {first_file} and {dtype} in {file}"
    return None


def _kind(dtype: Any) -> str:
    """What a column's values are, whatever their width, unit or encoding.

    >>> import polars as pl
    >>> _kind(pl.UInt32), _kind(pl.Categorical), _kind(pl.Datetime("ms", "UTC"))
    ('number', 'text', 'Datetime')
    >>> _kind(pl.List(pl.Enum(["a"])))
    'List of text'
    """
    import polars as pl

    if dtype.is_numeric():
        return "number"
    if dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Enum):
        return "text"
    if isinstance(dtype, pl.List):
        return f"List of {_kind(dtype.inner)}"
    return type(dtype).__name__


def _parquet_file_frame(file: str, columns: Callable[[list[str]], list[str]] | None) -> Any:
    """One Parquet file's frame (``columns``: as ``parquet_frame``'s), local or at a URL."""
    import polars as pl

    try:
        # A local file is read by polars itself: only the wanted columns' bytes.
        raw = read_raw(file) if is_url(file) else None
        schema = pl.read_parquet_schema(file if raw is None else io.BytesIO(raw))
        wanted = list(schema) if columns is None else columns(list(schema))
        return pl.read_parquet(file if raw is None else io.BytesIO(raw), columns=wanted)
    except OSError as exc:
        raise TraceError(f"cannot read: {exc.strerror or exc}", path=file) from exc
    except pl.exceptions.PolarsError as exc:
        raise TraceError(f"not a readable Parquet file ({exc})".splitlines()[0],
                         path=file) from exc


def _read_parquet_dataset(name: str, key_templates: Sequence[KeyTemplate],
                          key_field: str | None, seed: int, fields: FieldMap | None) -> Trace:
    from tokenlimit.sim.columnar import Declined, build_trace

    if fields is not None:
        from tokenlimit.sim.log_reader import Locator, log_columns, log_trace

        frame, starts = _parquet_frame_of_files(name, lambda n: log_columns(n, fields))
        try:
            log: Trace = log_trace(frame, Locator(name, "parquet", b""), fields, seed)
        except TraceError as exc:  # a row of the dataset: named in its file
            if exc.path != name or exc.line is None:
                raise
            file, row = starts.where(exc.line - 1)
            raise TraceError(exc.message, path=file, line=row + 1, field=exc.field) from None
        return log
    if not key_templates:
        try:
            frame = parquet_frame(name, lambda names: trace_columns(names, key_field))
            return build_trace(frame, name, seed, key_field)
        except (Declined, UnfitFiles):
            pass  # the per-row reader gives the same trace, or the located error
    return _parquet_trace_rows(name, key_templates, key_field, seed)


def _read_text_dataset(name: str, files: list[str], key_templates: Sequence[KeyTemplate],
                       key_field: str | None, seed: int, fields: FieldMap | None,
                       ids: bool) -> Trace:
    """A folder or glob of CSV or JSON Lines files, read as the one file they join into;
    errors name the file and its line."""
    from tokenlimit.sim.columnar import read_columnar
    from tokenlimit.sim.log_reader import read_log
    from tokenlimit.sim.text_dataset import joined_text

    joined = joined_text(name, files)
    try:
        if fields is not None:
            trace: Trace = read_log(name, joined.fmt, joined.data, fields, seed)
            return trace
        if not key_templates:
            fast = read_columnar(name, joined.fmt, joined.data, key_field=key_field, seed=seed,
                                 ids=ids)
            if fast is not None:
                return fast
        return read_trace_rows(name, key_templates=key_templates, key_field=key_field,
                               seed=seed, joined=(joined.fmt, joined.data))
    except TraceError as exc:
        raise joined.located(exc, name) from None


def _read_log(name: str, fmt: str, fields: FieldMap, seed: int) -> Trace:
    from tokenlimit.sim.log_reader import read_log

    trace: Trace = read_log(name, fmt, decompressed(name), fields, seed)
    return trace


def read_trace_rows(path: str | Path, *, key_templates: Sequence[KeyTemplate] = (),
                    key_field: str | None = None, seed: int = 0,
                    joined: tuple[str, bytes] | None = None) -> Trace:
    """``read_trace`` one row at a time in Python: slower, reads every shape (key
    templates, string numbers, ``keys`` in CSV) and names the line of the first error.
    ``joined``: (format, text) of a folder or glob of text files, read as one file."""
    name = str(path)
    fmt, _ = trace_format(name) if joined is None else (joined[0], None)
    plan = TraceKeys(key_templates) if key_templates else None
    if fmt == "parquet":
        return _parquet_trace_rows(name, key_templates, key_field, seed)
    columns = RowColumns()
    try:
        rows: Iterator[tuple[int, Mapping[str, Any]]]
        if fmt == "csv":
            text = (read_bytes(name) if joined is None else joined[1]).decode("utf-8-sig")
            rows = csv_rows(io.StringIO(text, newline=""), name)
        elif joined is not None:
            rows = _jsonl_rows(io.TextIOWrapper(io.BytesIO(joined[1]), encoding="utf-8-sig",
                                                newline=""), name)
        else:
            rows = _jsonl_rows(_open_text(name), name)
        for line, row in rows:
            add_row(columns, row, name, line, plan, key_field)
    except OSError as exc:
        raise TraceError(f"cannot read: {exc.strerror or exc}", path=name) from exc
    except (UnicodeDecodeError, EOFError, gzip.BadGzipFile, zlib.error, ValueError) as exc:
        raise TraceError(f"not a readable text, gzip or zstd file ({exc})", path=name) from exc
    return finish_rows(columns, name, seed)


def _open_text(name: str) -> IO[str]:
    if trace_format(name)[1] is not None or is_url(name):
        return io.TextIOWrapper(io.BytesIO(read_bytes(name)), encoding="utf-8-sig",
                                newline="")
    return open(name, encoding="utf-8-sig", newline="")


def _parquet_trace_rows(name: str, key_templates: Sequence[KeyTemplate],
                        key_field: str | None, seed: int) -> Trace:
    """``read_trace_rows`` of a Parquet file or dataset, file by file: errors name the file
    and its row."""
    plan = TraceKeys(key_templates) if key_templates else None
    columns = RowColumns()
    for file in parquet_files(name) if is_dataset(name) else [name]:
        rows = _parquet_file_frame(file, None).iter_rows(named=True)
        for number, row in enumerate(rows, start=1):
            add_row(columns, {k: v for k, v in row.items() if v is not None}, file, number,
                    plan, key_field)
    return finish_rows(columns, name, seed)


def _jsonl_rows(stream: IO[str], name: str) -> Iterator[tuple[int, Mapping[str, Any]]]:
    with stream:
        yield from json_lines(stream, name)


def read_block(name: str, fmt: str, data: bytes, *, key_field: str | None, seed: int,
               first_row: int, first_line: int) -> Trace:
    """One block of a CSV (with the header line in front) or JSON Lines file: its first
    request is the file's ``first_row`` and its first line the file's ``first_line``.
    Errors name the line in the file."""
    from tokenlimit.sim.columnar import read_columnar

    fast = read_columnar(name, fmt, data, key_field=key_field, seed=seed, first_row=first_row)
    if fast is not None:
        return fast
    columns = RowColumns()
    columns.offset = first_row
    shift = first_line - (2 if fmt == "csv" else 1)  # block lines after its header
    try:
        text = io.StringIO(data.decode("utf-8-sig"), newline="")
        rows = csv_rows(text, name) if fmt == "csv" else json_lines(text, name)
        for line, row in rows:
            add_row(columns, row, name, line, None, key_field)
    except TraceError as exc:
        where = None if exc.line is None else exc.line + shift
        raise TraceError(exc.message, path=name, line=where, field=exc.field) from None
    except UnicodeDecodeError as exc:
        raise TraceError(f"not a readable text file ({exc})", path=name) from exc
    return finish_rows(columns, name, seed)
