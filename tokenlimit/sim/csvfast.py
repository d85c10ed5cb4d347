"""A compiled reader for the common, simple CSV trace (the path a ten-million-line file takes).

It accepts only what it can read exactly: a header naming ``ts``, ``key`` and any of
``latency``, ``prompt_tokens``, ``completion_tokens``, ``total_tokens``; no quotes, no empty
cells, plain decimal numbers. Decimal numbers are converted the way ``float()`` does when the
digits fit in 2**53 and the power of ten is at most 22 (then one IEEE division or product is
correctly rounded). Anything else (a quote, an empty cell, an exponent, a bad number, a hash
clash between two keys) makes ``read_simple_csv`` return ``None`` and the general reader in
``readers.py`` takes over, which also produces the located error messages.
"""

from __future__ import annotations

import mmap
from typing import Any

import numpy as np

from tokenlimit.sim.jit import njit
from tokenlimit.sim.trace_table import Trace

_FIELDS = ("ts", "key", "latency", "prompt_tokens", "completion_tokens", "total_tokens")
_FNV_OFFSET = np.uint64(14695981039346656037)
_FNV_PRIME = np.uint64(1099511628211)
_POW10 = np.array([10.0 ** i for i in range(23)])


def _number(buf: Any, pos: int, size: int, pow10: Any, whole: bool) -> tuple[float, int, int]:
    """Parse a plain decimal starting at ``pos`` up to a separator: (value, end, ok 0/1).

    ``whole``: digits only (token counts). Fails on anything else, on more than 15 digits
    (leading zeros included) and on an empty cell."""
    i = pos
    negative = False
    if not whole and i < size and (buf[i] == 45 or buf[i] == 43):  # - +
        negative = buf[i] == 45
        i += 1
    start = i
    mantissa = 0
    while i < size:
        d = int(buf[i]) - 48
        if d < 0 or d > 9:
            break
        mantissa = mantissa * 10 + d
        i += 1
    digits = i - start
    scale = 0
    if not whole and i < size and buf[i] == 46:
        i += 1
        point = i
        while i < size:
            d = int(buf[i]) - 48
            if d < 0 or d > 9:
                break
            mantissa = mantissa * 10 + d
            i += 1
        scale = i - point
    digits += scale
    if i < size:
        c = buf[i]
        if c != 44 and c != 10 and c != 13:
            return 0.0, i, 0
    if digits == 0 or digits > 15:
        return 0.0, i, 0
    value = float(mantissa) / pow10[scale] if scale else float(mantissa)
    return (-value if negative else value), i, 1


def _hash(buf: Any, start: int, stop: int) -> Any:
    h = _FNV_OFFSET
    for i in range(start, stop):
        h = (h ^ np.uint64(buf[i])) * _FNV_PRIME
    return h


def _count_lines(buf: Any, begin: int) -> int:
    size = buf.shape[0]
    lines = 0
    step = 1 << 24
    for start in range(begin, size, step):  # numpy's vectorized compare, in bounded chunks
        lines += int(np.count_nonzero(buf[start:min(start + step, size)] == 10))
    if size > begin and buf[size - 1] != 10:
        lines += 1
    return lines


_DONE, _GROW, _FAIL = 0, 1, 2


def _parse_rows(buf: Any, pos: int, row: int, fields: Any, pow10: Any, ts: Any, latency: Any,
                tokens: Any, key_index: Any, table: Any, key_span: Any, blob: Any,
                counters: Any) -> tuple[int, int, int]:
    """Parse rows from ``pos`` until the end (``_DONE``), until the key table or blob needs
    room (``_GROW``: resume at the returned row start), or until something is not simple
    (``_FAIL``). Arrays are never rebound here: numba then keeps the loop free of
    reference counting. ``table``: (capacity, 2) slots of (key + 1, hash); ``counters``:
    keys so far, blob bytes used."""
    size = buf.shape[0]
    capacity = table.shape[0]
    mask = np.uint64(capacity - 1)
    n_fields = fields.shape[0]
    while pos < size:
        if 2 * counters[0] + 2 >= capacity or 2 * counters[0] + 2 >= key_span.shape[0]:
            return _GROW, pos, row
        row_start = pos
        for f in range(n_fields):
            code = fields[f]
            h = _FNV_OFFSET
            end = pos
            if code == 1:
                while end < size:
                    c = buf[end]
                    if c == 44 or c == 10 or c == 13:
                        break
                    h = (h ^ np.uint64(c)) * _FNV_PRIME
                    end += 1
                if end == pos:
                    return _FAIL, pos, row
            else:
                value, end, good = _number(buf, pos, size, pow10, code >= 3)
                if good == 0:
                    return _FAIL, pos, row
                if code == 0:
                    ts[row] = value
                elif code == 2:
                    if value < 0.0:
                        return _FAIL, pos, row
                    latency[row] = value
                else:
                    tokens[code - 3, row] = np.int64(value)
            if f == n_fields - 1:
                if end < size and buf[end] == 44:
                    return _FAIL, pos, row
            elif end >= size or buf[end] != 44:
                return _FAIL, pos, row
            if code == 1:
                length = end - pos
                slot = np.int64(h & mask)
                while True:
                    k = table[slot, 0] - 1
                    if k < 0:
                        used = counters[1]
                        if used + length > blob.shape[0]:
                            return _GROW, row_start, row
                        for i in range(length):
                            blob[used + i] = buf[pos + i]
                        k = counters[0]
                        table[slot, 0] = k + 1
                        table[slot, 1] = np.int64(h)
                        key_span[k, 0] = used
                        key_span[k, 1] = used + length
                        counters[0] = k + 1
                        counters[1] = used + length
                        break
                    if table[slot, 1] == np.int64(h):
                        a = key_span[k, 0]
                        if key_span[k, 1] - a != length:
                            return _FAIL, pos, row
                        for i in range(length):
                            if blob[a + i] != buf[pos + i]:
                                return _FAIL, pos, row  # a 64-bit hash clash: be exact
                        break
                    slot = (slot + 1) & (capacity - 1)
                key_index[row] = k
            pos = end + 1
        if pos - 1 < size and buf[pos - 1] == 13:  # \r\n
            if pos < size and buf[pos] == 10:
                pos += 1
            else:
                return _FAIL, pos, row
        row += 1
    return _DONE, pos, row


def _rebuilt_table(key_span: Any, blob: Any, n_keys: int, capacity: int) -> Any:
    table = np.zeros((capacity, 2), dtype=np.int64)
    for k in range(n_keys):
        h = _hash(blob, key_span[k, 0], key_span[k, 1])
        slot = np.int64(h & np.uint64(capacity - 1))
        while table[slot, 0] != 0:
            slot = (slot + 1) & (capacity - 1)
        table[slot, 0] = k + 1
        table[slot, 1] = np.int64(h)
    return table


_number = njit(_number, error_model="numpy")
_hash = njit(_hash, error_model="numpy")
_parse_rows = njit(_parse_rows, error_model="numpy")
_rebuilt_table = njit(_rebuilt_table, error_model="numpy")


def _parse(buf: Any, begin: int, fields: Any) -> Any:
    """(rows, ts, latency, tokens, key_index, key names as bytes) or ``None``."""
    lines = _count_lines(buf, begin)
    ts = np.zeros(lines, dtype=np.float64)
    latency = np.zeros(lines, dtype=np.float64)
    tokens = np.zeros((3, lines), dtype=np.int64)
    key_index = np.zeros(lines, dtype=np.int64)
    table = np.zeros((1 << 14, 2), dtype=np.int64)
    key_span = np.zeros((1 << 14, 2), dtype=np.int64)
    # Each distinct key's bytes are copied into a small blob, so verifying a hash hit reads
    # cache-resident memory rather than the key's first line somewhere in the whole file.
    blob = np.zeros(1 << 18, dtype=np.uint8)
    counters = np.zeros(2, dtype=np.int64)
    pos, row = begin, 0
    while True:
        status, pos, row = _parse_rows(buf, pos, row, fields, _POW10, ts, latency, tokens,
                                       key_index, table, key_span, blob, counters)
        if status == _DONE:
            break
        if status == _FAIL:
            return None
        n_keys = int(counters[0])
        if 2 * n_keys + 2 >= key_span.shape[0]:
            key_span = np.concatenate((key_span, np.zeros_like(key_span)))
        if 2 * n_keys + 2 >= table.shape[0]:
            table = _rebuilt_table(key_span, blob, n_keys, 2 * table.shape[0])
        if counters[1] + 4096 > blob.shape[0] or status == _GROW:
            blob = np.concatenate((blob, np.zeros_like(blob)))
    n_keys, used = int(counters[0]), int(counters[1])
    raw = blob[:used].tobytes()
    names = [raw[a:b] for a, b in key_span[:n_keys].tolist()]
    return row, ts, latency, tokens, key_index, names


def read_simple_csv(data: bytes | mmap.mmap, name: str, seed: int) -> Trace | None:
    """The trace in ``data`` (a whole CSV file, bytes or memory-mapped) when it is simple
    enough; ``None`` otherwise. Nothing returned refers to ``data``."""
    newline = data.find(b"\n")
    header_bytes = bytes(data[:newline]) if newline >= 0 else bytes(data[:])
    if data.find(b'"') >= 0 or not header_bytes.isascii():
        return None
    header = [h.strip() for h in header_bytes.decode().rstrip("\r").split(",")]
    if (len(set(header)) != len(header) or not set(header) <= set(_FIELDS)
            or "ts" not in header or "key" not in header):
        return None
    if newline < 0:
        return None
    fields = np.array([_FIELDS.index(h) for h in header], dtype=np.int64)
    buf = np.frombuffer(data, dtype=np.uint8)
    parsed = _parse(buf, newline + 1, fields)
    if parsed is None:
        return None
    rows, ts, latency, tokens, key_index, raw_names = parsed
    try:
        names = tuple(raw.decode("utf-8") for raw in raw_names)
    except UnicodeDecodeError:
        return None
    from tokenlimit.sim.readers import MISSING, impute_completion

    prompt, completion, total = tokens[0][:rows], tokens[1][:rows], tokens[2][:rows]
    present = set(header)
    ptr = np.arange(rows + 1, dtype=np.int64)
    index = key_index[:rows]
    if "completion_tokens" not in present and "total_tokens" not in present:
        completion = np.full(rows, MISSING, dtype=np.int64)
    elif "completion_tokens" not in present:
        completion = np.maximum(total - prompt, 0)
    if "total_tokens" not in present:
        total = prompt + np.maximum(completion, 0)
    imputed = impute_completion(completion, ptr, index, seed)
    total[imputed] = prompt[imputed] + completion[imputed]
    return Trace(name, ts[:rows], latency[:rows], prompt, completion, total, ptr, index, names,
                 imputed)
