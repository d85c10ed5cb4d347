"""Statistics of a replay: per rule, per key and in total, as plain values (JSON-ready).

A request belongs to the key that decided it (the limited key for a deny, else its first
key that matches a rule) and to that key's rule; requests none of whose keys match a rule
form the ``rule: null`` row. ``tokens_admitted`` counts the charged tokens (completion, or
total with ``--charge total``) of admitted requests, the quantity the rules budget;
``spend`` prices the total tokens (prompt + completion) that admitted requests consumed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tokenlimit.rules.model import Rule
from tokenlimit.sim.engine import ALLOW, DENY, ERROR, Replay
from tokenlimit.sim.model import Charge
from tokenlimit.sim.trace import Trace


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


def _rows(group: Any, size: int, replay: Replay, trace: Trace, charged: Any,
          debt: Any) -> list[Row]:
    outcome = replay.outcome
    count = np.bincount(group, minlength=size)
    admitted = np.bincount(group, weights=outcome == ALLOW, minlength=size)
    limited = np.bincount(group, weights=outcome == DENY, minlength=size)
    errors = np.bincount(group, weights=outcome == ERROR, minlength=size)
    mask = outcome == ALLOW
    tokens = np.bincount(group[mask], weights=charged[mask], minlength=size)
    total = np.bincount(group[mask], weights=trace.total_tokens[mask], minlength=size)
    first = np.full(size, np.inf)
    denied = outcome == DENY
    np.minimum.at(first, group[denied], trace.ts[denied])
    return [Row(int(count[g]), int(admitted[g]), int(limited[g]), int(errors[g]),
                int(tokens[g]), int(total[g]), int(debt[g]),
                None if np.isinf(first[g]) else float(first[g])) for g in range(size)]


def summarize(rules: Sequence[Rule], trace: Trace, replay: Replay, *, semantics: str = "asm",
              charge: Charge = "completion", top: int = 20,
              price_per_1k: float | None = None) -> Summary:
    """Figures per rule, per key (the ``top`` keys by requests) and in total."""
    charged = trace.charged(charge)
    n_rules, n_keys = len(rules), len(trace.key_names)
    rule_group = np.where(replay.rule >= 0, replay.rule, n_rules)
    key_group = np.where(replay.key >= 0, replay.key, n_keys)
    key_rule = np.full(n_keys + 1, n_rules, dtype=np.int64)
    key_rule[replay.key[replay.key >= 0]] = replay.rule[replay.key >= 0]
    key_debt = np.append(replay.deepest, 0)
    rule_debt = np.zeros(n_rules + 1, dtype=np.int64)
    np.minimum.at(rule_debt, key_rule, key_debt)
    by_rule = _rows(rule_group, n_rules + 1, replay, trace, charged, rule_debt)
    by_key = _rows(key_group, n_keys + 1, replay, trace, charged, key_debt)
    totals = _rows(np.zeros(len(trace), dtype=np.int64), 1, replay, trace, charged,
                   np.array([min(0, int(replay.deepest.min(initial=0)))]))[0]
    rule_rows: list[tuple[int | None, str | None, Row]] = [
        (i, rules[i].regex, by_rule[i]) for i in range(n_rules) if by_rule[i].requests]
    if by_rule[n_rules].requests:
        rule_rows.append((None, None, by_rule[n_rules]))
    ranked = sorted((k for k in range(n_keys) if by_key[k].requests),
                    key=lambda k: (-by_key[k].requests, trace.key_names[k]))[:max(top, 0)]
    key_rows = [(trace.key_names[k], int(key_rule[k]) if key_rule[k] < n_rules else None,
                 by_key[k]) for k in ranked]
    return Summary(semantics, charge, replay.engine, trace.imputed_count, totals,
                   tuple(rule_rows), tuple(key_rows), price_per_1k)
