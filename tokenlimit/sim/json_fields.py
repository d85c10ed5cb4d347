"""What kind of value each top-level field of a JSON Lines file holds, in one compiled pass.

polars reads JSON Lines fast but turns a number, an object or a list into its text where the
schema says string; the per-row reader refuses those. ``field_kinds`` walks the raw bytes once
(strings, escapes and nesting tracked; only the fields of each line's top-level object count)
and tells, per field name, how many values were strings, numbers, nulls, booleans and
objects or lists. The columnar reader compares these counts with what polars read.

>>> kinds = field_kinds(b'{"key": "a", "id": 7, "x": {"key": 1}}\\n{"key": null}', ("key", "id"))
>>> kinds.tolist()
[[2, 1, 0, 1, 0, 0], [1, 0, 1, 0, 0, 0], [0, 0, 0, 0, 0, 0]]
"""

from __future__ import annotations

import contextlib
import functools
import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

TOTAL, STRING, NUMBER, NULL, BOOLEAN, NESTED = range(6)
_KEY, _IN_KEY, _AFTER_KEY, _VALUE, _IN_VALUE = range(5)


def _scan_fields(buf: Any, names: Any, starts: Any, lengths: Any) -> Any:
    """Counts per field (rows) and kind (columns); the last row counts ``\\uD800`` to
    ``\\uDFFF`` escapes anywhere (surrogate halves, which polars reads differently)."""
    counts = np.zeros((lengths.shape[0] + 1, 6), dtype=np.int64)
    surrogates = lengths.shape[0]
    # Bytes that end a run of plain bytes: outside strings, structure and white space;
    # inside strings, the quote and the backslash.
    plain = np.ones(256, dtype=np.bool_)
    for c in (34, 44, 58, 123, 125, 91, 93, 32, 9, 10, 13):
        plain[c] = False
    depth = 0
    state = _KEY
    field = -1
    n = buf.shape[0]
    i = 0
    while i < n:
        c = buf[i]
        if c == 32 or c == 9 or c == 10 or c == 13:
            i += 1
            continue
        if depth == 1 and state == _VALUE:
            if field >= 0:
                counts[field, TOTAL] += 1
                if c == 34:
                    counts[field, STRING] += 1
                elif c == 123 or c == 91:
                    counts[field, NESTED] += 1
                elif c == 110:
                    counts[field, NULL] += 1
                elif c == 116 or c == 102:
                    counts[field, BOOLEAN] += 1
                else:
                    counts[field, NUMBER] += 1
            state = _IN_VALUE
        if c == 34:  # a string: to its closing quote, escapes skipped
            is_key = depth == 1 and state == _KEY
            start = i + 1
            i += 1
            while i < n:
                d = buf[i]
                if d == 34:
                    break
                if d == 92:
                    if i + 3 < n and buf[i + 1] == 117 and (buf[i + 2] | 32) == 100:  # \ud
                        e = buf[i + 3] | 32
                        if e == 56 or e == 57 or (97 <= e <= 102):  # 8, 9, a-f
                            counts[surrogates, TOTAL] += 1
                    i += 2
                    continue
                i += 1
            if is_key:
                field = _field_named(buf, start, i, names, starts, lengths)
                state = _AFTER_KEY
            i += 1
            continue
        if c == 123 or c == 91:  # { [
            depth += 1
            if depth == 1:
                state = _KEY
        elif c == 125 or c == 93:  # } ]
            depth -= 1
        elif c == 58:  # :
            if depth == 1 and state == _AFTER_KEY:
                state = _VALUE
        elif c == 44:  # ,
            if depth == 1:
                state = _KEY
        else:  # a number or a literal: to the next structural byte
            i += 1
            while i < n and plain[buf[i]]:
                i += 1
            continue
        i += 1
    return counts


def _field_named(buf: Any, start: int, stop: int, names: Any, starts: Any,
                 lengths: Any) -> int:
    """The index of the name ``buf[start:stop]`` among ``names`` (-1: none)."""
    size = stop - start
    for f in range(lengths.shape[0]):
        if lengths[f] != size:
            continue
        same = True
        for b in range(size):
            if buf[start + b] != names[starts[f] + b]:
                same = False
                break
        if same:
            return f
    return -1


@functools.cache
def _compiled() -> Any:
    from tokenlimit.sim.jit import njit

    global _field_named
    _field_named = njit(_field_named, nogil=True)
    return njit(_scan_fields, nogil=True)


_BLOCK = 1 << 26  # bytes of lines scanned at a time


def _cuts(data: Any) -> list[int]:
    """Offsets cutting ``data`` into runs of whole lines of about ``_BLOCK`` bytes."""
    size = len(data)
    count = -(-size // _BLOCK)
    cuts = [0]
    for p in range(1, count):
        newline = data.find(b"\n", max(size * p // count, cuts[-1]))
        if newline < 0:
            break
        cuts.append(newline + 1)
    cuts.append(size)
    return cuts


def field_kinds(data: Any, names: Sequence[str]) -> Any:
    """Per name in ``names``: counts of (total, string, number, null, boolean, nested); then
    a last row whose first count is the number of surrogate-half escapes (``\\uD83D``).
    ``data``: bytes or a memory map, scanned a run of whole lines at a time (each line is a
    JSON value of its own); a memory map's pages are let go once scanned (``MADV_DONTNEED``),
    so the file does not stay counted in this process's memory."""
    import mmap

    encoded = [n.encode() for n in names]
    blob = np.frombuffer(b"".join(encoded) or b"\0", dtype=np.uint8)
    lengths = np.array([len(e) for e in encoded], dtype=np.int64)
    starts = np.zeros(len(encoded), dtype=np.int64)
    if len(encoded) > 1:
        starts[1:] = np.cumsum(lengths)[:-1]
    scan = _compiled()
    whole = np.frombuffer(data, dtype=np.uint8) if len(data) else np.zeros(0, dtype=np.uint8)
    release = (getattr(mmap, "MADV_DONTNEED", None) if isinstance(data, mmap.mmap)
               else None)
    counts = np.zeros((len(names) + 1, 6), dtype=np.int64)
    for start, stop in itertools.pairwise(_cuts(data)):
        counts += scan(whole[start:stop], blob, starts, lengths)
        if release is not None:
            page = start - start % mmap.PAGESIZE
            with contextlib.suppress(OSError, ValueError):
                data.madvise(release, page, stop - page)
    return counts
