"""A trace held column by column (numpy arrays), as the fast engine and the statistics use it.

Keys are factorized: ``key_names`` holds each distinct key once, and a request's keys are
``key_index[key_ptr[i]:key_ptr[i + 1]]`` (compressed sparse rows), so a ten-million-request
trace with ten thousand keys costs a few hundred megabytes, not gigabytes of strings.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, overload

import numpy as np
import numpy.typing as npt

from tokenlimit.bucket.types import Charge
from tokenlimit.sim.records import TraceRequest

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


class IdColumn(Sequence[str | int]):
    """Request ids as the reader's column (``column``: a polars Series of Int64, String or
    Object values), turned into Python values only when they are asked for one by one: a
    replay never needs them, and ten million string ids cost seconds and gigabytes.

    >>> ids = IdColumn(["a", "b"])
    >>> len(ids), ids[1], list(ids) == ["a", "b"], ids == ("a", "b")
    (2, 'b', True, True)
    """

    __slots__ = ("_values", "column")

    def __init__(self, column: Any) -> None:
        self.column = column
        self._values: list[str | int] | None = None

    def __len__(self) -> int:
        return len(self.column)

    def _list(self) -> list[str | int]:
        if self._values is None:
            self._values = list(self.column) if isinstance(self.column, list) else (
                self.column.to_list())
        return self._values

    @overload
    def __getitem__(self, index: int) -> str | int: ...

    @overload
    def __getitem__(self, index: slice) -> list[str | int]: ...

    def __getitem__(self, index: int | slice) -> str | int | list[str | int]:
        return self._list()[index]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, IdColumn | tuple | list):
            return tuple(self) == tuple(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True, slots=True, eq=False)
class Trace:
    """Requests in file order. ``ids`` is ``None`` when every id is the request's position.

    Compared by identity (``eq=False``): element-wise array equality has no single truth value.
    """

    path: str
    ts: FloatArray
    latency: FloatArray
    prompt_tokens: IntArray
    completion_tokens: IntArray
    total_tokens: IntArray
    key_ptr: IntArray
    key_index: IntArray
    key_names: tuple[str, ...]
    imputed: BoolArray
    ids: Sequence[str | int] | None = None
    status: tuple[str | None, ...] | None = None

    def __len__(self) -> int:
        return int(self.ts.shape[0])

    @property
    def imputed_count(self) -> int:
        """How many requests got completion tokens drawn by the simulator."""
        return int(self.imputed.sum())

    def id_of(self, i: int) -> str | int:
        return i if self.ids is None else self.ids[i]

    def keys_of(self, i: int) -> tuple[str, ...]:
        start, stop = int(self.key_ptr[i]), int(self.key_ptr[i + 1])
        return tuple(self.key_names[k] for k in self.key_index[start:stop])

    def at_speed(self, speed: float, origin: float | None = None) -> Trace:
        """The trace played ``speed`` times faster: start times (from the first request, or
        from ``origin``: the whole trace's first request, for one batch of it) and
        latencies divided by ``speed``, the first request where it was.

        What a live service on the real clock sees from ``loadtest --replay --speed``: its
        whole-second refills and expiries come ``speed`` times rarer per request.

        >>> t = Trace("t", np.array([10.0, 30.0]), np.array([2.0, 4.0]), *[np.zeros(2, np.int64)]
        ...           * 3, np.array([0, 1, 2]), np.array([0, 0]), ("k",), np.zeros(2, bool))
        >>> fast = t.at_speed(10)
        >>> fast.ts.tolist(), fast.latency.tolist()
        ([10.0, 12.0], [0.2, 0.4])
        """
        if speed == 1 or len(self) == 0:
            return self
        first = float(self.ts.min()) if origin is None else origin
        return dataclasses.replace(self, ts=first + (self.ts - first) / speed,
                                   latency=self.latency / speed)

    def charged(self, charge: Charge) -> IntArray:
        """Tokens each request's report deducts."""
        return self.completion_tokens if charge == "completion" else self.total_tokens

    def requests(self) -> list[TraceRequest]:
        """The trace as ``TraceRequest`` values (for the event-by-event replays)."""
        names = self.key_names
        ptr, index = self.key_ptr.tolist(), self.key_index.tolist()
        ts, lat = self.ts.tolist(), self.latency.tolist()
        p, c, t = (self.prompt_tokens.tolist(), self.completion_tokens.tolist(),
                   self.total_tokens.tolist())
        imputed = self.imputed.tolist()
        out = []
        for i in range(len(ts)):
            keys = tuple(names[k] for k in index[ptr[i]:ptr[i + 1]])
            status = None if self.status is None else self.status[i]
            out.append(TraceRequest(self.id_of(i), ts[i], keys, lat[i], p[i], c[i], t[i],
                                    status, imputed[i]))
        return out

    def time_order(self) -> IntArray | None:
        """Request indices in replay order: by time, ties in file order (a stable sort);
        ``None`` when the file is already in time order."""
        ts = self.ts
        if ts.shape[0] < 2 or bool(np.all(ts[1:] >= ts[:-1])):
            return None
        return np.argsort(ts, kind="stable").astype(np.int64)


def take_key_lists(ptr: IntArray, keys: IntArray, rows: IntArray) -> tuple[IntArray, IntArray]:
    """The key lists of ``rows`` (in that order) of the key lists ``ptr``/``keys`` (CSR: row
    ``i``'s keys are ``keys[ptr[i]:ptr[i + 1]]``), as a new ``ptr``/``keys``.

    >>> [a.tolist() for a in take_key_lists(np.array([0, 1, 3]), np.array([7, 8, 9]),
    ...                                      np.array([1, 0]))]
    [[0, 2, 3], [8, 9, 7]]
    """
    lengths = (ptr[1:] - ptr[:-1])[rows]
    new_ptr = np.zeros(rows.size + 1, dtype=np.int64)
    np.cumsum(lengths, out=new_ptr[1:])
    starts = ptr[:-1][rows]
    taken = keys[np.repeat(starts - new_ptr[:-1], lengths) + np.arange(new_ptr[-1])]
    return new_ptr, taken.astype(np.int64, copy=False)


def trace_from_requests(requests: Sequence[TraceRequest], path: str = "<memory>") -> Trace:
    """A columnar trace from ``TraceRequest`` values (ids kept as given).

    >>> t = trace_from_requests([TraceRequest("a", 1.0, ("u", "v")), TraceRequest("b", 0.5, ())])
    >>> (len(t), t.key_names, t.keys_of(0), t.id_of(1))
    (2, ('u', 'v'), ('u', 'v'), 'b')
    """
    names: dict[str, int] = {}
    ptr = [0]
    index: list[int] = []
    for request in requests:
        for key in request.keys:
            index.append(names.setdefault(key, len(names)))
        ptr.append(len(index))
    return Trace(
        path=path,
        ts=np.array([r.ts for r in requests], dtype=np.float64),
        latency=np.array([r.latency for r in requests], dtype=np.float64),
        prompt_tokens=np.array([r.prompt_tokens for r in requests], dtype=np.int64),
        completion_tokens=np.array([r.completion_tokens for r in requests], dtype=np.int64),
        total_tokens=np.array([r.total_tokens for r in requests], dtype=np.int64),
        key_ptr=np.array(ptr, dtype=np.int64),
        key_index=np.array(index, dtype=np.int64),
        key_names=tuple(names),
        imputed=np.array([r.imputed for r in requests], dtype=np.bool_),
        ids=tuple(r.id for r in requests),
        status=tuple(r.status for r in requests),
    )


def key_label(key: str) -> str:
    """How a key reads in a table or a chart: the empty key (a log line without the key's
    field, a request without the key's header) as ``""``.

    >>> key_label("regular-user-1"), key_label("")
    ('regular-user-1', '""')
    """
    return key if key else '""'
