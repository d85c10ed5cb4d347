"""``tokenlimit trace convert``: a trace or gateway log rewritten as a canonical trace (Parquet
or JSON Lines), read whole or streamed in batches.

Streamed (``--chunk-rows N``), each batch of about N requests (``chunked.trace_chunks``, the
reader of ``simulate --chunk-rows``) is written as a Parquet part in a temporary folder beside
the output; polars' streaming engine then joins the parts into the output, so memory is one
batch and the keys' names, and the disk holds the parts until the output is complete. The
output is the whole conversion's, read back: batches differ only in what each one's columns
had, so the join aligns them (a batch without ids gets its requests' positions, as the whole
file's reader gives them; requests with several keys make every request's keys a list).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from tokenlimit.files import atomic_writer
from tokenlimit.sim.log_fields import FieldMap

_ORDER = ("id", "ts", "key", "keys", "latency", "prompt_tokens", "completion_tokens",
          "total_tokens", "status")


def convert_whole(source: str, output: str, *, key_field: str | None,
                  fields: FieldMap | None) -> tuple[int, int]:
    """Read ``source`` whole and write it to ``output``; (requests, keys)."""
    from tokenlimit.sim.readers import read_trace
    from tokenlimit.sim.writers import trace_frame, write_table

    trace = read_trace(source, key_field=key_field, fields=fields)
    write_table(output, trace_frame(trace))
    return len(trace), len(trace.key_names)


def convert_in_chunks(source: str, output: str, rows: int, *, key_field: str | None,
                      fields: FieldMap | None) -> tuple[int, int]:
    """Stream ``source`` to ``output`` in batches of about ``rows`` requests; (requests,
    keys). Nothing is left behind on failure: not the parts, not a partial output."""
    import polars as pl

    from tokenlimit.sim.chunked import trace_chunks
    from tokenlimit.sim.writers import output_format, packed_stream, trace_frame

    fmt = output_format(output)  # before the work: a name that cannot be written fails now
    target = Path(output)
    folder = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".parts",
                                   dir=target.parent if str(target.parent) else Path(".")))
    try:
        parts: list[Path] = []
        names: set[str] = set()
        requests = 0
        for _, chunk in trace_chunks(source, rows, key_field=key_field, fields=fields):
            part = folder / f"{len(parts):08d}.parquet"
            trace_frame(chunk).write_parquet(part)
            parts.append(part)
            names.update(chunk.key_names)
            requests += len(chunk)
        if not parts:
            from tokenlimit.sim.readers import read_trace
            from tokenlimit.sim.writers import write_table

            empty = read_trace(source, key_field=key_field, fields=fields)
            write_table(output, trace_frame(empty))
            return 0, 0
        joined = canonical(pl.concat([pl.scan_parquet(p) for p in parts],
                                     how="diagonal_relaxed"))
        with atomic_writer(output) as raw, packed_stream(raw, output) as handle:
            if fmt == "parquet":
                joined.sink_parquet(handle)
            else:
                joined.sink_ndjson(handle)
        return requests, len(names)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def canonical(frame: Any) -> Any:
    """A lazy frame of batches joined, as the whole conversion writes it: every id (the
    position where a batch had none), one key column (``keys`` lists if any batch had them),
    the columns in order."""
    import polars as pl

    schema = frame.collect_schema()
    columns = schema.names()
    if "id" in columns:  # a batch without ids had each request's position as its id
        frame = frame.with_row_index("position").with_columns(
            pl.coalesce(pl.col("id"), pl.col("position").cast(schema["id"]))).drop("position")
    if "key" in columns and "keys" in columns:
        frame = frame.with_columns(
            pl.coalesce(pl.col("keys"), pl.concat_list(pl.col("key"))).alias("keys")
        ).drop("key")
        columns = [c for c in columns if c != "key"]
    return frame.select([c for c in _ORDER if c in columns])
