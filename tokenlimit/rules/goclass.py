"""Character classes exactly as Go 1.22's ``regexp/syntax`` builds them, with Go's own tables.

A class is a flat list ``[lo0, hi0, lo1, hi1, ...]`` of runes, as in Go. The Unicode tables
(``\\pL``, ``\\p{Han}``...) and the simple case folding (``(?i)``) are Go 1.22's, which follow
Unicode 15.0.0: they were dumped once from Go by ``tests/rules/go_oracle`` into
``go_unicode_tables.json``, so a character assigned only in Unicode 15.1 (U+2EBF0, a Han
ideograph) is not in ``\\p{Han}`` here either.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

MAX_RUNE = 0x10FFFF
MIN_FOLD, MAX_FOLD = 0x0041, 0x1E943

Table = list[list[int]]  # [lo, hi, stride] rows, R16 rows first, as Go iterates them

PERL_GROUPS: dict[str, tuple[int, list[int]]] = {
    "\\d": (1, [0x30, 0x39]), "\\D": (-1, [0x30, 0x39]),
    "\\s": (1, [0x9, 0xA, 0xC, 0xD, 0x20, 0x20]), "\\S": (-1, [0x9, 0xA, 0xC, 0xD, 0x20, 0x20]),
    "\\w": (1, [0x30, 0x39, 0x41, 0x5A, 0x5F, 0x5F, 0x61, 0x7A]),
    "\\W": (-1, [0x30, 0x39, 0x41, 0x5A, 0x5F, 0x5F, 0x61, 0x7A]),
}
_POSIX = {
    "alnum": [0x30, 0x39, 0x41, 0x5A, 0x61, 0x7A], "alpha": [0x41, 0x5A, 0x61, 0x7A],
    "ascii": [0x0, 0x7F], "blank": [0x9, 0x9, 0x20, 0x20], "cntrl": [0x0, 0x1F, 0x7F, 0x7F],
    "digit": [0x30, 0x39], "graph": [0x21, 0x7E], "lower": [0x61, 0x7A], "print": [0x20, 0x7E],
    "punct": [0x21, 0x2F, 0x3A, 0x40, 0x5B, 0x60, 0x7B, 0x7E],
    "space": [0x9, 0xD, 0x20, 0x20], "upper": [0x41, 0x5A],
    "word": [0x30, 0x39, 0x41, 0x5A, 0x5F, 0x5F, 0x61, 0x7A],
    "xdigit": [0x30, 0x39, 0x41, 0x46, 0x61, 0x66],
}
POSIX_GROUPS: dict[str, tuple[int, list[int]]] = {
    **{f"[:{name}:]": (1, runes) for name, runes in _POSIX.items()},
    **{f"[:^{name}:]": (-1, runes) for name, runes in _POSIX.items()},
}
_ANY: Table = [[0, 0xFFFF, 1], [0x10000, MAX_RUNE, 1]]


@cache
def _tables() -> dict[str, object]:
    text = resources.files("tokenlimit.rules").joinpath("go_unicode_tables.json").read_text()
    loaded: dict[str, object] = json.loads(text)
    loaded["fold_map"] = {r: f for r, f in loaded["simple_fold"]}  # type: ignore[attr-defined]
    return loaded


def go_versions() -> tuple[str, str]:
    """The Go release the tables come from and its Unicode version: ``("go1.22.10", "15.0.0")``."""
    tables = _tables()
    return str(tables["go"]), str(tables["unicode"])


def simple_fold(rune: int) -> int:
    """Go's ``unicode.SimpleFold``: the next rune of ``rune``'s case orbit (itself if none)."""
    fold_map: dict[int, int] = _tables()["fold_map"]  # type: ignore[assignment]
    return fold_map.get(rune, rune)


def unicode_table(name: str) -> tuple[Table | None, Table | None]:
    """The table for ``\\p{name}`` and its case-folding complement, as Go's ``unicodeTable``."""
    if name == "Any":
        return _ANY, _ANY
    tables = _tables()
    for kind, fold in (("categories", "fold_category"), ("scripts", "fold_script")):
        found: dict[str, Table] = tables[kind]  # type: ignore[assignment]
        if name in found:
            folds: dict[str, Table] = tables[fold]  # type: ignore[assignment]
            return found[name], folds.get(name)
    return None, None


def append_range(r: list[int], lo: int, hi: int) -> list[int]:
    """Add ``lo-hi``, merging with one of the last two ranges when they touch (as Go does)."""
    n = len(r)
    for i in (2, 4):
        if n >= i:
            rlo, rhi = r[n - i], r[n - i + 1]
            if lo <= rhi + 1 and rlo <= hi + 1:
                if lo < rlo:
                    r[n - i] = lo
                if hi > rhi:
                    r[n - i + 1] = hi
                return r
    r.append(lo)
    r.append(hi)
    return r


def append_folded_range(r: list[int], lo: int, hi: int) -> list[int]:
    """Add ``lo-hi`` and every rune of their case orbits (Go's ``appendFoldedRange``)."""
    if lo <= MIN_FOLD and hi >= MAX_FOLD:
        return append_range(r, lo, hi)
    if hi < MIN_FOLD or lo > MAX_FOLD:
        return append_range(r, lo, hi)
    if lo < MIN_FOLD:
        r = append_range(r, lo, MIN_FOLD - 1)
        lo = MIN_FOLD
    if hi > MAX_FOLD:
        r = append_range(r, MAX_FOLD + 1, hi)
        hi = MAX_FOLD
    for c in range(lo, hi + 1):
        r = append_range(r, c, c)
        f = simple_fold(c)
        while f != c:
            r = append_range(r, f, f)
            f = simple_fold(f)
    return r


def append_literal(r: list[int], x: int, fold: bool) -> list[int]:
    """Add one rune, with its case orbit when ``fold``."""
    return append_folded_range(r, x, x) if fold else append_range(r, x, x)


def append_class(r: list[int], x: list[int]) -> list[int]:
    """Add every range of the class ``x``."""
    for i in range(0, len(x), 2):
        r = append_range(r, x[i], x[i + 1])
    return r


def append_folded_class(r: list[int], x: list[int]) -> list[int]:
    """Add every range of ``x`` with its case orbits."""
    for i in range(0, len(x), 2):
        r = append_folded_range(r, x[i], x[i + 1])
    return r


def append_negated_class(r: list[int], x: list[int]) -> list[int]:
    """Add every rune not in the (sorted) class ``x``."""
    next_lo = 0
    for i in range(0, len(x), 2):
        lo, hi = x[i], x[i + 1]
        if next_lo <= lo - 1:
            r = append_range(r, next_lo, lo - 1)
        next_lo = hi + 1
    if next_lo <= MAX_RUNE:
        r = append_range(r, next_lo, MAX_RUNE)
    return r


def _table_runs(x: Table) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for lo, hi, stride in x:
        if stride == 1:
            runs.append((lo, hi))
        else:
            runs.extend((c, c) for c in range(lo, hi + 1, stride))
    return runs


def append_table(r: list[int], x: Table) -> list[int]:
    if not r:
        r.extend(_fresh_table(id(x), x))
        return r
    for lo, hi in _table_runs(x):
        r = append_range(r, lo, hi)
    return r


_FRESH: dict[int, tuple[Table, tuple[int, ...]]] = {}


def _fresh_table(key: int, x: Table) -> tuple[int, ...]:
    """``append_table([], x)``, computed once per table (``\\pL`` is 1,300 runes)."""
    found = _FRESH.get(key)
    if found is None or found[0] is not x:
        r: list[int] = []
        for lo, hi in _table_runs(x):
            r = append_range(r, lo, hi)
        found = (x, tuple(r))
        _FRESH[key] = found
    return found[1]


def append_negated_table(r: list[int], x: Table) -> list[int]:
    """Add every rune not in the Unicode table ``x``."""
    next_lo = 0
    for lo, hi in _table_runs(x):
        if next_lo <= lo - 1:
            r = append_range(r, next_lo, lo - 1)
        next_lo = hi + 1
    if next_lo <= MAX_RUNE:
        r = append_range(r, next_lo, MAX_RUNE)
    return r


def clean_class(r: list[int]) -> list[int]:
    """Sort and merge in place (Go's ``cleanClass``); returns the cleaned list."""
    pairs = sorted(((r[i], r[i + 1]) for i in range(0, len(r), 2)),
                   key=lambda pair: (pair[0], -pair[1]))
    if len(pairs) < 1:
        return r
    out = [pairs[0][0], pairs[0][1]]
    for lo, hi in pairs[1:]:
        if lo <= out[-1] + 1:
            if hi > out[-1]:
                out[-1] = hi
            continue
        out.append(lo)
        out.append(hi)
    r[:] = out
    return r


def negate_class(r: list[int]) -> list[int]:
    """The complement of a clean class (Go's ``negateClass``)."""
    out: list[int] = []
    next_lo = 0
    for i in range(0, len(r), 2):
        lo, hi = r[i], r[i + 1]
        if next_lo <= lo - 1:
            out += [next_lo, lo - 1]
        next_lo = hi + 1
    if next_lo <= MAX_RUNE:
        out += [next_lo, MAX_RUNE]
    return out
