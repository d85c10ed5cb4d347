"""The fast reader for every trace: CSV, JSON Lines and Parquet, read by polars.

polars parses the file in parallel into typed columns (bench/trace_engines.py measured it
against pyarrow on this kind of machine: faster for JSON Lines and Parquet, level for CSV);
what remains here is array work: checks, key factorization, derived token counts.

Extra columns are ignored (JSON Lines and Parquet are read with only the trace's fields; a
CSV's other columns are never converted). The result is, column for column, the per-row
reader's in ``readers.py``; whenever that cannot be certain (a cell that is not a plain
value, a value polars would quietly coerce, a bad line) ``read_columnar`` returns ``None``
and the per-row reader reads the file again: it gives the same trace or the located error.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from tokenlimit.sim.imputation import MISSING, impute_completion
from tokenlimit.sim.key_numbers import number_keys
from tokenlimit.sim.records import CSV_INTEGER_ID, WHOLE_STATUS, csv_id
from tokenlimit.sim.trace_table import IdColumn, Trace

if TYPE_CHECKING:
    import polars as pl

_MAX_TOKENS = 10**15
_MAX_INT = 2.0**62  # the per-row reader refuses integers this large
_TOKEN_FIELDS = ("prompt_tokens", "completion_tokens", "total_tokens", "input_length",
                 "output_length")
_NUMBER_FIELDS = ("ts", "timestamp", "latency")
# A JSON array of plain strings (no escapes that could hide a quote).
_STRING_LIST = rb'\[\s*(?:"(?:[^"\\]|\\.)*"\s*(?:,\s*"(?:[^"\\]|\\.)*"\s*)*)?\]'


class Declined(Exception):
    """The per-row reader must read this file (for its exact result or its located error)."""


def read_columnar(name: str, fmt: str, data: bytes | None, *, key_field: str | None,
                  seed: int, first_row: int = 0, ids: bool = True) -> Trace | None:
    """The trace in ``name`` (``fmt``: ``csv``, ``jsonl`` or ``parquet``), or ``None`` when
    the per-row reader must read it. ``data``: the decompressed bytes of a compressed file
    (or one block of a file, whose first request is the file's ``first_row``), ``None`` to
    read ``name`` itself. ``ids=False``: the caller never looks at the requests' ids, so a
    CSV's or Parquet file's are not read (any CSV cell is a valid id, a Parquet column's
    type is checked from the schema); the trace's ``ids`` is then ``None``."""
    import polars as pl

    try:
        if fmt == "parquet":
            frame = _parquet_frame(name, key_field, ids)
        elif fmt == "csv":
            frame = _csv_frame(name, data, key_field, ids)
        else:
            frame = _jsonl_frame(name, data, key_field)
        return _trace(frame, name, key_field, seed, fmt == "csv", first_row, ids)
    except (Declined, pl.exceptions.PolarsError, OSError, ValueError, OverflowError):
        return None


def _mapped(name: str, data: bytes | None) -> Any:
    """The file's bytes to check (``data`` when given, else a read-only memory map of the
    file: the checks read it where it lies, and polars maps the file itself)."""
    if data is not None:
        return data
    import mmap

    with open(name, "rb") as stream:
        if os.fstat(stream.fileno()).st_size == 0:
            return b""
        # Closed when collected (closing it here would fail while an error's traceback
        # still holds a view of it).
        return mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ)


def _unmap(raw: Any) -> None:
    """Close ``raw`` if it is a memory map no array still views."""
    import mmap

    if isinstance(raw, mmap.mmap):
        with contextlib.suppress(BufferError):
            raw.close()


def _byte_counts(raw: Any, values: tuple[int, ...]) -> list[int]:
    """How many times each byte of ``values`` occurs in ``raw``, counted by numpy in blocks
    on every core."""
    whole = np.frombuffer(raw, dtype=np.uint8) if len(raw) else np.zeros(0, dtype=np.uint8)
    block = 1 << 24

    def count(start: int) -> list[int]:
        part = whole[start:start + block]
        return [int(np.count_nonzero(part == v)) for v in values]

    starts = range(0, whole.shape[0], block)
    if len(starts) <= 1:
        return count(0)
    from concurrent.futures import ThreadPoolExecutor

    from tokenlimit.sim.partition import usable_cores

    with ThreadPoolExecutor(max_workers=usable_cores()) as pool:
        return [sum(c) for c in zip(*pool.map(count, starts), strict=True)]


def _parquet_frame(name: str, key_field: str | None, ids: bool) -> pl.DataFrame:
    """The trace's columns of a Parquet file, or of a local glob's files (``parquet_files``:
    polars' own glob would take ``_temporary/`` and hidden files for data)."""
    import polars as pl

    from tokenlimit.sim.trace_sources import is_dataset, parquet_files

    source: str | list[str] = name
    if is_dataset(name):
        source = parquet_files(name)
    columns = pl.read_parquet_schema(source[0] if isinstance(source, list) else source)
    wanted = {*_NUMBER_FIELDS, *_TOKEN_FIELDS, "key", "keys", "status", "headers"}
    if ids:
        wanted.add("id")
    elif "id" in columns and not (columns["id"] == pl.String or columns["id"].is_integer()):
        raise Declined  # the per-row reader names the bad id
    if key_field is not None:
        wanted.add(key_field)
    key = key_field or "key"
    chosen = [c for c in columns if c in wanted]
    if columns.get(key) == pl.String:  # factorized as it is decoded (``_keys``)
        return pl.scan_parquet(source).select(chosen).with_columns(
            pl.col(key).cast(pl.Categorical)).collect()
    return pl.read_parquet(source, columns=chosen)


def _csv_frame(name: str, data: bytes | None, key_field: str | None, ids: bool
               ) -> pl.DataFrame:
    import polars as pl

    csv_types = {**{f: pl.Float64 for f in (*_NUMBER_FIELDS, *_TOKEN_FIELDS)},
                  "key": pl.String, "id": pl.String, "status": pl.String}
    raw = _mapped(name, data)
    source = name if data is None else data  # what polars parses
    newline = raw.find(b"\n")
    header = bytes(raw[:newline if newline >= 0 else len(raw)])
    if header.startswith(b"\xef\xbb\xbf"):
        header = header[3:]
    if b'"' in header or not header.isascii():
        raise Declined
    names = header.decode().rstrip("\r").split(",")
    if (len(set(names)) != len(names) or any(n != n.strip() for n in names)
            or not {"ts", "timestamp"} & set(names) or "keys" in names
            or any(n.startswith("headers.") for n in names)):
        raise Declined  # the per-row reader's header errors, JSON arrays and headers
    # polars fills a row with too few cells with empty values; the per-row reader refuses
    # it. Every comma of the file is a separator or inside a quoted value, so counting
    # tells: without quotes, every comma separates; with quotes, every column is read (as
    # text) to count the commas inside values.
    commas, quotes = _byte_counts(raw, (44, 34))
    _unmap(raw)  # polars maps the file itself; two maps would count its pages twice
    if quotes == 0:
        wanted = [n for n in names if (n in csv_types and (ids or n != "id"))
                  or n == key_field]
        schema = {n: csv_types.get(n, pl.String) for n in wanted}
        if (key_field or "key") in schema:  # factorized as it is parsed (``_keys``)
            schema[key_field or "key"] = pl.Categorical
        try:  # whole token counts parse as integers (no float checks and casts later)
            frame = pl.read_csv(source, columns=wanted, raise_if_empty=False,
                                schema_overrides={**schema, **{
                                    n: pl.Int64 for n in wanted if n in _TOKEN_FIELDS}})
        except pl.exceptions.PolarsError:  # 12.0 or 1e3: read as numbers, checked later
            frame = pl.read_csv(source, columns=wanted, schema_overrides=schema,
                                raise_if_empty=False)
        inside = 0
    else:
        frame = pl.read_csv(source, infer_schema=False, raise_if_empty=False)
        if frame.columns != names:
            raise Declined
        inside = sum(int(frame[c].str.count_matches(",", literal=True).sum() or 0)
                     for c in frame.columns)
    if commas != (frame.height + 1) * (len(names) - 1) + inside:
        raise Declined
    return frame


def _jsonl_frame(name: str, data: bytes | None, key_field: str | None) -> pl.DataFrame:
    raw = _mapped(name, data)
    return _jsonl_frame_of(name, raw, name if data is None and len(raw) else raw, key_field)


_HEAD = 1 << 20  # bytes of lines whose field kinds guess the schema


def _jsonl_frame_of(name: str, raw: Any, source: Any, key_field: str | None) -> pl.DataFrame:
    """The frame of JSON Lines ``raw`` (bytes or a memory map of the file), which polars
    reads from ``source`` (the same bytes, or the file's name).

    polars parses with the schema of the first lines while the whole file's field kinds are
    counted on a thread beside it; if the whole file calls for another schema (an id that
    turns from numbers to strings), polars parses again with that one."""
    import polars as pl

    from tokenlimit.sim.json_fields import NULL, TOTAL, field_kinds

    if raw[:3] == b"\xef\xbb\xbf":
        raise Declined  # the per-row reader's error
    key = key_field or "key"
    names = ["ts", "timestamp", "latency", *_TOKEN_FIELDS, key, "keys", "id", "status",
             "headers"]
    end = raw.rfind(b"\n", 0, _HEAD) + 1 if len(raw) > _HEAD else len(raw)
    head = bytes(raw[:end])  # empty when the first line is longer: no guess
    guess = _jsonl_schema(dict(zip(names, field_kinds(head, names).tolist(), strict=False)),
                          head, key_field) if head else None
    from concurrent.futures import ThreadPoolExecutor

    frame: pl.DataFrame | None = None
    with ThreadPoolExecutor(max_workers=1) as pool:
        counting = pool.submit(field_kinds, raw, names)
        if guess is not None:
            with contextlib.suppress(pl.exceptions.PolarsError):  # a later line differs
                frame = pl.read_ndjson(source, schema=guess)
        counts = counting.result().tolist()
    if counts[-1][0]:
        raise Declined  # polars reads a lone surrogate escape as NUL; the row reader as Go does
    kinds = dict(zip(names, counts, strict=False))
    schema = _jsonl_schema(kinds, raw, key_field)
    if frame is None or schema != guess:
        frame = pl.read_ndjson(source, schema=schema)
    # Each field once per line that has it: a field named twice in one object (the per-row
    # reader keeps the last, polars the first) makes the counts differ.
    for field in schema:
        if kinds[field][TOTAL] != frame[field].count() + kinds[field][NULL]:
            raise Declined
    return frame


def _jsonl_schema(kinds: dict[str, list[int]], raw: Any, key_field: str | None
                  ) -> dict[str, Any]:
    """The polars schema for fields of these kinds (counts per field from ``field_kinds``),
    or ``Declined``: polars turns a number, object or list into its text where a string is
    expected, and the per-row reader refuses those, so every such field must be a string."""
    import polars as pl

    from tokenlimit.sim.json_fields import BOOLEAN, NESTED, NUMBER, STRING, TOTAL

    key = key_field or "key"
    schema: dict[str, Any] = {}
    for field, counts in kinds.items():
        if not counts[TOTAL]:
            continue
        if field in ("ts", "timestamp", "latency"):
            schema[field] = pl.Float64  # strict: a string or bool makes polars fail
        elif field in _TOKEN_FIELDS:
            schema[field] = pl.Int64
        elif field == key:
            if counts[STRING] != counts[TOTAL]:
                raise Declined
            schema[key] = pl.Categorical  # factorized as it is parsed (``_keys``)
        elif field == "keys":
            if key_field is not None or counts[NESTED] != counts[TOTAL]:
                raise Declined
            lists = len(re.findall(rb'"keys"\s*:\s*' + _STRING_LIST, raw))
            if len(re.findall(rb'"keys"', raw)) != lists:
                raise Declined  # a list with something else than strings
            schema["keys"] = pl.List(pl.String)
        elif field == "id":
            if counts[STRING] == counts[TOTAL]:
                schema["id"] = pl.String
            elif counts[NUMBER] == counts[TOTAL]:
                schema["id"] = pl.Int64  # strict: a float makes polars fail
            else:
                raise Declined
        elif field == "status":
            if counts[BOOLEAN] or counts[NESTED]:
                raise Declined  # true would read as "true", where the per-row reader has "True"
            schema["status"] = pl.String
        else:  # headers: key templates are for the per-row reader
            raise Declined
    if "ts" not in schema and "timestamp" not in schema:
        raise Declined
    return schema


def _number(frame: pl.DataFrame, field: str) -> pl.Series:
    """The column ``field`` as float64 or int64 (``Declined`` for a type the per-row reader
    refuses). A timestamp ``ts`` is Unix seconds, a duration ``latency`` seconds (as the
    per-row reader reads them: ``row_reader.moment_seconds``)."""
    import polars as pl

    series = frame[field]
    if isinstance(series.dtype, pl.Datetime) and field == "ts":
        if series.dtype.time_zone is None:  # a naive timestamp is UTC
            series = series.dt.replace_time_zone("UTC")
        return exact_quotient(series.dt.epoch("us"), 1e6)
    if isinstance(series.dtype, pl.Duration) and field == "latency":
        return exact_quotient(series.dt.total_microseconds(), 1e6)
    if series.dtype == pl.String:
        return series.cast(pl.Float64, strict=True)
    if not series.dtype.is_numeric() or series.dtype == pl.Decimal:
        raise Declined
    if series.dtype.is_float():
        return series.cast(pl.Float64)
    return series.cast(pl.Int64)


def status_text(values: pl.Series) -> pl.Series:
    """Recorded statuses as text, a whole decimal as its integer (``records.status_text``).

    >>> import polars as pl
    >>> status_text(pl.Series([429.0, 200.0, None, 1.5])).to_list()
    ['429', '200', None, '1.5']
    >>> status_text(pl.Series(["429.0", "429", None, "ok"])).to_list()
    ['429', '429', None, 'ok']
    """
    import polars as pl

    return values.cast(pl.String).str.replace(WHOLE_STATUS, "${1}")


def exact_quotient(values: pl.Series, divisor: float) -> pl.Series:
    """``values / divisor`` as float64, each quotient correctly rounded (polars divides a
    column by a number as a product with its reciprocal: 1793610000078000 / 1e6 gave
    1793610000.0779998, where 1793610000.078 is the nearest double).

    >>> import polars as pl
    >>> exact_quotient(pl.Series([1793610000078000, None]), 1e6).to_list()
    [1793610000.078, None]
    """
    import polars as pl

    return values.cast(pl.Float64) / pl.repeat(float(divisor), values.len(), eager=True)


def _numbers(frame: pl.DataFrame, time_field: str, token_fields: tuple[str, ...]
             ) -> tuple[dict[str, Any], set[str]]:
    """The time, latency and token columns as numpy arrays: time float64 (no gaps), latency
    float64 (0 where absent), tokens int64 (``MISSING`` where absent), and the fields with
    gaps (absent or null somewhere: only their arrays are writable copies). A column without
    gaps is polars' memory, read-only: the reader's chunks made contiguous in one copy by
    polars on every core (a numpy copy of each column after another, then another to make it
    writable, cost more than the rest of the conversion on a virtual machine, where each new
    page is expensive).

    ``Declined`` for anything the per-row reader would refuse or read differently (NaN,
    infinities, huge integers, negative or fractional tokens)."""
    import polars as pl

    n = frame.height
    out: dict[str, Any] = {}
    gaps: set[str] = set()
    fields = (time_field, "latency", *token_fields)
    # One contiguous array a column, copied from the reader's chunks on every core.
    columns = pl.DataFrame([_number(frame, f).alias(f) for f in fields
                            if f in frame.columns]).rechunk()
    for field in fields:
        if field not in columns.columns:
            gaps.add(field)
            out[field] = (np.zeros(n) if field == "latency"
                          else np.full(n, MISSING, dtype=np.int64))
            continue
        series = columns[field]
        whole = not series.null_count()
        if not whole and field == time_field:
            raise Declined
        present = (series if whole else series.drop_nulls()).to_numpy()
        _check_numbers(present, field in token_fields, field == "latency")
        series = series.cast(pl.Int64 if field in token_fields else pl.Float64)
        if whole:
            out[field] = series.to_numpy()
        else:
            gaps.add(field)
            out[field] = series.fill_null(0.0 if field == "latency" else MISSING).to_numpy(
                writable=True)
    latency = out["latency"]
    if latency.size and latency.view(np.int64).min() < 0:  # -0.0 (no value is below 0)
        out["latency"] = latency + 0.0
    return out, gaps


def _check_numbers(values: Any, tokens: bool, latency: bool) -> None:
    """``Declined`` unless every one of ``values`` (float64 or int64) is a number the per-row
    reader reads the same: finite, below 2**62 in size, and for token counts whole and from 0
    to 10**15, for latencies not negative. One pass for the extremes (NaN makes both NaN)."""
    if not values.size:
        return
    low, high = float(values.min()), float(values.max())
    if not (low > -_MAX_INT and high < _MAX_INT):
        raise Declined
    if tokens and (low < 0 or high > _MAX_TOKENS or (
            values.dtype.kind == "f" and bool((values != np.floor(values)).any()))):
        raise Declined
    if latency and low < 0:
        raise Declined


def _keys(frame: pl.DataFrame, key_field: str | None) -> tuple[Any, Any, tuple[str, ...]]:
    """(key_ptr, key_index, key names in first-appearance order)."""
    import polars as pl

    n = frame.height
    field = key_field or "key"
    has_keys = key_field is None and "keys" in frame.columns
    if field in frame.columns and not has_keys:
        series = frame[field]
        enum = isinstance(series.dtype, pl.Enum)  # its order is its own, not the file's
        if enum or (key_field is not None and series.dtype.is_integer()):
            series = series.cast(pl.String)
        if series.dtype not in (pl.String, pl.Categorical) or series.null_count():
            raise Declined
        ptr = np.arange(n + 1, dtype=np.int64)
        flat = series
    elif has_keys and field not in frame.columns:
        lists = frame["keys"]
        if lists.dtype != pl.List(pl.String) or lists.null_count():
            raise Declined
        flat = lists.explode(empty_as_null=False) if n else lists.explode()
        if flat.null_count():
            raise Declined
        ptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(lists.list.len().to_numpy(), out=ptr[1:])
    else:
        raise Declined
    # Factorized through polars' categorical codes (hashed in parallel), then numbered in
    # order of first appearance, as the per-row reader numbers keys.
    index, names = number_keys(flat.cast(pl.Categorical))
    return ptr, index, names


def _ids(frame: pl.DataFrame, n: int, csv: bool, first_row: int) -> Sequence[str | int] | None:
    """The requests' ids (``None``: each is its line's position), kept as the frame's column
    (``IdColumn``) unless some are missing."""
    import polars as pl

    if "id" not in frame.columns or frame["id"].null_count() == n:
        return None
    column = frame["id"]
    if not (column.dtype == pl.String or column.dtype.is_integer()):
        raise Declined
    if column.dtype == pl.String and csv:
        if _positions_as_text(column, first_row):
            return None  # every id is its line's position, written plainly
        column = _csv_ids(column)
    if column.dtype.is_integer() and not column.null_count() and column.equals(
            pl.int_range(first_row, first_row + n, dtype=pl.Int64, eager=True)
            .cast(column.dtype), check_names=False):
        return None  # every id is its line's position
    if not column.null_count():
        return IdColumn(_integer_ids(column) if column.dtype.is_integer() else column)
    # No id: the line's position is its id.
    values = [i if v is None else v for i, v in enumerate(column.to_list(), start=first_row)]
    if all(type(v) is int and v == i for i, v in enumerate(values, start=first_row)):
        return None
    return tuple(values)


def _integer_ids(column: pl.Series) -> pl.Series:
    """Integer ids as Int64, the decisions' id column, unless some are 2**63 or more (a
    UInt64 column of 64-bit hashes): those stay UInt64, each id the integer it was (a cast
    to Int64 failed on them).

    >>> import polars as pl
    >>> _integer_ids(pl.Series([2**63, 5], dtype=pl.UInt64)).to_list()
    [9223372036854775808, 5]
    """
    import polars as pl

    if column.dtype == pl.UInt64 and bool((column >= 2**63).any()):
        return column
    return column.cast(pl.Int64)


def _positions_as_text(column: pl.Series, first_row: int) -> bool:
    """Whether CSV ``id`` cells are each line's position written plainly (``records.csv_id``
    reads them as those integers): as numbers they are the positions, and together they have
    exactly the positions' digits (a leading zero or sign would add bytes)."""
    import polars as pl

    n = column.len()
    if n == 0 or column.null_count():
        return False
    numbers = column.cast(pl.Int64, strict=False)
    if numbers.null_count() or not numbers.equals(
            pl.int_range(first_row, first_row + n, dtype=pl.Int64, eager=True),
            check_names=False):
        return False
    return bool(column.str.len_bytes().sum() == _digits(first_row, first_row + n))


def _digits(start: int, stop: int) -> int:
    """How many decimal digits the numbers ``start`` .. ``stop - 1`` (>= 0) have in all.

    >>> _digits(0, 10), _digits(8, 12), _digits(0, 101)
    (10, 6, 193)
    """
    total, width, low = 0, 1, 0
    while low < stop:
        high = 10**width
        total += width * max(0, min(stop, high) - max(start, low))
        low, width = high, width + 1
    return total


def _csv_ids(column: pl.Series) -> pl.Series:
    """CSV ``id`` cells as ids: integers where written as one (``records.csv_id``)."""
    import polars as pl

    integer = column.str.contains(CSV_INTEGER_ID)
    if integer.all():
        return column.cast(pl.Int64)
    if integer.any():
        return pl.Series([csv_id(v) if v is not None else None for v in column.to_list()],
                         dtype=pl.Object)
    return column


_MEANWHILE = 1_000_000  # requests from which keys are numbered on a thread of their own


def _keys_meanwhile(frame: pl.DataFrame, key_field: str | None
                    ) -> Callable[[], tuple[Any, Any, tuple[str, ...]]]:
    """``_keys(frame, key_field)`` when the returned function is called: for a large frame
    computed meanwhile, on a thread, while the number columns are converted (both are mostly
    outside the GIL: polars, numpy and the compiled numbering); for a small one, then."""
    if frame.height < _MEANWHILE:
        return functools.partial(_keys, frame, key_field)
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="keys")
    try:
        return pool.submit(_keys, frame, key_field).result
    finally:
        pool.shutdown(wait=False)  # the thread ends with its one task


def build_trace(frame: pl.DataFrame, name: str, seed: int, key_field: str | None = None,
                first_row: int = 0, *, csv: bool = False) -> Trace:
    """The trace in a frame of canonical columns (``ts``, ``key`` or ``keys``, ``latency``,
    token counts, ``id``, ``status``); ``Declined`` for values a trace cannot hold.
    ``first_row``: the frame's first row's position in its file (a request without an id
    has its position as its id; ``ids`` is ``None`` when every id is that position).
    ``csv``: the ids are CSV cells, an integer where written as one (``records.csv_id``)."""
    return _trace(frame, name, key_field, seed, csv, first_row)


def _trace(frame: pl.DataFrame, name: str, key_field: str | None, seed: int,
           csv: bool, first_row: int = 0, ids: bool = True) -> Trace:

    n = frame.height
    if "ts" in frame.columns:
        if "timestamp" in frame.columns:
            raise Declined  # the per-row reader decides line by line
        time_field, prompt_field, completion_field = "ts", "prompt_tokens", "completion_tokens"
    elif "timestamp" in frame.columns:
        time_field, prompt_field, completion_field = "timestamp", "input_length", "output_length"
    else:
        raise Declined
    keys = _keys_meanwhile(frame, key_field)
    numbers, gaps = _numbers(frame, time_field,
                             (prompt_field, completion_field, "total_tokens"))
    ts = numbers[time_field] / 1000.0 if time_field == "timestamp" else numbers[time_field]
    latency = numbers["latency"]
    prompt = numbers[prompt_field]
    completion = numbers[completion_field]
    total = numbers["total_tokens"]
    # Only columns with gaps hold MISSING (and only they are writable).
    if prompt_field in gaps:
        prompt[prompt == MISSING] = 0
    if completion_field in gaps:
        derive = (completion == MISSING) & (total != MISSING)
        completion[derive] = np.maximum(total[derive] - prompt[derive], 0)
    if "total_tokens" in gaps:
        fill = (completion != MISSING) & (total == MISSING)
        total[fill] = prompt[fill] + completion[fill]
    ptr, index, names = keys()
    request_ids = _ids(frame, n, csv, first_row) if ids else None
    status = None
    if "status" in frame.columns and frame["status"].null_count() < n:
        status = tuple(status_text(frame["status"]).to_list())
    imputed = impute_completion(completion, ptr, index, seed)
    if imputed.any():  # an imputed request had no total either: ``total`` has gaps
        total[imputed] = prompt[imputed] + completion[imputed]
    return Trace(path=name, ts=np.ascontiguousarray(ts), latency=latency, prompt_tokens=prompt,
                 completion_tokens=completion, total_tokens=total, key_ptr=ptr,
                 key_index=index, key_names=names, imputed=imputed, ids=request_ids,
                 status=status)
