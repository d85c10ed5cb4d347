"""Statistics of a replay: per rule, per key and in total, as plain values (JSON-ready).

A request belongs to the key that decided it (the limited key for a deny, else its first
key that matches a rule) and to that key's rule; requests none of whose keys match a rule
form the ``rule: null`` row. Every rule has a row; a rule's deepest debt covers all keys
matching it (a multi-key request charges every key). ``tokens_admitted`` counts the charged
tokens (completion, or total with ``--charge total``) of admitted requests, the quantity the
rules budget; ``spend`` prices the total tokens (prompt + completion) that admitted
requests consumed.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tokenlimit.bucket.types import Charge
from tokenlimit.rules.model import Rule
from tokenlimit.sim.engine import Replay, key_rules
from tokenlimit.sim.partition import map_blocks, usable_cores
from tokenlimit.sim.trace_table import Trace


@dataclass(frozen=True, slots=True)
class Row:
    """Figures for one rule, one key or the whole trace."""

    requests: int
    admitted: int
    limited: int
    errors: int
    tokens_admitted: int
    total_tokens_admitted: int
    deepest_debt: int
    first_limited: float | None

    @property
    def limited_pct(self) -> float:
        return 100.0 * self.limited / self.requests if self.requests else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "admitted": self.admitted, "limited": self.limited,
                "limited_pct": round(self.limited_pct, 3), "errors": self.errors,
                "tokens_admitted": self.tokens_admitted,
                "total_tokens_admitted": self.total_tokens_admitted,
                "deepest_debt": self.deepest_debt, "first_limited": self.first_limited}


@dataclass(frozen=True, slots=True)
class Summary:
    """The whole report. ``keys``: the ``top`` keys by requests, as (key, rule, row)."""

    semantics: str
    charge: Charge
    engine: str
    imputed: int
    totals: Row
    rules: tuple[tuple[int | None, str | None, Row], ...]
    keys: tuple[tuple[str, int | None, Row], ...]
    price_per_1k: float | None

    def spend(self) -> dict[str, float] | None:
        """Estimated spend in USD of the admitted requests (``None`` without a price)."""
        if self.price_per_1k is None:
            return None
        return {"price_per_1k_tokens": self.price_per_1k,
                "admitted_usd": round(self.totals.total_tokens_admitted / 1000
                                      * self.price_per_1k, 6)}

    def to_dict(self) -> dict[str, Any]:
        return {
            "semantics": self.semantics, "charge": self.charge, "engine": self.engine,
            "imputed": self.imputed, "totals": self.totals.to_dict(),
            "rules": [{"rule": index, "regex": regex, **row.to_dict()}
                      for index, regex, row in self.rules],
            "keys": [{"key": key, "rule": rule, **row.to_dict()} for key, rule, row in self.keys],
            "spend": self.spend(),
        }


def _group_figures(group: Any, size: int, outcome: Any, charged: Any, total: Any,
                   ts: Any) -> Any:
    """One pass: per group, counts by outcome, tokens admitted and first limited time.
    A negative group counts as the last (``size - 1``)."""
    counts = np.zeros((size, 6), dtype=np.int64)
    first = np.full(size, np.inf)
    for i in range(group.shape[0]):
        g = group[i] if group[i] >= 0 else size - 1
        o = np.int64(outcome[i])
        counts[g, 0] += 1
        counts[g, 1 + o] += 1
        if o == 0:
            counts[g, 4] += charged[i]
            counts[g, 5] += total[i]
        elif o == 1 and ts[i] < first[g]:
            first[g] = ts[i]
    return counts, first


@functools.cache
def _compiled_figures() -> Any:
    # numba is loaded when figures are first needed, not with the command line
    from tokenlimit.sim.jit import njit

    return njit(_group_figures, nogil=True)


def _rows(counts: Any, first: Any, debt: Any) -> list[Row]:
    return [Row(int(c[0]), int(c[1]), int(c[2]), int(c[3]), int(c[4]), int(c[5]), int(d),
                None if np.isinf(f) else float(f))
            for c, f, d in zip(counts.tolist(), first.tolist(), debt.tolist(), strict=True)]


def key_figures(trace: Trace, replay: Replay, charge: Charge, n_keys: int) -> tuple[Any, Any]:
    """Per deciding key (index ``n_keys``: no rule), counts (requests, admitted, limited,
    errors, tokens admitted, total tokens admitted) and the first limited time. Figures of
    consecutive chunks add up (counts) and take the minimum (times)."""
    figures = _compiled_figures()
    columns = (replay.key, replay.outcome, trace.charged(charge), trace.total_tokens, trace.ts)
    n = replay.key.shape[0]

    def block_figures(start: int, stop: int) -> tuple[Any, Any]:
        key, *rest = (column[start:stop] for column in columns)
        part: tuple[Any, Any] = figures(key, n_keys + 1, *rest)
        return part

    # Blocks of requests on every core, when each block's table of keys is small beside it.
    blocks = min(usable_cores(), n // _BLOCK) if (n_keys + 1) * 16 < n else 1
    found = map_blocks(n, blocks, block_figures)
    return (np.sum([c for c, _ in found], axis=0),
            np.minimum.reduce([f for _, f in found]))


_BLOCK = 1_000_000  # requests at least in each block of key_figures'


def _per_rule(key_rule: Any, size: int, counts: Any, first: Any, debt: Any
              ) -> tuple[Any, Any, Any]:
    """Per rule (``size`` groups of keys): counts summed, first limited time and deepest
    debt (minimum, 0 at most). Keys sorted by rule once, then reduced run by run (unbuffered
    ``ufunc.at`` costs about a second on two million keys)."""
    order = np.argsort(key_rule, kind="stable")
    grouped = key_rule[order]
    starts = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]]) if grouped.size else (
        np.zeros(0, dtype=np.int64))
    rules = grouped[starts]
    rule_counts = np.zeros((size, counts.shape[1]), dtype=np.int64)
    rule_first = np.full(size, np.inf)
    rule_debt = np.zeros(size, dtype=np.int64)
    if starts.size:
        rule_counts[rules] = np.add.reduceat(counts[order], starts, axis=0)
        rule_first[rules] = np.minimum.reduceat(first[order], starts)
        rule_debt[rules] = np.minimum(np.minimum.reduceat(debt[order], starts), 0)
    return rule_counts, rule_first, rule_debt


def _top_keys(requests: Any, key_names: Sequence[str], top: int) -> Any:
    """The ``top`` keys with requests, most requests first, ties by name (only the keys that
    can make the cut are sorted: a trace may have millions)."""
    used = np.flatnonzero(requests > 0)
    if used.size > top > 0:
        cut = -np.partition(-requests[used], top - 1)[top - 1]
        used = used[requests[used] >= cut]
    ranked = sorted(used.tolist(), key=lambda k: (-int(requests[k]), key_names[k]))[:top]
    return np.array(ranked, dtype=np.int64)


def warm_up() -> None:
    """Load the compiled per-key figures from numba's cache (see ``scan.warm_up``)."""
    one = np.zeros(1, dtype=np.int64)
    _compiled_figures()(one, 1, np.zeros(1, dtype=np.int8), one, one, np.zeros(1))


def summarize(rules: Sequence[Rule], trace: Trace, replay: Replay, *, semantics: str = "asm",
              charge: Charge = "completion", top: int = 20,
              price_per_1k: float | None = None) -> Summary:
    """Figures per rule, per key (the ``top`` keys by requests) and in total."""
    counts, first = key_figures(trace, replay, charge, len(trace.key_names))
    return summary_from_figures(rules, trace.key_names, counts, first, replay.deepest,
                                engine=replay.engine, imputed=trace.imputed_count,
                                semantics=semantics, charge=charge, top=top,
                                price_per_1k=price_per_1k)


def summary_from_figures(rules: Sequence[Rule], key_names: Sequence[str], counts: Any,
                         first: Any, deepest: Any, *, engine: str, imputed: int,
                         semantics: str = "asm", charge: Charge = "completion", top: int = 20,
                         price_per_1k: float | None = None) -> Summary:
    """The report from ``key_figures`` (summed over chunks) and each key's deepest debt."""
    n_rules, n_keys = len(rules), len(key_names)
    # Every key's own rule (not only of keys that decided a request): a second key of a
    # multi-key request runs into debt under its rule too.
    matched = key_rules(rules, key_names)
    key_rule = np.append(np.where(matched >= 0, matched, n_rules), n_rules)
    key_debt = np.append(deepest, 0)
    # A key's requests all belong to its rule, so rules and totals add up key rows.
    rule_counts, rule_first, rule_debt = _per_rule(key_rule, n_rules + 1, counts, first,
                                                   key_debt)
    by_rule = _rows(rule_counts, rule_first, rule_debt)
    totals = _rows(counts.sum(axis=0, keepdims=True), first.min(keepdims=True),
                   np.array([min(0, int(np.min(deepest, initial=0)))]))[0]
    rule_rows: list[tuple[int | None, str | None, Row]] = [
        (i, rules[i].regex, by_rule[i]) for i in range(n_rules)]
    if by_rule[n_rules].requests:
        rule_rows.append((None, None, by_rule[n_rules]))
    ranked = _top_keys(counts[:n_keys, 0], key_names, max(top, 0))
    by_key = _rows(counts[ranked], first[ranked], key_debt[ranked])
    key_rows = [(key_names[k], int(key_rule[k]) if key_rule[k] < n_rules else None, row)
                for k, row in zip(ranked.tolist(), by_key, strict=True)]
    return Summary(semantics, charge, engine, imputed, totals, tuple(rule_rows),
                   tuple(key_rows), price_per_1k)
