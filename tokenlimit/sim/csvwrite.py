"""Compiled CSV formatting for traces whose times are whole milliseconds (generated traces).

A float that is the nearest double to ``k / 1000`` is written as the decimal ``k / 1000``
(trailing zeros trimmed), which reads back as the very same double.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tokenlimit.sim.jit import njit


def _digits(out: Any, pos: int, value: int) -> int:
    if value < 0:
        out[pos] = 45
        pos += 1
        value = -value
    start = pos
    while True:
        out[pos] = 48 + value % 10
        pos += 1
        value //= 10
        if value == 0:
            break
    i, j = start, pos - 1
    while i < j:
        out[i], out[j] = out[j], out[i]
        i += 1
        j -= 1
    return pos


def _millis(out: Any, pos: int, value: int) -> int:
    if value < 0:
        out[pos] = 45
        pos += 1
        value = -value
    pos = _digits(out, pos, value // 1000)
    out[pos] = 46
    pos += 1
    frac = value % 1000
    out[pos] = 48 + frac // 100
    out[pos + 1] = 48 + (frac // 10) % 10
    out[pos + 2] = 48 + frac % 10
    pos += 3
    while out[pos - 1] == 48 and out[pos - 2] != 46:
        pos -= 1
    return pos


def _format(ts_ms: Any, keys: Any, offsets: Any, blob: Any, lat_ms: Any, prompt: Any,
            completion: Any, total: Any, longest: int) -> Any:
    n = ts_ms.shape[0]
    out = np.empty(n * (longest + 6 * 22), dtype=np.uint8)
    pos = 0
    for i in range(n):
        pos = _millis(out, pos, ts_ms[i])
        out[pos] = 44
        pos += 1
        k = keys[i]
        for b in range(offsets[k], offsets[k + 1]):
            out[pos] = blob[b]
            pos += 1
        out[pos] = 44
        pos = _millis(out, pos + 1, lat_ms[i])
        out[pos] = 44
        pos = _digits(out, pos + 1, prompt[i])
        out[pos] = 44
        pos = _digits(out, pos + 1, completion[i])
        out[pos] = 44
        pos = _digits(out, pos + 1, total[i])
        out[pos] = 10
        pos += 1
    return out[:pos]


def _put(out: Any, pos: int, text: Any) -> int:
    for i in range(text.shape[0]):
        out[pos + i] = text[i]
    return int(pos + text.shape[0])


def _decisions(first: int, outcome: Any, rule: Any, head: Any, middle: Any, tail: Any,
               null: Any, words: Any) -> Any:
    n = outcome.shape[0]
    out = np.empty(n * 80, dtype=np.uint8)
    pos = 0
    for i in range(n):
        pos = _put(out, pos, head)
        pos = _digits(out, pos, first + i)
        pos = _put(out, pos, middle)
        o = outcome[i]
        pos = _put(out, pos, words[o, : words[o, 15]])
        pos = _put(out, pos, tail)
        pos = _put(out, pos, null) if rule[i] < 0 else _digits(out, pos, rule[i])
        out[pos] = 125  # }
        out[pos + 1] = 10
        pos += 2
    return out[:pos]


def decision_lines(first: int, outcome: Any, rule: Any) -> bytes:
    """``{"id": N, "outcome": "allow", "rule": R}`` lines for requests ``first``, ``first+1``,
    ... (ids that are positions in the file)."""
    words = np.zeros((3, 16), dtype=np.uint8)
    for row, word in enumerate((b'"allow"', b'"deny"', b'"error"')):
        words[row, : len(word)] = np.frombuffer(word, dtype=np.uint8)
        words[row, 15] = len(word)

    def text(value: bytes) -> Any:
        return np.frombuffer(value, dtype=np.uint8)

    rows = _compiled_decisions(first, outcome.astype(np.int64), rule.astype(np.int64),
                               text(b'{"id": '), text(b', "outcome": '), text(b', "rule": '),
                               text(b"null"), words)
    return bytes(rows)


_digits = njit(_digits)
_put = njit(_put)
_millis = njit(_millis)
_compiled_format = njit(_format)
_compiled_decisions = njit(_decisions)


def fits_millisecond_csv(ts: Any, latency: Any, names: list[str]) -> bool:
    """Whether every time and latency is a whole millisecond and no key needs quoting."""
    ts_ms = np.rint(ts * 1000.0)
    lat_ms = np.rint(latency * 1000.0)
    return not (np.any(np.abs(ts_ms) > 2.0**52) or np.any(np.abs(lat_ms) > 2.0**52)
                or not np.array_equal(ts_ms / 1000.0, ts)
                or not np.array_equal(lat_ms / 1000.0, latency)
                or any(c in name for name in names for c in ',"\n\r'))


def millisecond_csv_rows(ts: Any, key_index: Any, names: list[str], latency: Any, prompt: Any,
                         completion: Any, total: Any) -> bytes:
    """CSV rows (no header); only for data that ``fits_millisecond_csv``."""
    ts_ms = np.rint(ts * 1000.0)
    lat_ms = np.rint(latency * 1000.0)
    encoded = [name.encode("utf-8") for name in names]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    blob = np.frombuffer(b"".join(encoded) or b"\0", dtype=np.uint8)
    longest = max((len(e) for e in encoded), default=0)
    rows = _compiled_format(ts_ms.astype(np.int64), key_index.astype(np.int64), offsets, blob,
                            lat_ms.astype(np.int64), prompt.astype(np.int64),
                            completion.astype(np.int64), total.astype(np.int64), longest)
    return bytes(rows)
