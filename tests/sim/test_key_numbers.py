"""Keys numbered in order of first appearance: the compiled pass and the polars one agree,
with each other and with a plain dictionary, on any column (also one in several chunks)."""

from __future__ import annotations

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenlimit.sim.key_numbers import number_keys, numbered_by_polars, numbered_compiled

_KEYS = st.lists(st.sampled_from(["a", "b", "subscriber-1", "é", "", "a b", "x" * 40]),
                 max_size=60)


def _by_dictionary(keys: list[str]) -> tuple[list[int], tuple[str, ...]]:
    numbers: dict[str, int] = {}
    return [numbers.setdefault(k, len(numbers)) for k in keys], tuple(numbers)


@settings(max_examples=200, deadline=None)
@given(first=_KEYS, second=_KEYS)
def test_both_passes_number_keys_as_the_per_row_reader(first: list[str],
                                                       second: list[str]) -> None:
    column = pl.concat([pl.Series(first, dtype=pl.Categorical),
                        pl.Series(second, dtype=pl.Categorical)], rechunk=False)
    expected = _by_dictionary(first + second)
    for numbered in (numbered_compiled, numbered_by_polars, number_keys):
        index, names = numbered(column)
        assert (index.tolist(), names) == expected
        assert index.dtype == "int64"


def test_an_empty_column_has_no_keys() -> None:
    column = pl.Series([], dtype=pl.Categorical)
    for numbered in (numbered_compiled, numbered_by_polars):
        index, names = numbered(column)
        assert (index.tolist(), names) == ([], ())
