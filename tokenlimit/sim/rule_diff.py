"""What changing the rules does to recorded traffic: one trace replayed through two rule sets.

Rules are paired by regex (the n-th rule with a regex in the old set with the n-th one with
the same regex in the new set): a pair whose numbers or position differ is *changed*, an
unpaired old rule is *removed*, an unpaired new one *added*.

A request is *newly limited* when the new rules deny it and the old ones did not, *newly
admitted* when the new rules admit it and the old ones did not. Requests are grouped by rule
(the regex of the rule that decided the request under the new rules, else under the old ones)
and by key class (a regex searched in the request's keys, see ``conditions``). The keys that
change most are the deciding keys (new, else old) with the most changed decisions.

>>> from tokenlimit.rules.model import Rule
>>> from tokenlimit.sim.records import TraceRequest
>>> from tokenlimit.sim.trace_table import trace_from_requests
>>> trace = trace_from_requests([TraceRequest(i, float(i), ("u",), 0.0, completion_tokens=40)
...                              for i in range(3)])
>>> d = diff_rules(trace, [Rule(0, "u", 100, 100, 60, 600)], [Rule(0, "u", 50, 50, 60, 600)])
>>> [c.kind for c in d.rules], d.totals.newly_limited, d.totals.first_newly_limited
(['changed'], 1, 2.0)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tokenlimit.bucket.types import Charge
from tokenlimit.rules.figures import figures_of
from tokenlimit.rules.model import INT_FIELDS, Rule
from tokenlimit.sim.conditions import Condition, class_mask
from tokenlimit.sim.engine import ALLOW, DENY, Replay, replay_asm
from tokenlimit.sim.trace_table import BoolArray, Trace

NO_RULE = "(no rule)"
TOTAL = "(all requests)"
METRICS = ("newly_limited", "newly_admitted", "limited", "newly_limited_tokens")


@dataclass(frozen=True, slots=True)
class RuleChange:
    """One rule paired across the two sets: ``kind`` is added, removed, changed or same;
    ``fields``: the numbers that differ (and ``position`` when the index moved)."""

    kind: str
    regex: str
    old: Rule | None
    new: Rule | None
    fields: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        def side(rule: Rule | None) -> dict[str, Any] | None:
            if rule is None:
                return None
            figures = figures_of(rule)
            return {"index": rule.index, **rule.to_config(),
                    "figures": None if figures is None else figures.to_dict()}

        return {"change": self.kind, "regex": self.regex, "fields": list(self.fields),
                "old": side(self.old), "new": side(self.new)}


@dataclass(frozen=True, slots=True)
class GroupDiff:
    """Old and new figures of one group of requests (a rule, a key class, or all).

    ``tokens_*`` count charged tokens (completion tokens by default); ``first_*`` are trace
    times (Unix seconds) or ``None``.
    """

    label: str
    requests: int
    old_limited: int
    new_limited: int
    newly_limited: int
    newly_admitted: int
    old_tokens_admitted: int
    new_tokens_admitted: int
    newly_limited_tokens: int
    newly_admitted_tokens: int
    old_first_limited: float | None
    new_first_limited: float | None
    first_newly_limited: float | None

    def measure(self, condition: Condition) -> float:
        """The value a condition on this group compares (a percentage when it asks for one)."""
        count = {"newly_limited": self.newly_limited, "newly_admitted": self.newly_admitted,
                 "limited": self.new_limited,
                 "newly_limited_tokens": self.newly_limited_tokens}[condition.metric]
        if not condition.percent:
            return float(count)
        whole = (self.old_tokens_admitted if condition.metric == "newly_limited_tokens"
                 else self.requests)
        return 100.0 * count / whole if whole else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(frozen=True, slots=True)
class KeyDiff:
    """One key's requests and how many of their decisions changed."""

    key: str
    requests: int
    old_limited: int
    new_limited: int
    newly_limited: int
    newly_admitted: int

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(frozen=True, slots=True)
class Breach:
    """A condition that holds for a group (for ``--fail-if``: a threshold crossed)."""

    condition: Condition
    group: str
    measured: float

    def __str__(self) -> str:
        unit = "%" if self.condition.percent else ""
        return f"{self.condition} (measured {self.measured:.4g}{unit} on {self.group})"


@dataclass(frozen=True, slots=True, eq=False)
class TraceDiff:
    """The whole comparison; ``trace`` and both replays are kept for classes asked later."""

    rules: tuple[RuleChange, ...]
    by_rule: tuple[GroupDiff, ...]
    by_class: tuple[GroupDiff, ...]
    totals: GroupDiff
    keys: tuple[KeyDiff, ...]
    trace: Trace
    old: Replay
    new: Replay
    charge: Charge

    def group(self, pattern: str) -> GroupDiff:
        """Figures of the key class ``pattern`` (computed when not already reported)."""
        for row in self.by_class:
            if row.label == pattern:
                return row
        return _group(pattern, class_mask(self.trace, pattern), self.trace, self.old, self.new,
                      self.charge)

    def breaches(self, conditions: Sequence[Condition]) -> list[Breach]:
        """The conditions that hold: on their class, or (no class) on any reported group."""
        found = []
        for condition in conditions:
            rows = ([self.group(condition.group)] if condition.group is not None
                    else [*self.by_rule, *self.by_class, self.totals])
            for row in rows:
                measured = row.measure(condition)
                if condition.holds(measured):
                    found.append(Breach(condition, row.label, measured))
        return found

    def to_dict(self) -> dict[str, Any]:
        return {"trace": self.trace.path, "charge": self.charge,
                "requests": len(self.trace),
                "rules": [c.to_dict() for c in self.rules],
                "by_rule": [g.to_dict() for g in self.by_rule],
                "by_class": [g.to_dict() for g in self.by_class],
                "totals": self.totals.to_dict(),
                "keys": [k.to_dict() for k in self.keys]}


def pair_rules(old: Sequence[Rule], new: Sequence[Rule]) -> tuple[RuleChange, ...]:
    """Rules paired by regex, in the new set's order, then the removed ones.

    >>> [c.kind for c in pair_rules([Rule(0, "a", 1, 1, 1, 1)], [Rule(0, "b", 1, 1, 1, 1)])]
    ['added', 'removed']
    """
    unpaired = list(old)
    changes = []
    for rule in new:
        partner = next((o for o in unpaired if o.regex == rule.regex), None)
        if partner is None:
            changes.append(RuleChange("added", rule.regex, None, rule, ()))
            continue
        unpaired.remove(partner)
        fields = tuple(f for f in INT_FIELDS if getattr(partner, f) != getattr(rule, f))
        if partner.index != rule.index:
            fields += ("position",)
        changes.append(RuleChange("changed" if fields else "same", rule.regex, partner, rule,
                                  fields))
    changes.extend(RuleChange("removed", o.regex, o, None, ()) for o in unpaired)
    return tuple(changes)


def _first(ts: Any, mask: BoolArray) -> float | None:
    return float(ts[mask].min()) if bool(mask.any()) else None


def _group(label: str, mask: BoolArray, trace: Trace, old: Replay, new: Replay,
           charge: Charge) -> GroupDiff:
    charged = trace.charged(charge)
    old_deny, new_deny = (old.outcome == DENY) & mask, (new.outcome == DENY) & mask
    old_allow, new_allow = (old.outcome == ALLOW) & mask, (new.outcome == ALLOW) & mask
    newly_limited = new_deny & ~old_deny
    newly_admitted = new_allow & ~old_allow
    return GroupDiff(
        label=label, requests=int(mask.sum()),
        old_limited=int(old_deny.sum()), new_limited=int(new_deny.sum()),
        newly_limited=int(newly_limited.sum()), newly_admitted=int(newly_admitted.sum()),
        old_tokens_admitted=int(charged[old_allow].sum()),
        new_tokens_admitted=int(charged[new_allow].sum()),
        newly_limited_tokens=int(charged[newly_limited].sum()),
        newly_admitted_tokens=int(charged[newly_admitted].sum()),
        old_first_limited=_first(trace.ts, old_deny), new_first_limited=_first(trace.ts, new_deny),
        first_newly_limited=_first(trace.ts, newly_limited))


def _key_rows(trace: Trace, old: Replay, new: Replay, top: int) -> tuple[KeyDiff, ...]:
    key = np.where(new.key >= 0, new.key, old.key)
    keep = key >= 0
    size = len(trace.key_names)

    def count(mask: BoolArray) -> Any:
        return np.bincount(key[keep & mask], minlength=size)

    old_deny, new_deny = old.outcome == DENY, new.outcome == DENY
    requests = count(np.ones(len(trace), dtype=np.bool_))
    newly_limited = count(new_deny & ~old_deny)
    newly_admitted = count((new.outcome == ALLOW) & (old.outcome != ALLOW))
    old_limited, new_limited = count(old_deny), count(new_deny)
    changed = newly_limited + newly_admitted
    ranked = sorted((k for k in range(size) if changed[k] > 0),
                    key=lambda k: (-int(changed[k]), trace.key_names[k]))[:max(top, 0)]
    return tuple(KeyDiff(trace.key_names[k], int(requests[k]), int(old_limited[k]),
                         int(new_limited[k]), int(newly_limited[k]), int(newly_admitted[k]))
                 for k in ranked)


def diff_replays(trace: Trace, old_rules: Sequence[Rule], old: Replay,
                 new_rules: Sequence[Rule], new: Replay, *, classes: Sequence[str] = (),
                 charge: Charge = "completion", top: int = 10) -> TraceDiff:
    """Compare two replays of ``trace`` (decisions in trace order, as ``replay_asm`` gives)."""
    # rule -1 (none) indexes the trailing "" of each label array
    new_label = np.array([r.regex for r in new_rules] + [""], dtype=object)
    old_label = np.array([r.regex for r in old_rules] + [""], dtype=object)
    labels = np.where(new.rule >= 0, new_label[new.rule], old_label[old.rule])
    labels = np.where(labels == "", NO_RULE, labels)
    order = list(dict.fromkeys([*(r.regex for r in new_rules), *(r.regex for r in old_rules),
                                NO_RULE]))
    by_rule = [_group(label, labels == label, trace, old, new, charge) for label in order]
    by_rule = [g for g in by_rule if g.requests or g.label != NO_RULE]
    by_class = tuple(_group(p, class_mask(trace, p), trace, old, new, charge) for p in classes)
    totals = _group(TOTAL, np.ones(len(trace), dtype=np.bool_), trace, old, new, charge)
    return TraceDiff(pair_rules(old_rules, new_rules), tuple(by_rule), by_class, totals,
                     _key_rows(trace, old, new, top), trace, old, new, charge)


def diff_rules(trace: Trace, old_rules: Sequence[Rule], new_rules: Sequence[Rule], *,
               classes: Sequence[str] = (), charge: Charge = "completion",
               top: int = 10) -> TraceDiff:
    """Replay ``trace`` through both rule sets (the exact ASM replay) and compare."""
    return diff_replays(trace, old_rules, replay_asm(old_rules, trace, charge), new_rules,
                        replay_asm(new_rules, trace, charge), classes=classes, charge=charge,
                        top=top)
