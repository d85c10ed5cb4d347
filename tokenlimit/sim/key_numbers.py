"""A trace's keys numbered in order of first appearance, from polars' categorical codes.

The per-row reader numbers keys as it meets them; the columnar reader gives the same numbers
(``Trace.key_index``, ``Trace.key_names``). polars factorizes the key column as it reads
(categorical codes, hashed in parallel); what is left is renumbering the codes in order of
first appearance. Where numba is loaded already (``simulate`` loads the compiled replay
while it reads) that is one compiled pass; otherwise polars finds the distinct codes in
order and numpy renumbers them, which on ten million requests costs two to four times as
long but does not load numba for a command that replays nothing (``trace convert``).
"""

from __future__ import annotations

import functools
import sys
from typing import TYPE_CHECKING, Any

import numpy as np

from tokenlimit.sim.trace_table import IntArray

if TYPE_CHECKING:
    import polars as pl


def number_keys(categorical: pl.Series) -> tuple[IntArray, tuple[str, ...]]:
    """(each row's key number, the key names in number order) of a categorical column
    without nulls; numbers in order of first appearance.

    >>> import polars as pl
    >>> index, names = number_keys(pl.Series(["b", "a", "b", "c"], dtype=pl.Categorical))
    >>> index.tolist(), names
    ([0, 1, 0, 2], ('b', 'a', 'c'))
    """
    if "numba" in sys.modules:
        return numbered_compiled(categorical)
    return numbered_by_polars(categorical)


def numbered_compiled(categorical: pl.Series) -> tuple[IntArray, tuple[str, ...]]:
    """``number_keys`` in one compiled pass over the codes."""
    import polars as pl

    codes = categorical.to_physical().to_numpy()
    if codes.size == 0:
        return np.zeros(0, dtype=np.int64), ()
    index, first_rows = _compiled_first_appearance()(codes, int(codes.max()) + 1)
    return index, tuple(categorical.gather(first_rows).cast(pl.String).to_list())


def numbered_by_polars(categorical: pl.Series) -> tuple[IntArray, tuple[str, ...]]:
    """``number_keys`` with polars and numpy only."""
    import polars as pl

    first_seen = categorical.unique(maintain_order=True)
    if first_seen.len() == 0:
        return np.zeros(0, dtype=np.int64), ()
    seen = first_seen.to_physical().to_numpy()
    rank = np.zeros(int(seen.max()) + 1, dtype=np.int64)
    rank[seen] = np.arange(seen.size, dtype=np.int64)
    names = tuple(first_seen.cast(pl.String).to_list())
    return rank[categorical.to_physical().to_numpy()], names


def _first_appearance(codes: Any, size: int) -> tuple[Any, Any]:
    """(each code's number, in order of first appearance; each number's first row)."""
    number = np.full(size, -1, dtype=np.int64)
    first_rows = np.empty(min(size, codes.shape[0]), dtype=np.int64)
    index = np.empty(codes.shape[0], dtype=np.int64)
    seen = 0
    for row in range(codes.shape[0]):
        code = codes[row]
        k = number[code]
        if k < 0:
            k = seen
            number[code] = k
            first_rows[k] = row
            seen += 1
        index[row] = k
    return index, first_rows[:seen]


@functools.cache
def _compiled_first_appearance() -> Any:
    from tokenlimit.sim.jit import njit

    return njit(_first_appearance, nogil=True)


def warm_up() -> None:
    """Load the compiled pass from numba's cache (see ``scan.warm_up``)."""
    _compiled_first_appearance()(np.zeros(1, dtype=np.uint32), 1)
