"""Reading a trace one row at a time in Python: every shape, and the located errors.

The columnar reader (``columnar.py``) reads the common shapes in bulk; this reader reads
what it declines (string numbers, ``keys`` as JSON in CSV, headers with key templates, odd
lines) and names the file, line and field of the first bad value. ``readers.py`` chooses.
"""

from __future__ import annotations

import csv
import json
import math
import re
from array import array
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import IO, Any

import numpy as np

from tokenlimit.bucket.key_templates import HEADER_PREFIX, KeyTemplate, header_text
from tokenlimit.errors import ConfigError, TraceError
from tokenlimit.rules.gomatch import go_string
from tokenlimit.sim.imputation import MISSING, impute_completion
from tokenlimit.sim.records import csv_id, status_text
from tokenlimit.sim.trace_table import Trace


class RowColumns:
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


# A \uD800-\uDFFF escape: json keeps an unpaired one as a lone surrogate, which no key can
# hold; Go's decoder (the service's) reads it as U+FFFD.
SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def _go_strings(value: Any) -> Any:
    """``value`` with every string as Go decodes it (lone surrogates as U+FFFD)."""
    if isinstance(value, str):
        return go_string(value)
    if isinstance(value, dict):
        return {go_string(k): _go_strings(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_go_strings(v) for v in value]
    return value


def json_object(line: str | bytes, name: str, number: int) -> dict[str, Any]:
    """One JSON Lines line as an object, or ``TraceError`` naming the file, line and column.

    The line is parsed without its line end: a line cut short is reported at its end, not at
    "column 1" of a second line that json would count from the newline.

    >>> json_object('{"ts": 2, "key": "b",\\n', "t.jsonl", 2)
    Traceback (most recent call last):
    ...
    tokenlimit.errors.TraceError: t.jsonl:2: not valid JSON (Expecting property name enclosed \
in double quotes at column 22)
    """
    try:
        row = json.loads(line.rstrip())
    except json.JSONDecodeError as exc:
        # Some of json's messages end in "at" ("Unterminated string starting at").
        raise TraceError(f"not valid JSON ({exc.msg.removesuffix(' at')} at column "
                         f"{exc.colno})", path=name, line=number) from exc
    except UnicodeDecodeError as exc:
        raise TraceError(f"not valid JSON ({exc})", path=name, line=number) from exc
    if not isinstance(row, dict):
        raise TraceError("expected a JSON object per line", path=name, line=number)
    return row


def json_lines(stream: IO[str], name: str) -> Iterator[tuple[int, Mapping[str, Any]]]:
    for number, text in enumerate(stream, start=1):
        if not text.strip():
            continue
        row = json_object(text, name, number)
        if "\\u" in text and SURROGATE_ESCAPE.search(text):
            row = _go_strings(row)
        yield number, row


def csv_rows(stream: IO[str], name: str) -> Iterator[tuple[int, Mapping[str, Any]]]:
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


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ISO_DATE = re.compile(r"\d{4}-\d\d-\d\d[T ]")
_MICROSECOND = timedelta(microseconds=1)


def moment_seconds(value: Any, kind: type[datetime] | type[timedelta]) -> float | None:
    """Unix seconds of a timestamp (a naive one is UTC) or the seconds of a duration, for a
    ``value`` of ``kind`` (a Parquet ``ts`` or ``latency`` column of those types), from whole
    microseconds by one correctly rounded division, as the columnar reader computes them;
    ``None`` for any other value.

    >>> moment_seconds(datetime(2026, 11, 2, 9, 0, 0, 78000), datetime)
    1793610000.078
    >>> moment_seconds(timedelta(seconds=1.5), datetime), moment_seconds(1.5, timedelta)
    (None, None)
    """
    if not isinstance(value, kind):
        return None
    if isinstance(value, datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return ((moment - _EPOCH) // _MICROSECOND) / 1e6
    return (value // _MICROSECOND) / 1e6


def _number(row: Mapping[str, Any], field: str, name: str, line: int,
            moment: type[datetime] | type[timedelta] | None = None) -> float | None:
    """The number in ``field``; ``moment``: a value of that type is one too, in seconds."""
    value: Any = row.get(field)
    kind = type(value)
    if kind is float:
        if value - value == 0.0:  # finite: inf - inf and nan - nan are nan
            return float(value)
    elif kind is int and -_MAX_INT < value < _MAX_INT:
        return float(value)
    if value is None:
        return None
    if moment is not None and (seconds := moment_seconds(value, moment)) is not None:
        return seconds
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            hint = (" (Unix seconds: a file with ISO-8601 times reads as a log, with --map "
                    "ts=ts,key=key)" if field == "ts" and _ISO_DATE.match(value) else "")
            raise TraceError(f"{value!r} is not a number{hint}", path=name, line=line,
                             field=field) from None
    if isinstance(value, Decimal):  # a Parquet DECIMAL column, which JSON would show as "76"
        raise TraceError(f"expected an integer or a float, got the decimal {value} (a "
                         "DECIMAL column: store it as integers or floats)", path=name,
                         line=line, field=field)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TraceError(f"expected a number, got {json.dumps(value, default=str)}",
                         path=name, line=line, field=field)
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


def add_row(c: RowColumns, row: Mapping[str, Any], name: str, line: int,
         plan: TraceKeys | None, key_field: str | None) -> None:
    if "ts" in row:
        ts = _number(row, "ts", name, line, datetime)
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
    latency = _number(row, "latency", name, line, timedelta) or 0.0
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
        c.status.append(None if status is None else status_text(status))
    c.ts.append(ts)
    c.latency.append(latency)
    c.prompt.append(prompt)
    c.completion.append(MISSING if completion is None else completion)
    c.total.append(MISSING if total is None else total)
    for key in keys:
        c.index.append(c.names.setdefault(key, len(c.names)))
    c.ptr.append(len(c.index))


def finish_rows(c: RowColumns, name: str, seed: int) -> Trace:
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
