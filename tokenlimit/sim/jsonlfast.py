"""A bulk reader for JSON Lines traces (the path a ten-million-line ``.jsonl`` file takes).

The file is read in blocks of whole lines. Each line of a block is parsed on its own by
orjson (in C); the block's columns are then checked and converted a field at a time (type
sets and numpy arrays), not line by line. A block is taken this way only when every line
has the common shape and the result is certainly the one the general reader in
``readers.py`` gives: a JSON object with a numeric ``ts`` (or ``timestamp`` in
milliseconds), one ``key`` string (or the ``--key-field`` string), optional numeric
``latency`` and whole token counts, ``id`` and ``status``. Any other block (string numbers,
``keys`` lists, a blank line with exotic whitespace...) goes through the general per-line
code. Any error (a bad line, bad UTF-8, a lone carriage return as a line break) makes
``read_jsonl_fast`` return ``None``: the general reader then reads the whole file again and
raises its own located message, so errors are exactly the general reader's.
"""

from __future__ import annotations

import json
import mmap
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson

from tokenlimit.errors import TraceError
from tokenlimit.sim.readers import MISSING, _add, _Columns, _finish
from tokenlimit.sim.trace_table import Trace

BLOCK = 1 << 20  # bytes per block, cut after a newline
_EXACT = 2.0**53  # larger numbers may have come from integers the general reader refuses
_MAX_TOKENS = 10**15
_ABSENT = object()
_NUMBERS = frozenset({int, float})
_BOM = b"\xef\xbb\xbf"


class _Decline(Exception):
    """The file needs the general reader (for its error message or its line breaks)."""


def read_jsonl_fast(data: bytes | mmap.mmap, name: str, seed: int,
                    key_field: str | None) -> Trace | None:
    """The trace in ``data`` (a JSON Lines file's bytes), or ``None`` when the general reader
    must read it (it then raises the located error)."""
    columns = _Columns()
    start = 3 if data[:3] == _BOM else 0
    size = len(data)
    line = 1
    try:
        while start < size:
            end = data.find(b"\n", min(start + BLOCK, size) - 1)
            end = size if end < 0 else end + 1
            block = data[start:end]
            if b"\r" in block and block.count(b"\r") != block.count(b"\r\n"):
                raise _Decline  # a lone CR breaks a line for the general reader
            lines = block.split(b"\n")
            if lines[-1] == b"":
                lines.pop()
            if not _fast_block(columns, lines, key_field):
                _slow_block(columns, lines, name, line, key_field)
            line += len(lines)
            start = end
    except (_Decline, TraceError, ValueError, RecursionError):
        return None
    return _finish(columns, name, seed)


def _slow_block(c: _Columns, lines: Sequence[bytes], name: str, first: int,
                key_field: str | None) -> None:
    """The general reader's per-line work on one block (any error: ``_Decline``)."""
    for number, raw in enumerate(lines, start=first):
        text = raw.decode("utf-8")
        if not text.strip():
            continue
        row = json.loads(text)
        if not isinstance(row, dict):
            raise _Decline
        _add(c, row, name, number, None, key_field)


def _fast_block(c: _Columns, lines: Sequence[bytes], key_field: str | None) -> bool:
    """Add one block's lines in bulk; ``False`` (nothing added) when it has another shape."""
    try:
        rows: list[Any] = list(map(orjson.loads, lines))
    except orjson.JSONDecodeError:  # perhaps a blank line
        try:
            rows = list(map(orjson.loads, [t for t in lines if t.strip()]))
        except orjson.JSONDecodeError:
            return False
    if not rows:
        return True
    if set(map(type, rows)) != {dict}:
        return False
    fields: set[str] = set().union(*rows)
    if "ts" in fields:
        ts = _floats(rows, "ts", required=True)
        prompt_field, completion_field = "prompt_tokens", "completion_tokens"
    elif "timestamp" in fields:
        ts = _floats(rows, "timestamp", required=True)
        if ts is not None:
            ts = ts / 1000.0
        prompt_field, completion_field = "input_length", "output_length"
    else:
        return False
    if ts is None:
        return False
    if key_field is None and "keys" in fields:
        return False
    key = "key" if key_field is None else key_field
    keys = [r.get(key) for r in rows]
    if set(map(type, keys)) != {str}:
        return False
    n = len(rows)
    latency = np.zeros(n) if "latency" not in fields else _floats(rows, "latency")
    prompt = _tokens(rows, prompt_field, fields)
    completion = _tokens(rows, completion_field, fields)
    total = _tokens(rows, "total_tokens", fields)
    if latency is None or prompt is None or completion is None or total is None:
        return False
    if np.any(latency < 0):
        return False
    latency[latency == 0] = 0.0  # -0.0 reads as 0.0
    ids = _ids(rows, fields)
    status = _status(rows, fields)
    if isinstance(ids, bool) or isinstance(status, bool):
        return False

    # Derived counts, as the general reader derives them line by line.
    prompt[prompt == MISSING] = 0
    no_completion, no_total = completion == MISSING, total == MISSING
    fill = no_completion & ~no_total
    completion[fill] = np.maximum(total[fill] - prompt[fill], 0)
    fill = ~no_completion & no_total
    total[fill] = prompt[fill] + completion[fill]

    base = len(c.ts)
    if ids is not None and c.ids is None:
        c.ids = list(range(base))
    if c.ids is not None:
        positions = range(base, base + n)
        c.ids.extend(positions if ids is None else
                     [p if v is _ABSENT else v for p, v in zip(positions, ids, strict=True)])
    if status is not None and c.status is None and any(s is not None for s in status):
        c.status = [None] * base
    if c.status is not None:
        c.status.extend([None] * n if status is None else
                        [None if s is None else str(s) for s in status])
    names = c.names
    for name in dict.fromkeys(keys):
        if name not in names:
            names[name] = len(names)
    c.ts.frombytes(np.ascontiguousarray(ts, dtype=np.float64).tobytes())
    c.latency.frombytes(latency.tobytes())
    c.prompt.frombytes(prompt.tobytes())
    c.completion.frombytes(completion.tobytes())
    c.total.frombytes(total.tobytes())
    c.index.frombytes(np.array(list(map(names.__getitem__, keys)), dtype=np.int64).tobytes())
    last = c.ptr[-1]
    c.ptr.frombytes(np.arange(last + 1, last + n + 1, dtype=np.int64).tobytes())
    return True


def _floats(rows: list[Any], field: str, required: bool = False) -> Any:
    """A float64 column, or ``None`` unless every value is a plain number (``null`` or
    absent reads as 0 when not ``required``) below 2**53 in magnitude."""
    values = [r.get(field) for r in rows]
    kinds = set(map(type, values))
    if not kinds <= _NUMBERS:
        if required or not kinds <= _NUMBERS | {type(None)}:
            return None
        values = [0 if v is None else v for v in values]
    try:
        column = np.array(values, dtype=np.float64)
    except (OverflowError, ValueError):
        return None
    if not np.all(np.abs(column) < _EXACT):  # also false for nan
        return None
    return column


def _tokens(rows: list[Any], field: str, fields: set[str]) -> Any:
    """An int64 column (``MISSING`` for null or absent), or ``None`` unless every value is
    a whole number from 0 to 10**15 written as an integer."""
    n = len(rows)
    if field not in fields:
        return np.full(n, MISSING, dtype=np.int64)
    values = [r.get(field) for r in rows]
    kinds = set(map(type, values))
    if not kinds <= {int, type(None)}:
        return None
    if type(None) in kinds:
        values = [MISSING if v is None else v for v in values]
        given = np.fromiter((r.get(field) is not None for r in rows), dtype=bool, count=n)
    else:
        given = np.ones(n, dtype=bool)
    try:
        column = np.array(values, dtype=np.int64)
    except OverflowError:
        return None
    if np.any(given & ((column < 0) | (column > _MAX_TOKENS))):
        return None
    return column


def _ids(rows: list[Any], fields: set[str]) -> list[Any] | bool | None:
    """The ``id`` values (``_ABSENT`` where absent), ``None`` with no ids, ``False`` for an
    id that is not a string or an integer."""
    if "id" not in fields:
        return None
    values = [r.get("id", _ABSENT) for r in rows]
    if not set(map(type, values)) <= {str, int, object}:
        return False
    return values


def _status(rows: list[Any], fields: set[str]) -> list[Any] | bool | None:
    """The ``status`` values, ``None`` with no status, ``False`` for a value whose text the
    general reader might write differently (a float, an object...)."""
    if "status" not in fields:
        return None
    values = [r.get("status") for r in rows]
    if not set(map(type, values)) <= {str, int, bool, type(None)}:
        return False
    return values
