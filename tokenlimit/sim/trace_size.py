"""Whether a trace will fit in memory, asked before a whole-trace replay starts reading it.

A trace read whole takes about ``BYTES_PER_REQUEST`` bytes of memory a request at its peak
(bench/simulate.py: 1.5 GiB for ten million requests from Parquet, 1.6 GiB from CSV), and a
text gateway log twice its size more. One
larger than the memory left would be read for minutes and then end in a ``MemoryError`` or,
on Linux, be killed by the kernel without a word; ``simulate`` warns first and names
``--chunk-rows``, which streams it. Both figures are estimates: the request count of a text
file comes from its first mebibyte's lines, the memory left from ``/proc/meminfo`` and the
cgroup's limit (a container sees the machine's memory in ``/proc/meminfo``).
"""

from __future__ import annotations

import os
from pathlib import Path

BYTES_PER_REQUEST = 160
# A text gateway log is read into memory whole, then parsed: about twice its size more (1
# million ASM access-log lines, 545 MB: a peak of 1.3 GB).
TEXT_LOG_BYTES_PER_BYTE = 2
PARQUET_NAMES = (".parquet", ".pq")
_SAMPLE = 1 << 20  # the bytes of a text trace whose lines give its mean line length
_NO_LIMIT = 1 << 60  # a cgroup limit this large is no limit (v1 writes 2**63 rounded down)


def estimated_requests(path: str) -> int | None:
    """About how many requests the local trace ``path`` holds: a Parquet file's row count
    from its footer (a dataset's, a folder or glob of files: the sum of theirs), a plain CSV
    or JSON Lines file's size over the mean length of its first lines. ``None`` when it
    cannot tell cheaply: a URL, a compressed file, a file that cannot be read."""
    from tokenlimit.errors import TraceError
    from tokenlimit.sim.readers import trace_format
    from tokenlimit.sim.trace_sources import is_dataset, is_url, parquet_files

    if is_url(path):
        return None
    if is_dataset(path):
        try:
            counts = [_parquet_rows(file) for file in parquet_files(path)]
        except TraceError:
            return None  # no files: the reader says so
        return None if None in counts else sum(c for c in counts if c is not None)
    if not os.path.isfile(path):
        return None
    fmt, compression = trace_format(path)
    if compression is not None:
        return None
    try:
        if fmt == "parquet":
            return _parquet_rows(path)
        size = os.path.getsize(path)
        with open(path, "rb") as stream:
            head = stream.read(_SAMPLE)
    except (OSError, ValueError):
        return None
    return size * max(head.count(b"\n"), 1) // max(len(head), 1)


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
    requests = estimated_requests(path)
    if requests is None:
        return None
    available = available_memory(root)
    needed = requests * BYTES_PER_REQUEST
    if log and not path.lower().endswith(PARQUET_NAMES) and os.path.isfile(path):
        needed += TEXT_LOG_BYTES_PER_BYTE * os.path.getsize(path)
    if available is None or needed <= available:
        return None
    return requests, needed, available
