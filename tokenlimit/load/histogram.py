"""An HDR-style latency histogram: log-linear buckets, exact merge, percentiles within 0.1 %.

Values are recorded as whole microseconds. Below 2048 us every value has its own bucket;
above, each power of two is split into 1024 equal buckets, so a reported percentile is at
most 1/1024 above the true value (the bucket's highest value is reported, as HdrHistogram
does, capped at the exact maximum). Two histograms merge by adding counts, so a merge of
the histograms of two runs equals the histogram of one run over both: percentiles of a
merged report are exact, never averages of percentiles.

>>> h = LatencyHistogram()
>>> for us in (100, 200, 300, 400):
...     h.record_us(us)
>>> h.percentile_us(50), h.percentile_us(100), h.count
(200, 400, 4)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

SUB_BITS = 11  # 2048 linear buckets, then 1024 per power of two: 3 significant digits
_LINEAR = 1 << SUB_BITS
_HALF = _LINEAR >> 1
PERCENTILES: tuple[float, ...] = (50.0, 90.0, 99.0, 99.9)


def bucket_index(value_us: int) -> int:
    """The bucket of a non-negative value in microseconds.

    >>> bucket_index(5), bucket_index(2047), bucket_index(2048), bucket_index(4096)
    (5, 2047, 2048, 3072)
    """
    if value_us < _LINEAR:
        return max(value_us, 0)
    shift = value_us.bit_length() - SUB_BITS
    return _LINEAR + (shift - 1) * _HALF + ((value_us >> shift) - _HALF)


def bucket_high(index: int) -> int:
    """The highest value (microseconds) that falls in bucket ``index``.

    >>> [bucket_high(bucket_index(v)) for v in (5, 2048, 2049, 4096, 4100)]
    [5, 2049, 2049, 4099, 4103]
    """
    if index < _LINEAR:
        return index
    shift = (index - _LINEAR) // _HALF + 1
    sub = (index - _LINEAR) % _HALF + _HALF
    return ((sub + 1) << shift) - 1


@dataclass(slots=True)
class LatencyHistogram:
    """Counts per bucket, with the exact count, sum, minimum and maximum."""

    counts: dict[int, int] = field(default_factory=dict)
    count: int = 0
    total_us: int = 0
    min_us: int | None = None
    max_us: int | None = None

    def record_us(self, value_us: int) -> None:
        """Record one value in whole microseconds (negative values count as 0)."""
        # bucket_index inlined: this runs several times per request in the generator.
        value_us = int(value_us)
        if value_us < _LINEAR:
            if value_us < 0:
                value_us = 0
            index = value_us
        else:
            shift = value_us.bit_length() - SUB_BITS
            index = _LINEAR + (shift - 1) * _HALF + ((value_us >> shift) - _HALF)
        counts = self.counts
        counts[index] = counts.get(index, 0) + 1
        self.count += 1
        self.total_us += value_us
        low = self.min_us
        if low is None or value_us < low:
            self.min_us = value_us
        high = self.max_us
        if high is None or value_us > high:
            self.max_us = value_us

    def record(self, seconds: float) -> None:
        """Record one value in seconds."""
        self.record_us(round(seconds * 1e6))

    def merge(self, other: LatencyHistogram) -> None:
        """Add ``other``'s counts to this histogram (exact)."""
        for index, n in other.counts.items():
            self.counts[index] = self.counts.get(index, 0) + n
        self.count += other.count
        self.total_us += other.total_us
        if other.min_us is not None and (self.min_us is None or other.min_us < self.min_us):
            self.min_us = other.min_us
        if other.max_us is not None and (self.max_us is None or other.max_us > self.max_us):
            self.max_us = other.max_us

    def percentile_us(self, percent: float) -> int | None:
        """The value at ``percent`` (0-100): the smallest bucket holding that rank."""
        if self.count == 0 or self.max_us is None:
            return None
        rank = max(1, -(-self.count * percent // 100))  # ceil, at least the first value
        seen = 0
        for index in sorted(self.counts):
            seen += self.counts[index]
            if seen >= rank:
                return min(bucket_high(index), self.max_us)
        return self.max_us

    @property
    def mean_us(self) -> float | None:
        return self.total_us / self.count if self.count else None

    def summary_ms(self) -> dict[str, float | int | None]:
        """count, mean, p50, p90, p99, p99.9 and max in milliseconds (JSON-ready)."""
        def ms(us: float | None) -> float | None:
            return None if us is None else round(us / 1000, 3)

        out: dict[str, float | int | None] = {"count": self.count, "mean": ms(self.mean_us)}
        for p in PERCENTILES:
            out[f"p{p:g}"] = ms(self.percentile_us(p))
        out["max"] = ms(self.max_us)
        return out

    def to_dict(self) -> dict[str, Any]:
        """The exact state: sparse counts as ``[[bucket, count], ...]`` in bucket order."""
        return {
            "sub_bits": SUB_BITS,
            "count": self.count,
            "total_us": self.total_us,
            "min_us": self.min_us,
            "max_us": self.max_us,
            "buckets": [[i, self.counts[i]] for i in sorted(self.counts)],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LatencyHistogram:
        """Read ``to_dict``'s output back (raises ``ValueError`` on a bad shape)."""
        if data.get("sub_bits") != SUB_BITS:
            raise ValueError(f"histogram sub_bits must be {SUB_BITS}")
        counts: dict[int, int] = {}
        for pair in data["buckets"]:
            index, n = int(pair[0]), int(pair[1])
            if index < 0 or n < 0:
                raise ValueError("histogram buckets and counts must be non-negative")
            counts[index] = counts.get(index, 0) + n
        hist = cls(counts, int(data["count"]), int(data["total_us"]),
                   _opt_int(data.get("min_us")), _opt_int(data.get("max_us")))
        if sum(counts.values()) != hist.count:
            raise ValueError("histogram count does not equal the sum of its buckets")
        return hist

    @classmethod
    def of(cls, values_us: Iterable[int]) -> LatencyHistogram:
        """A histogram of ``values_us``."""
        hist = cls()
        for v in values_us:
            hist.record_us(v)
        return hist


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)
