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
    depth = 0
    in_string = False
    escaped = False
    state = _KEY
    key_start = 0
    field = -1
    for i in range(buf.shape[0]):
        c = buf[i]
        if in_string:
            if escaped:
                escaped = False
                if c == 117 and i + 2 < buf.shape[0] and (buf[i + 1] | 32) == 100:  # \ud
                    d = buf[i + 2] | 32
                    if d == 56 or d == 57 or (97 <= d <= 102):  # 8, 9, a-f
                        counts[surrogates, TOTAL] += 1
            elif c == 92:  # backslash
                escaped = True
            elif c == 34:  # the closing quote
                in_string = False
                if depth == 1 and state == _IN_KEY:
                    field = -1
                    size = i - key_start
                    for f in range(lengths.shape[0]):
                        if lengths[f] != size:
                            continue
                        same = True
                        for b in range(size):
                            if buf[key_start + b] != names[starts[f] + b]:
                                same = False
                                break
                        if same:
                            field = f
                            break
                    state = _AFTER_KEY
            continue
        if c == 32 or c == 9 or c == 10 or c == 13:
            continue
        at_value = depth == 1 and state == _VALUE
        if at_value and field >= 0:
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
        if at_value:
            state = _IN_VALUE
        if c == 34:
            in_string = True
            if depth == 1 and state == _KEY:
                key_start = i + 1
                state = _IN_KEY
        elif c == 123 or c == 91:  # { [
            depth += 1
            if depth == 1:
                state = _KEY
        elif c == 125 or c == 93:  # } ]
            depth -= 1
        elif c == 58:  # :
            if depth == 1 and state == _AFTER_KEY:
                state = _VALUE
        elif c == 44 and depth == 1:  # ,
            state = _KEY
    return counts


@functools.cache
def _compiled() -> Any:
    from tokenlimit.sim.jit import njit

    return njit(_scan_fields, nogil=True)


def _pieces(data: Any, parts: int) -> list[Any]:
    """``data`` (bytes or a memory map) as uint8 arrays of ``parts`` runs of whole lines."""
    size = len(data)
    cuts = [0]
    for p in range(1, parts):
        newline = data.find(b"\n", max(size * p // parts, cuts[-1]))
        if newline < 0:
            break
        cuts.append(newline + 1)
    cuts.append(size)
    whole = np.frombuffer(data, dtype=np.uint8)
    return [whole[a:b] for a, b in itertools.pairwise(cuts) if b > a]


def field_kinds(data: Any, names: Sequence[str], *, parts: int = 1) -> Any:
    """Per name in ``names``: counts of (total, string, number, null, boolean, nested); then
    a last row whose first count is the number of surrogate-half escapes (``\\uD83D``).
    ``data``: bytes or a buffer (a memory map); ``parts``: lines cut into that many runs,
    scanned on as many threads (each line is a JSON value of its own)."""
    encoded = [n.encode() for n in names]
    blob = np.frombuffer(b"".join(encoded) or b"\0", dtype=np.uint8)
    lengths = np.array([len(e) for e in encoded], dtype=np.int64)
    starts = np.zeros(len(encoded), dtype=np.int64)
    if len(encoded) > 1:
        starts[1:] = np.cumsum(lengths)[:-1]
    scan = _compiled()
    pieces = _pieces(data, parts)
    if len(pieces) <= 1:
        return scan(np.frombuffer(data, dtype=np.uint8), blob, starts, lengths)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=len(pieces)) as pool:
        counts = list(pool.map(lambda piece: scan(piece, blob, starts, lengths), pieces))
    return np.sum(counts, axis=0)
