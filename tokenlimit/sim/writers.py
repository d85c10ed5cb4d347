"""Writing traces and decisions: always to a temporary file renamed into place, so a failed
run never leaves half a file behind. The format is read from the name as the readers read it
back: ``.parquet``, ``.csv``, else JSONL, each text format compressed by a ``.gz`` (gzip) or
``.zst`` (zstd) after it."""

from __future__ import annotations

import contextlib
import gzip
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any, BinaryIO

import numpy as np

from tokenlimit.errors import ConfigError
from tokenlimit.files import atomic_writer
from tokenlimit.sim import readers
from tokenlimit.sim.trace_table import Trace

CSV_HEADER = "ts,key,latency,prompt_tokens,completion_tokens,total_tokens\n"
_CHUNK = 200_000


def write_atomically(path: str | Path, write: Callable[[IO[str]], None]) -> None:
    """Call ``write`` with a text stream for ``path`` (compressed for ``.gz`` or ``.zst``);
    ``path`` appears whole when it returns."""
    with atomic_writer(path) as raw, packed_stream(raw, path) as packed, _text(packed) as stream:
        write(stream)


def packed_stream(raw: BinaryIO, path: str | Path) -> Any:
    """A binary stream that compresses into ``raw`` as ``path``'s suffix says (closing it
    ends the compressed stream and leaves ``raw`` open)."""
    compression = readers.trace_format(str(path))[1]
    if compression == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="wb", mtime=0)  # same trace, same bytes
    if compression == "zstd":
        import zstandard

        return zstandard.ZstdCompressor().stream_writer(raw, closefd=False)
    return contextlib.nullcontext(raw)


def _text(raw: Any) -> IO[str]:
    import io

    return io.TextIOWrapper(raw, encoding="utf-8", newline="\n", write_through=False)


def _csv_key(key: str) -> str:
    if any(c in key for c in ',"\n\r'):
        return '"' + key.replace('"', '""') + '"'
    return key


def trace_lines(trace: Trace, fmt: str) -> Iterable[str]:
    """The trace as text chunks (``csv`` or ``jsonl``), in file order, one key per request
    (``keys`` arrays for multi-key requests in JSONL)."""
    if fmt == "csv":
        yield CSV_HEADER
    names = [_csv_key(k) for k in trace.key_names] if fmt == "csv" else trace.key_names
    single = bool(np.array_equal(trace.key_ptr, np.arange(len(trace) + 1)))
    for start in range(0, len(trace), _CHUNK):
        stop = min(start + _CHUNK, len(trace))
        ts = trace.ts[start:stop].tolist()
        lat = trace.latency[start:stop].tolist()
        p = trace.prompt_tokens[start:stop].tolist()
        c = trace.completion_tokens[start:stop].tolist()
        t = trace.total_tokens[start:stop].tolist()
        if fmt == "csv":
            if not single:
                raise ConfigError("CSV holds one key per request: write JSONL for multi-key "
                                  "traces")
            k = trace.key_index[start:stop].tolist()
            yield "".join([f"{a},{names[b]},{d},{e},{f},{g}\n"
                           for a, b, d, e, f, g in zip(ts, k, lat, p, c, t, strict=True)])
        else:
            lines = []
            for offset, (a, d, e, f, g) in enumerate(zip(ts, lat, p, c, t, strict=True)):
                keys = trace.keys_of(start + offset)
                where = (f'"key": {json.dumps(keys[0])}' if len(keys) == 1
                         else f'"keys": {json.dumps(list(keys))}')
                lines.append(f'{{"ts": {a}, {where}, "latency": {d}, "prompt_tokens": {e}, '
                             f'"completion_tokens": {f}, "total_tokens": {g}}}\n')
            yield "".join(lines)


def write_trace(trace: Trace, path: str | Path) -> None:
    """Write ``trace`` as Parquet, CSV or JSONL (by suffix; ``.gz`` or ``.zst`` compresses
    text), atomically."""
    fmt = output_format(path)
    if fmt == "parquet":
        write_table(path, trace_frame(trace))
        return

    def write(stream: IO[str]) -> None:
        from tokenlimit.sim.csvwrite import fits_millisecond_csv, millisecond_csv_rows

        names = list(trace.key_names)
        if (fmt == "csv" and bool(np.array_equal(trace.key_ptr, np.arange(len(trace) + 1)))
                and fits_millisecond_csv(trace.ts, trace.latency, names)):
            stream.write(CSV_HEADER)
            stream.flush()
            binary = stream.buffer  # type: ignore[attr-defined]
            for start in range(0, len(trace), _CHUNK * 5):
                stop = start + _CHUNK * 5
                binary.write(millisecond_csv_rows(
                    trace.ts[start:stop], trace.key_index[start:stop], names,
                    trace.latency[start:stop], trace.prompt_tokens[start:stop],
                    trace.completion_tokens[start:stop], trace.total_tokens[start:stop]))
            return
        for chunk in trace_lines(trace, fmt):
            stream.write(chunk)

    write_atomically(path, write)


def write_decisions(path: str | Path, trace: Trace, outcome: Any, rule: Any) -> None:
    """One record per request in file order: ``id``, ``outcome``, ``rule``, atomically:
    Parquet or CSV by suffix (written by polars), JSON Lines otherwise (``.gz`` too).

    ``outcome``: codes 0 allow, 1 deny, 2 error; ``rule``: index or -1 (written as null).
    """
    if output_format(path) in ("parquet", "csv"):
        write_table(path, decisions_frame(trace, outcome, rule))
        return
    names = ('"allow"', '"deny"', '"error"')

    def write(stream: IO[str]) -> None:
        if trace.ids is None:
            from tokenlimit.sim.csvwrite import decision_lines

            stream.flush()
            binary = stream.buffer  # type: ignore[attr-defined]
            for start in range(0, len(trace), _CHUNK * 5):
                stop = start + _CHUNK * 5
                binary.write(decision_lines(start, outcome[start:stop], rule[start:stop]))
            return
        for start in range(0, len(trace), _CHUNK):
            stop = min(start + _CHUNK, len(trace))
            codes = outcome[start:stop].tolist()
            rules = rule[start:stop].tolist()
            ids = [json.dumps(i) for i in trace.ids[start:stop]]
            stream.write("".join([
                f'{{"id": {i}, "outcome": {names[o]}, "rule": {"null" if r < 0 else r}}}\n'
                for i, o, r in zip(ids, codes, rules, strict=True)]))

    write_atomically(path, write)


def trace_frame(trace: Trace) -> Any:
    """The trace as a polars frame of canonical columns, usage left out (null) where the
    recording had none, so that a later read imputes it again."""
    import polars as pl

    single = bool(np.array_equal(trace.key_ptr, np.arange(len(trace) + 1)))
    names = pl.Series(trace.key_names, dtype=pl.String)
    columns: dict[str, Any] = {}
    if trace.ids is not None:
        columns["id"] = _id_column(trace)
    columns["ts"] = trace.ts
    if single:
        columns["key"] = names.gather(trace.key_index) if len(trace) else names.clear()
    else:
        columns["keys"] = [list(trace.keys_of(i)) for i in range(len(trace))]
    columns["latency"] = trace.latency
    columns["prompt_tokens"] = trace.prompt_tokens
    unknown = trace.imputed
    columns["completion_tokens"] = pl.Series(trace.completion_tokens).set(
        pl.Series(unknown), None) if unknown.any() else trace.completion_tokens
    columns["total_tokens"] = pl.Series(trace.total_tokens).set(
        pl.Series(unknown), None) if unknown.any() else trace.total_tokens
    if trace.status is not None:
        columns["status"] = pl.Series(list(trace.status), dtype=pl.String)
    return pl.DataFrame(columns)


def output_format(path: str | Path) -> str:
    """``parquet``, ``csv`` or ``jsonl`` by the name, as the readers read it back
    (``ConfigError`` for a compressed Parquet name)."""
    fmt, compression = readers.trace_format(str(path))
    if fmt == "parquet" and compression:
        raise ConfigError(f"{path}: cannot write: Parquet is compressed inside; name it "
                          f"without the {Path(path).suffix}")
    return fmt


def write_table(path: str | Path, frame: Any) -> None:
    """Write a polars frame as Parquet, CSV or JSON Lines (by suffix; ``.gz`` or ``.zst``
    compresses text), whole or not at all."""
    fmt = output_format(path)
    with atomic_writer(path) as raw, packed_stream(raw, path) as handle:
        if fmt == "parquet":
            frame.write_parquet(handle)
        elif fmt == "csv":
            frame.write_csv(handle)
        else:
            frame.write_ndjson(handle)


def decisions_frame(trace: Trace, outcome: Any, rule: Any) -> Any:
    """``id``, ``outcome`` (allow, deny, error) and ``rule`` (null for none) per request."""
    import polars as pl

    ids: Any = np.arange(len(trace), dtype=np.int64) if trace.ids is None else (
        _id_column(trace))
    names = pl.Series(["allow", "deny", "error"], dtype=pl.String)
    codes = pl.Series(np.asarray(outcome, dtype=np.int64))
    rules = pl.Series(np.asarray(rule, dtype=np.int64))
    return pl.DataFrame({"id": ids, "outcome": names.gather(codes),
                         "rule": pl.select(pl.when(rules >= 0).then(rules)).to_series()})


def _id_column(trace: Trace) -> Any:
    """Integer ids as integers: Int64, or UInt64 when some are 2**63 or more (a Parquet
    UInt64 column of hashes); any string id, or integers no 64-bit column holds (a JSON id
    may be any integer), make the column text (a column has one type)."""
    import polars as pl

    from tokenlimit.sim.trace_table import IdColumn

    if isinstance(trace.ids, IdColumn) and isinstance(trace.ids.column, pl.Series) and (
            trace.ids.column.dtype in (pl.Int64, pl.UInt64, pl.String)):
        return trace.ids.column  # as read, without a Python value per request
    ids = list(trace.ids or ())
    numbers = [i for i in ids if type(i) is int]
    if len(numbers) == len(ids):
        low, high = (min(numbers), max(numbers)) if numbers else (0, 0)
        if low >= -2**63 and high < 2**63:
            return pl.Series(numbers, dtype=pl.Int64)
        if low >= 0 and high < 2**64:
            return pl.Series(numbers, dtype=pl.UInt64)
    return pl.Series([str(i) for i in ids], dtype=pl.String)
