"""Reading traces from files: canonical JSON Lines, CSV, Mooncake/AIPerf JSONL, gzip.

One request per line (CSV: per row after the header). Canonical fields: ``ts`` (Unix
seconds), ``key`` | ``keys`` | ``headers`` (with key templates, which may also read the
``path``, ``host`` and ``method`` fields: ``TraceKeys``), ``latency``,
``prompt_tokens``, ``completion_tokens``, ``total_tokens``, ``id``, ``status``. A line with
``timestamp`` (milliseconds) instead of ``ts`` is read as Mooncake/AIPerf: ``input_length``
and ``output_length`` are the prompt and completion tokens, and the key comes from
``--key-field`` (or ``key``/``keys``/headers as above). In CSV, ``keys`` holds a JSON array
and header columns are named ``headers.<name>``. Files ending in ``.gz`` are decompressed.

A request recorded without usage (no completion and no total tokens: it was limited when
recorded) gets completion tokens drawn, with a seeded generator, from the completion tokens
recorded for its first key (all recorded requests when that key has none).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import zlib
from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from tokenlimit.bucket.key_templates import HEADER_PREFIX, KeyTemplate, header_text
from tokenlimit.errors import ConfigError, TraceError
from tokenlimit.sim.imputation import MISSING, impute_completion
from tokenlimit.sim.log_fields import FieldMap
from tokenlimit.sim.records import csv_id
from tokenlimit.sim.trace_table import Trace

__all__ = ["MISSING", "TraceKeys", "impute_completion", "read_trace", "read_trace_rows",
           "trace_format"]



class _Columns:
    """Columns accumulated line by line, in typed arrays (8 bytes a value, not a Python
    object); ids and statuses only once a line carries one."""

    def __init__(self) -> None:
        self.ts = array("d")
        self.latency = array("d")
        self.prompt = array("q")
        self.completion = array("q")
        self.total = array("q")
        self.ptr = array("q", [0])
        self.index = array("q")
        self.names: dict[str, int] = {}
        self.ids: list[str | int] | None = None
        self.offset = 0  # the position in its file of the first line read here
        self.status: list[str | None] | None = None


# The base template attributes a trace line carries, and the field that carries each one.
TRACE_FIELDS = {"request.path": "path", "request.host": "host", "request.method": "method"}


class TraceKeys:
    """Key templates compiled for trace lines: a template reads ``headers`` and the fields in
    ``TRACE_FIELDS``. ``ConfigError`` (at once, before any line is read) for a template that
    reads an attribute no trace line carries, such as ``request.scheme``.

    >>> from tokenlimit.bucket.key_templates import parse_key_templates
    >>> keys = TraceKeys(parse_key_templates(["{{request.method}} {{request.headers.x-a}}"]))
    >>> keys.render({"method": "GET", "headers": {"X-A": ["1", "2"]}}, "t.jsonl", 1)
    ('GET 1,2',)
    """

    __slots__ = ("fields", "headers", "templates")

    def __init__(self, templates: Sequence[KeyTemplate]) -> None:
        self.templates = tuple(templates)
        self.headers: dict[str, str] = {}  # lower-case header name -> attribute
        fields: dict[str, tuple[str, str, str]] = {}
        for template in self.templates:
            for attribute in template.attributes:
                if attribute.startswith(HEADER_PREFIX):
                    self.headers[attribute[len(HEADER_PREFIX):]] = attribute
                elif attribute in TRACE_FIELDS:
                    fields.setdefault(attribute, (TRACE_FIELDS[attribute], attribute,
                                                  template.text))
                else:
                    raise ConfigError(
                        f"key template {template.text!r}: a trace does not carry {attribute} "
                        "(a trace line carries headers, path, host and method)")
        self.fields = tuple(fields.values())  # (field, attribute, the first template to read it)

    def render(self, row: Mapping[str, Any], name: str, line: int) -> tuple[str, ...]:
        """The keys of one trace line; ``TraceError`` for a field the templates need."""
        values: dict[str, str] = {}
        if self.headers:
            headers = row.get("headers")
            if not isinstance(headers, dict):
                raise TraceError("expected an object of request headers (for --key-template)",
                                 path=name, line=line, field="headers")
            wanted = self.headers
            for key, value in headers.items():
                attribute = wanted.get(key.lower())
                if attribute is not None:  # names that differ only in case: one header
                    text = value if type(value) is str else header_text(value)
                    values[attribute] = (f"{values[attribute]},{text}" if attribute in values
                                         else text)
        for field, attribute, text in self.fields:
            value = row.get(field)
            if type(value) is not str:
                problem = (f"missing (key template {text!r} reads {attribute})" if value is None
                           else f"expected a string (for key template {text!r})")
                raise TraceError(problem, path=name, line=line, field=field)
            values[attribute] = value
        return tuple([template.render(values) for template in self.templates])


def trace_format(name: str) -> tuple[str, str | None]:
    """(``csv``, ``jsonl`` or ``parquet``; ``gzip``, ``zstd`` or ``None``) from the suffixes.

    >>> trace_format("day.csv.zst"), trace_format("t.jsonl"), trace_format("a.PARQUET")
    (('csv', 'zstd'), ('jsonl', None), ('parquet', None))
    """
    lower = name.lower()
    compression = None
    for suffix, kind in COMPRESSIONS.items():
        if lower.endswith(suffix):
            lower, compression = lower.removesuffix(suffix), kind
            break
    if lower.endswith(".csv"):
        return "csv", compression
    if lower.endswith(".parquet") or lower.endswith(".pq"):
        return "parquet", compression
    return "jsonl", compression


COMPRESSIONS = {".gz": "gzip", ".zst": "zstd", ".zstd": "zstd"}


def read_trace(path: str | Path, *, key_templates: Sequence[KeyTemplate] = (),
               key_field: str | None = None, seed: int = 0,
               fields: FieldMap | None = None) -> Trace:
    """Read a trace file: CSV, JSON Lines or Parquet, by suffix (``.gz`` or ``.zst`` after
    it for compressed text), with the columnar reader; the per-row reader below reads what
    the columnar one declines and locates errors.

    ``fields`` (``--from`` / ``--map``) reads a gateway's log instead of a trace.
    Raises ``TraceError`` naming the file, the 1-based line (Parquet: row) and the field
    for bad input.
    """
    name = str(path)
    fmt, compression = trace_format(name)
    if fields is not None:
        return _read_log(name, fmt, fields, seed)
    if not key_templates:
        from tokenlimit.sim.columnar import read_columnar

        try:
            data = None if compression is None else _read_bytes(name)
        except (OSError, EOFError, zlib.error, ValueError):
            data = b""  # the per-row reader meets the same problem and names it
        if data != b"" or compression is None:
            fast = read_columnar(name, fmt, data, key_field=key_field, seed=seed)
            if fast is not None:
                return fast
    return read_trace_rows(name, key_templates=key_templates, key_field=key_field, seed=seed)


def _read_log(name: str, fmt: str, fields: FieldMap, seed: int) -> Trace:
    from tokenlimit.sim.log_reader import read_log

    try:
        data = _read_bytes(name)
    except OSError as exc:
        raise TraceError(f"cannot read: {exc.strerror or exc}", path=name) from exc
    except (EOFError, gzip.BadGzipFile, zlib.error, ValueError) as exc:
        raise TraceError(f"not a readable gzip or zstd file ({exc})", path=name) from exc
    trace: Trace = read_log(name, fmt, data, fields, seed)
    return trace


def read_trace_rows(path: str | Path, *, key_templates: Sequence[KeyTemplate] = (),
                    key_field: str | None = None, seed: int = 0) -> Trace:
    """``read_trace`` one row at a time in Python: slower, reads every shape (key
    templates, string numbers, ``keys`` in CSV) and names the line of the first error."""
    name = str(path)
    fmt, _ = trace_format(name)
    plan = TraceKeys(key_templates) if key_templates else None
    columns = _Columns()
    try:
        if fmt == "parquet":
            rows: Iterator[tuple[int, Mapping[str, Any]]] = _parquet_rows(name)
        elif fmt == "csv":
            text = _read_bytes(name).decode("utf-8-sig")
            rows = _csv_rows(io.StringIO(text, newline=""), name)
        else:
            rows = _jsonl_rows(_open_text(name), name)
        for line, row in rows:
            _add(columns, row, name, line, plan, key_field)
    except OSError as exc:
        raise TraceError(f"cannot read: {exc.strerror or exc}", path=name) from exc
    except (UnicodeDecodeError, EOFError, gzip.BadGzipFile, zlib.error, ValueError) as exc:
        raise TraceError(f"not a readable text, gzip or zstd file ({exc})", path=name) from exc
    return _finish(columns, name, seed)


def check_rows(name: str, rows: Iterable[tuple[int, Mapping[str, Any]]],
               key_field: str | None = None) -> None:
    """Raise the per-row reader's located ``TraceError`` for the first bad row, if any."""
    columns = _Columns()
    for line, row in rows:
        _add(columns, row, name, line, None, key_field)


def _read_bytes(name: str) -> bytes:
    compression = trace_format(name)[1]
    if compression == "gzip":
        with gzip.open(name, "rb") as stream:
            return stream.read()
    if compression == "zstd":
        import zstandard

        with open(name, "rb") as raw, zstandard.ZstdDecompressor().stream_reader(raw) as stream:
            return stream.read()
    return Path(name).read_bytes()


def _open_text(name: str) -> IO[str]:
    if trace_format(name)[1] is not None:
        return io.TextIOWrapper(io.BytesIO(_read_bytes(name)), encoding="utf-8-sig",
                                newline="")
    return open(name, encoding="utf-8-sig", newline="")


def _parquet_rows(name: str) -> Iterator[tuple[int, Mapping[str, Any]]]:
    """A Parquet file's rows as mappings (row numbers from 1); absent values left out."""
    import polars as pl

    try:
        frame = pl.read_parquet(name)
    except pl.exceptions.PolarsError as exc:
        raise TraceError(f"not a readable Parquet file ({exc})".splitlines()[0],
                         path=name) from exc
    for number, row in enumerate(frame.iter_rows(named=True), start=1):
        yield number, {k: v for k, v in row.items() if v is not None}


def _jsonl_rows(stream: IO[str], name: str) -> Iterator[tuple[int, Mapping[str, Any]]]:
    with stream:
        yield from _json_lines(stream, name)


def _json_lines(stream: IO[str], name: str) -> Iterator[tuple[int, Mapping[str, Any]]]:
    for number, text in enumerate(stream, start=1):
        if not text.strip():
            continue
        try:
            row = json.loads(text)
        except json.JSONDecodeError as exc:
            raise TraceError(f"not valid JSON ({exc.msg} at column {exc.colno})",
                             path=name, line=number) from exc
        if not isinstance(row, dict):
            raise TraceError("expected a JSON object per line", path=name, line=number)
        yield number, row


def _csv_rows(stream: IO[str], name: str) -> Iterator[tuple[int, Mapping[str, Any]]]:
    reader = csv.reader(stream)
    header = next(reader, None)
    if header is None:
        return
    header = [h.strip() for h in header]
    if "ts" not in header and "timestamp" not in header:
        shown = ",".join(header)
        raise TraceError(f"the header has no 'ts' (or 'timestamp') column; it reads {shown!r} "
                         "(columns are separated by commas)", path=name, line=1, field="ts")
    duplicated = sorted({h for h in header if header.count(h) > 1})
    if duplicated:
        raise TraceError("the header names this column twice", path=name, line=1,
                         field=duplicated[0])
    for row in reader:
        number = reader.line_num
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if len(row) != len(header):
            raise TraceError(f"{len(row)} columns where the header has {len(header)}",
                             path=name, line=number)
        record: dict[str, Any] = {}
        headers: dict[str, str] = {}
        for column, value in zip(header, row, strict=True):
            if column.startswith("headers."):
                if value != "":
                    headers[column[len("headers."):]] = value
            elif value != "":
                record[column] = value
        if "keys" in record:
            try:
                record["keys"] = json.loads(record["keys"])
            except json.JSONDecodeError as exc:
                raise TraceError("keys must be a JSON array of strings", path=name,
                                 line=number, field="keys") from exc
        if "id" in record:
            record["id"] = csv_id(record["id"])
        if headers:
            record["headers"] = headers
        yield number, record


_MAX_TOKENS = 10**15  # beyond any real usage, and exact in the float64 the engines use
_MAX_INT = 2**62


def _number(row: Mapping[str, Any], field: str, name: str, line: int) -> float | None:
    value: Any = row.get(field)
    kind = type(value)
    if kind is float:
        if value - value == 0.0:  # finite: inf - inf and nan - nan are nan
            return float(value)
    elif kind is int and -_MAX_INT < value < _MAX_INT:
        return float(value)
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise TraceError(f"{value!r} is not a number", path=name, line=line,
                             field=field) from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TraceError(f"expected a number, got {json.dumps(value)}", path=name, line=line,
                         field=field)
    if isinstance(value, int) and not -_MAX_INT < value < _MAX_INT:
        raise TraceError("is out of range", path=name, line=line, field=field)
    if not math.isfinite(value):
        raise TraceError("must be a finite number", path=name, line=line, field=field)
    return float(value)


def _tokens(row: Mapping[str, Any], field: str, name: str, line: int) -> int | None:
    value: Any = row.get(field)
    if type(value) is int and 0 <= value <= _MAX_TOKENS:
        return int(value)
    number = _number(row, field, name, line)
    if number is None:
        return None
    if number < 0 or number != int(number) or number > _MAX_TOKENS:
        raise TraceError(f"token counts are whole numbers from 0 to 10**15, got {row[field]}",
                         path=name, line=line, field=field)
    return int(number)


def _keys(row: Mapping[str, Any], name: str, line: int, plan: TraceKeys | None,
          key_field: str | None) -> list[str] | tuple[str, ...]:
    if key_field is not None:
        if key_field not in row:
            raise TraceError("missing (named by --key-field)", path=name, line=line,
                             field=key_field)
        value = row[key_field]
        return [str(v) for v in value] if isinstance(value, list) else [str(value)]
    if plan is not None:
        return plan.render(row, name, line)
    if "keys" in row:
        keys = row["keys"]
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise TraceError("expected a list of strings", path=name, line=line, field="keys")
        return keys
    if "key" in row:
        if not isinstance(row["key"], str):
            raise TraceError("expected a string", path=name, line=line, field="key")
        return [row["key"]]
    if "headers" in row:
        raise TraceError("the line has headers but no --key-template was given", path=name,
                         line=line, field="headers")
    raise TraceError("no rate-limit key: give key, keys, or headers with --key-template",
                     path=name, line=line, field="key")


def _add(c: _Columns, row: Mapping[str, Any], name: str, line: int,
         plan: TraceKeys | None, key_field: str | None) -> None:
    if "ts" in row:
        ts = _number(row, "ts", name, line)
        prompt = _tokens(row, "prompt_tokens", name, line)
        completion = _tokens(row, "completion_tokens", name, line)
    elif "timestamp" in row:  # Mooncake / AIPerf: milliseconds, input/output lengths
        ms = _number(row, "timestamp", name, line)
        ts = None if ms is None else ms / 1000.0
        prompt = _tokens(row, "input_length", name, line)
        completion = _tokens(row, "output_length", name, line)
    else:
        raise TraceError("missing (or 'timestamp' in milliseconds)", path=name, line=line,
                         field="ts")
    if ts is None:
        raise TraceError("must be a number", path=name, line=line, field="ts")
    latency = _number(row, "latency", name, line) or 0.0
    if latency < 0:
        raise TraceError("must be >= 0 seconds", path=name, line=line, field="latency")
    total = _tokens(row, "total_tokens", name, line)
    prompt = prompt or 0
    if completion is None and total is not None:
        completion = max(total - prompt, 0)
    if completion is not None and total is None:
        total = prompt + completion
    keys = _keys(row, name, line, plan, key_field)
    position = c.offset + len(c.ts)
    if "id" in row:
        if not isinstance(row["id"], str | int) or isinstance(row["id"], bool):
            raise TraceError("expected a string or an integer", path=name, line=line,
                             field="id")
        if c.ids is None:
            c.ids = list(range(c.offset, position))
    if c.ids is not None:
        c.ids.append(row.get("id", position))
    status = row.get("status")
    if status is not None and c.status is None:
        c.status = [None] * len(c.ts)
    if c.status is not None:
        c.status.append(None if status is None else str(status))
    c.ts.append(ts)
    c.latency.append(latency)
    c.prompt.append(prompt)
    c.completion.append(MISSING if completion is None else completion)
    c.total.append(MISSING if total is None else total)
    for key in keys:
        c.index.append(c.names.setdefault(key, len(c.names)))
    c.ptr.append(len(c.index))


def _finish(c: _Columns, name: str, seed: int) -> Trace:
    prompt = np.frombuffer(c.prompt, dtype=np.int64).copy()
    completion = np.frombuffer(c.completion, dtype=np.int64).copy()
    total = np.frombuffer(c.total, dtype=np.int64).copy()
    ptr = np.frombuffer(c.ptr, dtype=np.int64).copy()
    index = np.frombuffer(c.index, dtype=np.int64).copy()
    imputed = impute_completion(completion, ptr, index, seed)
    total[imputed] = prompt[imputed] + completion[imputed]
    return Trace(
        path=name, ts=np.frombuffer(c.ts, dtype=np.float64).copy(),
        latency=np.frombuffer(c.latency, dtype=np.float64).copy(),
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=total,
        key_ptr=ptr, key_index=index, key_names=tuple(c.names), imputed=imputed,
        ids=None if c.ids is None or _positions(c.ids, c.offset) else tuple(c.ids),
        status=None if c.status is None else tuple(c.status))


def _positions(ids: Sequence[str | int], offset: int = 0) -> bool:
    """Whether every id is its request's position (``Trace.ids`` is then ``None``)."""
    return all(type(i) is int and i == n for n, i in enumerate(ids, start=offset))


def read_block(name: str, fmt: str, data: bytes, *, key_field: str | None, seed: int,
               first_row: int, first_line: int) -> Trace:
    """One block of a CSV (with the header line in front) or JSON Lines file: its first
    request is the file's ``first_row`` and its first line the file's ``first_line``.
    Errors name the line in the file."""
    from tokenlimit.sim.columnar import read_columnar

    fast = read_columnar(name, fmt, data, key_field=key_field, seed=seed, first_row=first_row)
    if fast is not None:
        return fast
    columns = _Columns()
    columns.offset = first_row
    shift = first_line - (2 if fmt == "csv" else 1)  # block lines after its header
    try:
        text = io.StringIO(data.decode("utf-8-sig"), newline="")
        rows = _csv_rows(text, name) if fmt == "csv" else _json_lines(text, name)
        for line, row in rows:
            _add(columns, row, name, line, None, key_field)
    except TraceError as exc:
        where = None if exc.line is None else exc.line + shift
        raise TraceError(exc.message, path=name, line=where, field=exc.field) from None
    except UnicodeDecodeError as exc:
        raise TraceError(f"not a readable text file ({exc})", path=name) from exc
    return _finish(columns, name, seed)
