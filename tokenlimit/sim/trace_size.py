"""Whether a trace will fit in memory, asked before a whole-trace replay starts reading it.

A trace read whole takes about ``BYTES_PER_REQUEST`` bytes of memory a request at its peak
(bench/simulate.py: 1.5 GiB for ten million requests from Parquet, 1.6 GiB from CSV); a
compressed text trace is also held decompressed while it is read, and a gateway's text log
is held and parsed (``TEXT_LOG_BYTES_PER_BYTE``). One larger than the memory left would be
read for minutes and then end in a ``MemoryError`` or, on Linux, be killed by the kernel
without a word; ``simulate`` warns first and names ``--chunk-rows``, which streams it. All
figures are estimates: a text file's requests come from its first lines (a compressed file's
text size from how much its first mebibytes expand), the memory left from ``/proc/meminfo``
and the cgroup's limit (a container sees the machine's memory in ``/proc/meminfo``).
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BYTES_PER_REQUEST = 160
# A text gateway log is read into memory whole, then parsed: about twice its size more (1
# million ASM access-log lines, 545 MB: a peak of 1.3 GB).
TEXT_LOG_BYTES_PER_BYTE = 2
_SAMPLE = 1 << 20  # the text whose lines give a text trace's mean line length
_FEED = 1 << 16  # compressed bytes fed to the decompressor at a time
_NO_LIMIT = 1 << 60  # a cgroup limit this large is no limit (v1 writes 2**63 rounded down)


@dataclass(frozen=True, slots=True)
class Size:
    """About how many requests a trace holds, and the bytes of its text (0: Parquet), held
    in memory while it is read when ``compressed``."""

    requests: int
    text: int = 0
    compressed: bool = False

    def needed(self, log: bool) -> int:
        """The bytes of memory a whole read and replay takes (a gateway's ``log``: its text
        held and parsed)."""
        held = TEXT_LOG_BYTES_PER_BYTE * self.text if log else (
            self.text if self.compressed else 0)
        return self.requests * BYTES_PER_REQUEST + held


def estimated_size(path: str) -> Size | None:
    """About how large the local trace ``path`` is (``None`` when it cannot tell cheaply: a
    URL, a file that cannot be read): a Parquet file's row count from its footer (a
    dataset's, a folder or glob of files: the sum of theirs); a CSV or JSON Lines file's text
    size (compressed: its size times how much its first mebibytes expand) over the mean
    length of its first lines."""
    from tokenlimit.errors import TraceError
    from tokenlimit.sim.trace_sources import (
        is_dataset,
        is_url,
        parquet_files,
        text_files,
        trace_format,
    )

    if is_url(path):
        return None
    if is_dataset(path):
        try:
            texts = text_files(path)
            if texts is not None:  # CSV or JSON Lines files, joined in memory to be read
                sizes = [estimated_size(file) for file in texts]
                if None in sizes:
                    return None
                return Size(sum(s.requests for s in sizes if s is not None),
                            sum(s.text for s in sizes if s is not None), compressed=True)
            counts = [_parquet_rows(file) for file in parquet_files(path)]
        except TraceError:
            return None  # no files: the reader says so
        return None if None in counts else Size(sum(c for c in counts if c is not None))
    if not os.path.isfile(path):
        return None
    fmt, compression = trace_format(path)
    try:
        if fmt == "parquet":
            rows = _parquet_rows(path)
            return None if rows is None else Size(rows)
        head, text = _text_sample(path, compression)
    except (OSError, ValueError, EOFError, zlib.error):
        return None
    requests = text * max(head.count(b"\n"), 1) // max(len(head), 1)
    return Size(requests, text, compression is not None)


def _text_sample(path: str, compression: str | None) -> tuple[bytes, int]:
    """(the first mebibyte of the file's text, the file's text size): a compressed file's
    size times the expansion of what was fed to give that mebibyte."""
    size = os.path.getsize(path)
    with open(path, "rb") as raw:
        if compression is None:
            return raw.read(_SAMPLE), size
        decompressor: Any
        if compression == "gzip":
            decompressor = zlib.decompressobj(wbits=31)
        else:
            import zstandard

            decompressor = zstandard.ZstdDecompressor().decompressobj()
        text = bytearray()
        while len(text) < _SAMPLE and not decompressor.eof:
            chunk = raw.read(_FEED)
            if not chunk:
                break
            text += decompressor.decompress(chunk)
        fed = raw.tell() - len(decompressor.unused_data)
    if fed >= size:
        return bytes(text), len(text)  # the whole file
    return bytes(text[:_SAMPLE]), size * len(text) // max(fed, 1)


def _parquet_rows(path: str) -> int | None:
    import polars as pl

    try:
        rows: int = pl.scan_parquet(path).select(pl.len()).collect().item()
    except (pl.exceptions.PolarsError, OSError):
        return None  # the reader names what is wrong with the file
    return rows


def available_memory(root: str = "/") -> int | None:
    """The bytes of memory this process may still take: the system's available memory
    (``MemAvailable``), or less where its cgroup (v2 or v1) has a lower limit; ``None``
    where the system does not say (not Linux). ``root``: where ``/proc`` and ``/sys`` are
    (tests give a folder of their own)."""
    base = Path(root)
    found = _meminfo_available(base / "proc/meminfo")
    for limit_file, usage_file in (("sys/fs/cgroup/memory.max", "sys/fs/cgroup/memory.current"),
                                   ("sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "sys/fs/cgroup/memory/memory.usage_in_bytes")):
        limit, usage = _number(base / limit_file), _number(base / usage_file)
        if limit is not None and usage is not None and limit < _NO_LIMIT:
            left = max(limit - usage, 0)
            found = left if found is None else min(found, left)
    return found


def _meminfo_available(path: Path) -> int | None:
    try:
        text = path.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name == "MemAvailable":
            parts = value.split()
            if parts and parts[0].isdigit():
                return int(parts[0]) * 1024  # kB
    return None


def _number(path: Path) -> int | None:
    """A cgroup file's integer (``None``: absent, or ``max``: no limit)."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def memory_shortfall(path: str, root: str = "/", *, log: bool = False
                     ) -> tuple[int, int, int] | None:
    """(requests, bytes needed, bytes available) when the trace at ``path`` (a gateway's
    ``log``) will likely not fit in the memory left for a whole-trace replay; ``None`` when
    it fits or nobody can tell."""
    size = estimated_size(path)
    if size is None:
        return None
    available = available_memory(root)
    needed = size.needed(log)
    if available is None or needed <= available:
        return None
    return size.requests, needed, available
