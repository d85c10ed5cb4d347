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

from typing import Any

import numba
import numpy as np

from tokenlimit.sim.trace import Trace

_FIELDS = ("ts", "key", "latency", "prompt_tokens", "completion_tokens", "total_tokens")
_FNV_OFFSET = np.uint64(14695981039346656037)
_FNV_PRIME = np.uint64(1099511628211)
_POW10 = np.array([10.0 ** i for i in range(23)])


def _float(buf: Any, start: int, stop: int, pow10: Any) -> tuple[float, bool]:
    i = start
    negative = False
    if i < stop and (buf[i] == 45 or buf[i] == 43):  # - +
        negative = buf[i] == 45
        i += 1
    mantissa = 0
    digits = 0
    scale = 0
    seen_dot = False
    any_digit = False
    while i < stop:
        c = buf[i]
        if 48 <= c <= 57:
            any_digit = True
            if mantissa or c != 48:
                digits += 1
            if digits > 15:
                return 0.0, False
            mantissa = mantissa * 10 + (c - 48)
            if seen_dot:
                scale += 1
        elif c == 46 and not seen_dot:
            seen_dot = True
        else:
            return 0.0, False
        i += 1
    if not any_digit or scale > 22:
        return 0.0, False
    value = float(mantissa) / pow10[scale] if scale else float(mantissa)
    return (-value if negative else value), True


def _int(buf: Any, start: int, stop: int) -> tuple[int, bool]:
    if start >= stop or stop - start > 15:
        return 0, False
    value = 0
    for i in range(start, stop):
        c = buf[i]
        if c < 48 or c > 57:
            return 0, False
        value = value * 10 + (c - 48)
    return value, True


def _hash(buf: Any, start: int, stop: int) -> Any:
    h = _FNV_OFFSET
    for i in range(start, stop):
        h = (h ^ np.uint64(buf[i])) * _FNV_PRIME
    return h


def _rehash(buf: Any, starts: Any, stops: Any, n_keys: int, capacity: int) -> Any:
    slots = np.full(capacity, -1, dtype=np.int64)
    hashes = np.zeros(capacity, dtype=np.uint64)
    for key in range(n_keys):
        h = _hash(buf, starts[key], stops[key])
        slot = np.int64(h & np.uint64(capacity - 1))
        while slots[slot] >= 0:
            slot = (slot + 1) & (capacity - 1)
        slots[slot] = key
        hashes[slot] = h
    return slots, hashes


def _grown(values: Any, size: int) -> Any:
    out = np.zeros(size, dtype=np.int64)
    out[: values.shape[0]] = values
    return out


def _parse(buf: Any, begin: int, fields: Any, pow10: Any) -> Any:
    """Columns from ``buf[begin:]``; ``ok`` False means: use the general reader."""
    size = buf.shape[0]
    lines = 0
    for i in range(begin, size):
        if buf[i] == 10:
            lines += 1
    if size > begin and buf[size - 1] != 10:
        lines += 1
    ts = np.zeros(lines, dtype=np.float64)
    latency = np.zeros(lines, dtype=np.float64)
    tokens = np.zeros((3, lines), dtype=np.int64)
    key_index = np.zeros(lines, dtype=np.int64)
    capacity = 1 << 16
    slots = np.full(capacity, -1, dtype=np.int64)
    hashes = np.zeros(capacity, dtype=np.uint64)
    key_start = np.zeros(capacity // 2, dtype=np.int64)
    key_stop = np.zeros(capacity // 2, dtype=np.int64)
    n_keys = 0
    n_fields = fields.shape[0]
    pos = begin
    row = 0
    while pos < size:
        for f in range(n_fields):
            end = pos
            while end < size and buf[end] != 44 and buf[end] != 10 and buf[end] != 13:
                end += 1
            last = f == n_fields - 1
            if end == pos or (last and end < size and buf[end] == 44):
                return False, row, ts, latency, tokens, key_index, key_start, key_stop, 0
            if not last and (end >= size or buf[end] != 44):
                return False, row, ts, latency, tokens, key_index, key_start, key_stop, 0
            code = fields[f]
            ok = True
            if code == 0:
                ts[row], ok = _float(buf, pos, end, pow10)
            elif code == 2:
                latency[row], ok = _float(buf, pos, end, pow10)
                ok = ok and latency[row] >= 0.0
            elif code >= 3:
                tokens[code - 3, row], ok = _int(buf, pos, end)
            else:
                h = _hash(buf, pos, end)
                slot = np.int64(h & np.uint64(capacity - 1))
                while True:
                    k = slots[slot]
                    if k < 0:
                        slots[slot] = n_keys
                        hashes[slot] = h
                        key_start[n_keys] = pos
                        key_stop[n_keys] = end
                        k = n_keys
                        n_keys += 1
                        break
                    if hashes[slot] == h:
                        a, b = key_start[k], key_stop[k]
                        if b - a != end - pos:
                            ok = False
                        else:
                            for i in range(end - pos):
                                if buf[a + i] != buf[pos + i]:
                                    ok = False
                                    break
                        break
                    slot = (slot + 1) & (capacity - 1)
                key_index[row] = k
                if n_keys * 2 >= capacity:
                    capacity *= 2
                    slots, hashes = _rehash(buf, key_start, key_stop, n_keys, capacity)
                    key_start = _grown(key_start, capacity // 2)
                    key_stop = _grown(key_stop, capacity // 2)
            if not ok:
                return False, row, ts, latency, tokens, key_index, key_start, key_stop, 0
            pos = end + 1
        if pos - 1 < size and buf[pos - 1] == 13:  # \r\n
            if pos < size and buf[pos] == 10:
                pos += 1
            else:
                return False, row, ts, latency, tokens, key_index, key_start, key_stop, 0
        row += 1
    return True, row, ts, latency, tokens, key_index, key_start, key_stop, n_keys


_float = numba.njit(cache=True, error_model="numpy")(_float)
_int = numba.njit(cache=True, error_model="numpy")(_int)
_hash = numba.njit(cache=True, error_model="numpy")(_hash)
_rehash = numba.njit(cache=True, error_model="numpy")(_rehash)
_grown = numba.njit(cache=True, error_model="numpy")(_grown)
_compiled_parse = numba.njit(cache=True, error_model="numpy")(_parse)


def read_simple_csv(data: bytes, name: str, seed: int) -> Trace | None:
    """The trace in ``data`` (a whole CSV file) when it is simple enough; ``None`` otherwise."""
    newline = data.find(b"\n")
    header_bytes = data if newline < 0 else data[:newline]
    if b'"' in data or not header_bytes.isascii():
        return None
    header = [h.strip() for h in header_bytes.decode().rstrip("\r").split(",")]
    if (len(set(header)) != len(header) or not set(header) <= set(_FIELDS)
            or "ts" not in header or "key" not in header):
        return None
    if newline < 0:
        return None
    fields = np.array([_FIELDS.index(h) for h in header], dtype=np.int64)
    buf = np.frombuffer(data, dtype=np.uint8)
    ok, rows, ts, latency, tokens, key_index, starts, stops, n_keys = _compiled_parse(
        buf, newline + 1, fields, _POW10)
    if not ok:
        return None
    try:
        names = tuple(data[a:b].decode("utf-8") for a, b in
                      zip(starts[:n_keys].tolist(), stops[:n_keys].tolist(), strict=True))
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
