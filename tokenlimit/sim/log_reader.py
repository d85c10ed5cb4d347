"""Gateway logs as traces: a ``FieldMap`` (``--from PRESET`` / ``--map``) applied with polars.

The log is read whole into columns (JSON Lines with nested objects, CSV, Parquet), each trace
field is taken from its log field and converted: ISO-8601 or numeric times, milliseconds,
token counts written as text, ``-`` (Envoy's "no value") as absent. A line answered 429 is
kept as demand with its usage unknown. The first value that does not convert is reported
with its file, line (Parquet: row) and log field.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from tokenlimit.errors import TraceError
from tokenlimit.sim.columnar import Declined, build_trace, exact_quotient, status_text
from tokenlimit.sim.log_fields import FieldMap
from tokenlimit.sim.row_reader import json_object

if TYPE_CHECKING:
    import polars as pl

    from tokenlimit.sim.trace_table import Trace

ABSENT = ("", "-")  # Envoy prints "-" for a field it has no value for
LIMITED_STATUS = "429"
_BOM = b"\xef\xbb\xbf"


def read_log(name: str, fmt: str, data: bytes, fields: FieldMap, seed: int,
             first_row: int = 0) -> Any:
    """The trace in a gateway log (``data``: the file's decompressed bytes, or one block of
    its lines, the CSV header in front, whose first request is the file's ``first_row``).
    Errors name the line in ``data``. A UTF-8 byte order mark in front (a log saved by a
    Windows editor or PowerShell) is not part of the first line: polars' JSON reader refused
    the whole log at "character 0" without naming a line."""
    if fmt == "jsonl":
        data = data.removeprefix(_BOM)
    return log_trace(_frame(name, fmt, data, fields), Locator(name, fmt, data), fields, seed,
                     first_row)


def read_log_batch(name: str, frame: pl.DataFrame, fields: FieldMap, seed: int,
                   first_row: int, file_row: int | None = None) -> Any:
    """The trace in one batch of a Parquet log ``name``, whose first row is the request
    ``first_row`` of its trace and the row ``file_row`` of the file (the same in a file of
    its own); errors name the row in the file."""
    located = Locator(name, "parquet", b"", first_row if file_row is None else file_row)
    return log_trace(frame, located, fields, seed, first_row)


def log_columns(names: list[str], fields: FieldMap) -> list[str]:
    """The columns of a log (``names``) that ``fields`` reads (a dotted field: its object)."""
    wanted = [*fields.sources().values(), *([fields.within] if fields.within else [])]
    return [n for n in names if any(w == n or w.startswith(n + ".") for w in wanted)]


def log_trace(frame: pl.DataFrame, located: Locator, fields: FieldMap, seed: int,
              first_row: int = 0) -> Any:
    """The trace in a log's ``frame``, each trace field converted from its log field."""
    import polars as pl

    name = located.name
    if frame.height == 0:  # an empty log, or a block of its blank lines: no requests
        from tokenlimit.sim.row_reader import RowColumns, finish_rows

        empty: Trace = finish_rows(RowColumns(), name, seed)
        return empty
    columns: dict[str, tuple[str, pl.Series]] = {}
    decoded: dict[str, pl.Series] = {}  # JSON text columns, decoded once however often read
    for trace_field, log_field in fields.sources().items():
        values = _column(frame, log_field, located, decoded)
        if values is None and fields.within and log_field not in frame.columns:
            inside = f"{fields.within}.{log_field}"
            if (values := _column(frame, inside, located, decoded)) is not None:
                log_field = inside
        if values is None:
            if trace_field == "ts":
                raise TraceError("missing from every line", path=name,
                                 line=located.line(0), field=log_field)
            continue
        columns[trace_field] = (log_field, values)
    n = frame.height
    start = _instants(columns["ts"][0], columns["ts"][1], fields.ts_unit, located)
    ts = start.seconds()
    if ts.null_count():
        raise TraceError("missing", path=name, line=located.line(_first(ts.is_null())),
                         field=fields.ts)
    canonical: dict[str, Any] = {"ts": ts}
    # A line without the key field (Kong's unauthenticated routes, a request without the
    # key's header) has the empty key, as the plug-in renders a template whose header is
    # absent; so does Envoy's "-" for the header (it was the key "-", a key of its own that
    # no request has); a key field no line has shows in the report's warning that no key
    # matches.
    canonical["key"] = (_absent_as_null(columns["key"][1].cast(pl.String)).fill_null("")
                        if "key" in columns else pl.repeat("", n, dtype=pl.String, eager=True))
    if "latency" in columns:
        seconds = _numbers(columns["latency"][0], columns["latency"][1], located)
        canonical["latency"] = (exact_quotient(seconds, 1000.0) if fields.latency_unit == "ms"
                                else seconds)
    elif "end" in columns:
        end = _instants(columns["end"][0], columns["end"][1], fields.ts_unit, located)
        canonical["latency"] = end.since(start)
    if "latency" in canonical:
        latency = canonical["latency"]
        negative = (latency < 0).fill_null(False)
        if negative.any():
            source = fields.latency or fields.end or "latency"
            raise TraceError("the request ends before it starts" if fields.end and not
                             fields.latency else "must be >= 0",
                             path=name, line=located.line(_first(negative)), field=source)
    status = None
    if "status" in columns:
        status = _absent_as_null(status_text(columns["status"][1]))
        canonical["status"] = status
    limited = (status == LIMITED_STATUS).fill_null(False) if status is not None else None
    for trace_field in ("prompt_tokens", "completion_tokens", "total_tokens"):
        if trace_field not in columns:
            continue
        log_field, values = columns[trace_field]
        tokens = _numbers(log_field, values, located)
        bad = ((tokens < 0) | (tokens > 10**15) | (tokens != tokens.floor())).fill_null(False)
        if bad.any():
            raise TraceError("token counts are whole numbers from 0 to 10**15", path=name,
                             line=located.line(_first(bad)), field=log_field)
        if limited is not None and trace_field != "prompt_tokens":
            tokens = pl.select(pl.when(limited).then(None).otherwise(tokens)).to_series()
        canonical[trace_field] = tokens
    if "id" in columns:
        ids = columns["id"][1]
        canonical["id"] = ids if ids.dtype.is_integer() else ids.cast(pl.String)
    table = pl.DataFrame(canonical, height=n) if n else pl.DataFrame(
        {k: v for k, v in canonical.items()})
    try:
        # A CSV log's ids read as a CSV trace's: an integer where written as one.
        return build_trace(table, name, seed, first_row=first_row, csv=located.fmt == "csv")
    except Declined:
        raise TraceError("could not be read as a trace", path=name) from None


def limited_count(trace: Any) -> int:
    """How many of a trace's requests the gateway answered 429 when they were recorded."""
    if trace.status is None:
        return 0
    return sum(1 for s in trace.status if s == LIMITED_STATUS)


class Locator:
    """Line numbers of frame rows (the slow pass is taken only for an error)."""

    def __init__(self, name: str, fmt: str, data: bytes, first_row: int = 0) -> None:
        self.name, self.fmt, self.data, self.first_row = name, fmt, data, first_row

    def line(self, row: int) -> int:
        if self.fmt == "parquet":
            return self.first_row + row + 1
        if self.fmt == "csv":
            return _csv_line(self.data, row)
        seen = -1
        for number, text in enumerate(io.BytesIO(self.data), start=1):
            if text.strip():
                seen += 1
                if seen == row:
                    return number
        return row + 1


def _csv_line(data: bytes, row: int) -> int:
    """The line of CSV record ``row`` (from 0, after the header; blank lines skipped, as
    ``_frame`` drops them), named as the trace reader names a row: where the record ends (a
    line break inside quotes belongs to its record)."""
    import csv

    reader = csv.reader(io.StringIO(data.decode("utf-8-sig", errors="replace"), newline=""))
    next(reader, None)
    seen = -1
    for record in reader:
        if any(record):
            seen += 1
            if seen == row:
                return reader.line_num
    return row + 2


def _first(mask: pl.Series) -> int:
    return int(np.flatnonzero(mask.to_numpy())[0])


def _frame(name: str, fmt: str, data: bytes, fields: FieldMap) -> pl.DataFrame:
    import polars as pl

    if fmt == "jsonl" and not _blank(data):
        try:
            return _wanted_fields(data, fields)
        except pl.exceptions.PolarsError:
            pass  # an id whose type changes, or a bad line: every field, inferred (below)
    try:
        if fmt == "parquet":
            return pl.read_parquet(io.BytesIO(data))
        if fmt == "csv":
            frame = pl.read_csv(data, infer_schema=False, raise_if_empty=False)
            # polars reads a blank line (an export's last line, too) as a row of nulls
            blank = pl.all_horizontal(pl.all().is_null())
            return frame.filter(~blank) if frame.width and frame.select(blank.any()).item() \
                else frame
        if _blank(data):
            return pl.DataFrame()  # polars cannot infer a schema from blank lines
        return pl.read_ndjson(data, infer_schema_length=None)
    except pl.exceptions.PolarsError as exc:
        if fmt == "jsonl":
            _locate_json_error(name, data)
        raise TraceError(f"not a readable {fmt} log ({exc})".splitlines()[0],
                         path=name) from exc


def _blank(data: bytes) -> bool:
    """Whether ``data`` holds only white space (``data.strip()`` would copy a whole log).

    >>> _blank(b" \\n\\r\\n"), _blank(b"\\n{}\\n")
    (True, False)
    """
    return _NOT_BLANK.search(data) is None


_NOT_BLANK = re.compile(rb"\S")
_PROBE = 1 << 16  # bytes of a JSON Lines log whose lines tell its id's type


def _wanted_fields(data: bytes, fields: FieldMap) -> pl.DataFrame:
    """A JSON Lines log's frame of only the fields ``fields`` reads (each prefix of a dotted
    name: the log decides which it has), read in one pass as text: numbers in their shortest
    form (the same doubles), objects as JSON text, decoded where a dotted name reaches into
    them (``_column``). polars' inference of every field of every line took four times as
    long (1 million ASM access-log lines: 2.8 s against 0.7 s) and held every field. The id
    keeps its type: an integer in the first lines is read as one (a later id that is not
    raises ``PolarsError``, and the caller reads every field, inferred). A field no line has
    is left out, as inference leaves it out."""
    import polars as pl

    names = {*fields.sources().values(), *([fields.within] if fields.within else [])}
    heads = {".".join(n.split(".")[:k]) for n in names for k in range(1, n.count(".") + 2)}
    schema: dict[str, Any] = dict.fromkeys(sorted(heads), pl.String)
    if fields.id is not None and fields.id in schema:
        first = data[:_PROBE]
        probe = pl.read_ndjson(first[:first.rfind(b"\n") + 1] or data,
                               infer_schema_length=None)
        if fields.id in probe.columns and probe[fields.id].dtype.is_integer():
            schema[fields.id] = pl.Int64
    frame = pl.read_ndjson(data, schema=schema)
    return frame.select([c for c in frame.columns if frame[c].null_count() < frame.height])


def _locate_json_error(name: str, data: bytes) -> None:
    for number, raw in enumerate(io.BytesIO(data), start=1):
        if not raw.strip():
            continue
        json_object(raw, name, number)


def _column(frame: pl.DataFrame, path: str, located: Locator,
            decoded: dict[str, pl.Series]) -> pl.Series | None:
    """The values of a (dotted) field, or ``None`` when the log has no such field. A dotted
    name reaches into objects, and into JSON objects printed as text (decoded once into
    ``decoded``, by field); a ``*`` part stands for any field of an object (``_reach``)."""
    if path in frame.columns:
        return frame[path]
    parts = path.split(".")
    for split in range(len(parts) - 1, 0, -1):
        head = ".".join(parts[:split])
        if head in frame.columns:
            return _reach(frame[head], head, parts[split:], located, decoded)
    return None


def _reach(values: pl.Series, head: str, parts: list[str], located: Locator,
           decoded: dict[str, pl.Series]) -> pl.Series | None:
    """The field ``parts`` inside the objects ``values`` of the field ``head``, or ``None``.

    ``*`` is any field of the object, row by row the first that holds the rest: Kong 3.6 to
    3.9 log a plug-in's usage under its name (``ai.ai-proxy.usage``,
    ``ai.ai-proxy-advanced.usage``), later ones under ``ai.proxy.usage``, and a preset naming
    one of them read no usage from the others' logs (every request imputed, and nothing
    said so)."""
    import polars as pl

    for at, part in enumerate(parts):
        if values.dtype == pl.String:
            if head not in decoded:
                decoded[head] = _json_objects(head, values, located)
            values = decoded[head]
        if not isinstance(values.dtype, pl.Struct):
            return None
        names = [f.name for f in values.dtype.fields]
        if part == "*":
            found = [inner for name in names
                     if isinstance(values.struct.field(name).dtype, pl.Struct)
                     and (inner := _reach(values.struct.field(name), f"{head}.{name}",
                                          parts[at + 1:], located, decoded)) is not None]
            return pl.select(pl.coalesce(found)).to_series() if found else None
        if part not in names:
            return None
        values, head = values.struct.field(part), f"{head}.{part}"
    return values


def _json_objects(field: str, values: pl.Series, located: Locator) -> pl.Series:
    """A field's JSON objects printed as text (``-`` or empty: none), as a struct column."""
    import polars as pl

    text = _absent_as_null(values)
    try:
        return text.str.json_decode(infer_schema_length=None)
    except pl.exceptions.PolarsError:
        for row, value in enumerate(text.to_list()):
            try:
                whole = value is None or isinstance(json.loads(value), dict)
            except ValueError:
                whole = False
            if not whole:
                raise TraceError(f"{value!r} is not a JSON object", path=located.name,
                                 line=located.line(row), field=field) from None
        raise TraceError("its JSON objects do not fit together", path=located.name,
                         field=field) from None


def _absent_as_null(values: pl.Series) -> pl.Series:
    """Text values with Envoy's ``-`` and empty text (``ABSENT``) as null; other values as
    they are."""
    import polars as pl

    if values.dtype == pl.String:
        return pl.select(pl.when(values.is_in(ABSENT)).then(None).otherwise(values)).to_series()
    return values


def _numbers(field: str, values: pl.Series, located: Locator) -> pl.Series:
    """Float64 values (text such as "21" converted; absent as null)."""
    import polars as pl

    values = _absent_as_null(values)
    if values.dtype == pl.Boolean or not (values.dtype == pl.String or
                                          values.dtype.is_numeric()):
        raise TraceError(f"expected numbers, the log has {values.dtype}", path=located.name,
                         line=located.line(0), field=field)
    converted = values.cast(pl.Float64, strict=False)
    bad = (converted.is_null() & values.is_not_null()) | ~converted.is_finite().fill_null(True)
    if bad.any():
        row = _first(bad)
        raise TraceError(f"{values[row]!r} is not a number", path=located.name,
                         line=located.line(row), field=field)
    return converted


@dataclass(frozen=True, slots=True)
class Instants:
    """A log's times as it has them: ``values`` in ``per_second`` units since the epoch
    (integer microseconds for ISO-8601 text and timestamps; seconds or milliseconds, as
    numbers, otherwise). Kept apart from seconds so that a duration from two of them is
    their difference in those units: Unix seconds near 1.8e9 as doubles are 2.4e-7 apart,
    and end - start as seconds turned 1.8 s into 1.7999999523 s."""

    values: pl.Series
    per_second: float

    def seconds(self) -> pl.Series:
        """Unix seconds, each the double nearest the exact value."""
        return (exact_quotient(self.values, self.per_second) if self.per_second != 1
                else self.values)

    def since(self, start: Instants) -> pl.Series:
        """Seconds from ``start`` to these instants, row by row."""
        if self.per_second == start.per_second:
            return Instants(self.values - start.values, self.per_second).seconds()
        return self.seconds() - start.seconds()


def _iso_times(values: pl.Series) -> pl.Series:
    """ISO-8601 text as UTC instants (null where a value is none). polars takes one form from
    the first value and read a value in another as no time: a log mixing times with and
    without an offset (``2026-11-02 09:00:00.1``, then ``2026-11-02T17:00:01+08:00``) stopped
    at the second, "is not a time". The values left are parsed again, in the form of the
    first of them, while that reads any."""
    import polars as pl

    parsed = pl.Series([None] * values.len(), dtype=pl.Datetime("us", "UTC"))
    left = values
    while (count := left.is_not_null().sum()):
        try:
            again = left.str.to_datetime(time_unit="us", time_zone="UTC", strict=False)
        except pl.exceptions.PolarsError:
            break
        parsed = parsed.fill_null(again)
        unread = again.is_null() & left.is_not_null()
        if unread.sum() == count:
            break
        left = pl.select(pl.when(unread).then(left)).to_series()
    return parsed


def _instants(field: str, values: pl.Series, unit: str, located: Locator) -> Instants:
    """The times in a log field: epoch numbers (``unit`` s or ms), ISO-8601 text or
    timestamps."""
    import polars as pl

    values = _absent_as_null(values)
    if values.dtype == pl.String:
        numeric = values.cast(pl.Float64, strict=False)
        if numeric.is_null().sum() == values.is_null().sum():
            values = numeric
        else:
            parsed = _iso_times(values)
            bad = parsed.is_null() & values.is_not_null()
            if bad.any():
                row = _first(bad)
                raise TraceError(f"{values[row]!r} is not a time (ISO-8601 or Unix "
                                 f"{'milliseconds' if unit == 'ms' else 'seconds'})",
                                 path=located.name, line=located.line(row), field=field)
            return Instants(parsed.dt.epoch("us"), 1e6)
    if isinstance(values.dtype, pl.Datetime):
        if values.dtype.time_zone is None:
            values = values.dt.replace_time_zone("UTC")
        return Instants(values.dt.epoch("us"), 1e6)
    numbers = _numbers(field, values, located)
    if numbers.null_count():
        raise TraceError("missing", path=located.name,
                         line=located.line(_first(numbers.is_null())), field=field)
    return Instants(numbers, 1000.0 if unit == "ms" else 1.0)
