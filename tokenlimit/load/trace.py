"""A small reader of the canonical JSON Lines trace, for ``--replay``.

One request per line: ``ts`` (Unix seconds), ``key`` (string) or ``keys`` (list of strings),
``latency`` (seconds), ``prompt_tokens``, ``completion_tokens``, ``total_tokens``, optional
``id`` and ``status``; gzip-compressed when the name ends in ``.gz``. Requests are returned
in time order (equal times keep file order).

The simulator's trace readers (``tokenlimit simulate``) read more shapes; once they are
shared, ``--replay`` should use them and this module can go.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from tokenlimit.errors import TraceError
from tokenlimit.sim.model import TraceRequest


def _open(path: str) -> IO[str]:
    if path.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8")
    return Path(path).open(encoding="utf-8")


def _number(row: dict[str, Any], name: str, path: str, line: int, *, integer: bool,
            default: float | None = None) -> float:
    value = row.get(name, default)
    if value is None:
        raise TraceError("missing", path=path, line=line, field=name)
    if isinstance(value, bool) or not isinstance(value, int | float) or (
            integer and not float(value).is_integer()) or value < 0:
        kind = "a non-negative integer" if integer else "a non-negative number"
        raise TraceError(f"must be {kind}, got {value!r}", path=path, line=line, field=name)
    return float(value)


def _rows(path: str) -> Iterator[tuple[int, str]]:
    try:
        with _open(path) as handle:
            yield from enumerate(handle, start=1)
    except OSError as exc:
        raise TraceError(f"cannot read: {exc.strerror or exc}", path=path) from None
    except UnicodeDecodeError as exc:
        raise TraceError(f"not UTF-8 text: {exc.reason}", path=path) from None


def read_trace(path: str) -> list[TraceRequest]:
    """The requests of a canonical JSONL trace, in time order.

    Raises ``TraceError`` naming the line and the field of the first bad value.
    """
    requests: list[TraceRequest] = []
    for line, text in _rows(path):
        if not text.strip():
            continue
        try:
            row = json.loads(text)
        except json.JSONDecodeError as exc:
            raise TraceError(f"not JSON: {exc.msg}", path=path, line=line) from None
        if not isinstance(row, dict):
            raise TraceError("each line must be a JSON object", path=path, line=line)
        if "keys" in row:
            keys = row["keys"]
            if not isinstance(keys, list) or not keys or not all(
                    isinstance(k, str) for k in keys):
                raise TraceError("must be a non-empty list of strings", path=path, line=line,
                                 field="keys")
        elif isinstance(row.get("key"), str):
            keys = [row["key"]]
        else:
            raise TraceError("missing (give key or keys)", path=path, line=line, field="key")
        ts = _number(row, "ts", path, line, integer=False)
        completion = int(_number(row, "completion_tokens", path, line, integer=True,
                                 default=0))
        prompt = int(_number(row, "prompt_tokens", path, line, integer=True, default=0))
        total = int(_number(row, "total_tokens", path, line, integer=True,
                            default=prompt + completion))
        latency = _number(row, "latency", path, line, integer=False, default=0.0)
        status = row.get("status")
        requests.append(TraceRequest(row.get("id", line - 1), ts, tuple(keys), latency,
                                     prompt, completion, total,
                                     None if status is None else str(status)))
    if not requests:
        raise TraceError("no requests in the trace", path=path)
    requests.sort(key=lambda r: r.ts)
    return requests
