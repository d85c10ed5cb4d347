"""Did the limiter admit what its rules say? The observed run replayed through the ASM model.

The service decides with its own clock, in whole seconds, and concurrent requests can reach
it in another order than they were sent. The generator only knows, for each check, the
window ``[sent, answered]`` in which the service ran it, and for each usage report the window
in which it was applied (service mode: the report's own send and answer times; gateway mode:
from the answer to ``report_window`` seconds later, since the gateway reports after the
response). Every window is widened by ``tolerance`` seconds for clock granularity.

The prediction uses the reports that were really sent (the observed traffic), through
``tokenlimit.sim.AsmLimiter``. It is bounded rather than guessed:

- A report whose window overlaps a check's window may have come before or after it.
- The lower bound of a check's balance places every report as late as possible and counts
  every report that may precede the check; the upper bound places reports as early as
  possible and leaves out every report that may follow it (a report moved earlier never
  lowers a later balance, and one report changes a balance by at most its tokens, because
  refills are capped by ``max_tokens`` and resets forget debt).
- Checks whose window straddles a second boundary are followed both ways, in every
  combination that leads to a distinct state (``tokenlimit.load.bounds``); the other checks
  are replayed at the start and at the end of their windows (fractional expiry deadlines).

A request is predicted ``allow`` when every lower bound is positive, ``deny`` when every upper
bound is at most zero; otherwise it is ``ambiguous`` and counted apart, not as a mismatch.
Each request carries one key. A property test drives a simulated correct service with hidden
instants inside the windows and checks that it is never reported as a mismatch.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tokenlimit.load.bounds import Window, bounding_replay
from tokenlimit.load.observation import Observation
from tokenlimit.rules.model import Rule


@dataclass(slots=True)
class KeyConformance:
    """Per key: compared requests and what the limiter did beyond the rules."""

    compared: int = 0
    agreed: int = 0
    ambiguous: int = 0
    over_admitted: int = 0
    under_admitted: int = 0
    tokens_above: int = 0
    tokens_below: int = 0

    def merge(self, other: KeyConformance) -> None:
        for name in self.__slots__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def to_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KeyConformance:
        return cls(**{name: int(data[name]) for name in cls.__slots__})


@dataclass(slots=True)
class Conformance:
    """The comparison of observed decisions with the rules' decisions, per request."""

    requests: int = 0
    compared: int = 0
    agreed: int = 0
    ambiguous: int = 0
    over_admitted: int = 0
    under_admitted: int = 0
    other_mismatches: int = 0
    not_compared: int = 0
    keys: dict[str, KeyConformance] = field(default_factory=dict)
    examples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def agreement(self) -> float | None:
        """Agreement in percent over unambiguous compared requests."""
        return round(100.0 * self.agreed / self.compared, 3) if self.compared else None

    def findings(self) -> list[str]:
        """Over-admission first (the limiter let through more than the rules allow)."""
        out: list[str] = []
        if self.over_admitted:
            tokens = sum(k.tokens_above for k in self.keys.values())
            out.append(f"over-admission: {self.over_admitted} requests admitted that the rules "
                       f"limit ({tokens} tokens above the rules)")
        if self.under_admitted:
            out.append(f"under-admission: {self.under_admitted} requests limited that the "
                       "rules admit")
        if self.other_mismatches:
            out.append(f"{self.other_mismatches} requests answered otherwise than predicted "
                       "(error versus decision)")
        return out

    def merge(self, other: Conformance) -> None:
        for name in ("requests", "compared", "agreed", "ambiguous", "over_admitted",
                     "under_admitted", "other_mismatches", "not_compared"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for key, stats in other.keys.items():
            self.keys.setdefault(key, KeyConformance()).merge(stats)
        self.examples = (self.examples + other.examples)[:10]

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests, "compared": self.compared, "agreed": self.agreed,
            "agreement_percent": self.agreement, "ambiguous": self.ambiguous,
            "over_admitted": self.over_admitted, "under_admitted": self.under_admitted,
            "other_mismatches": self.other_mismatches, "not_compared": self.not_compared,
            "findings": self.findings(),
            "keys": {k: self.keys[k].to_dict() for k in sorted(self.keys)},
            "examples": self.examples,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Conformance:
        return cls(int(data["requests"]), int(data["compared"]), int(data["agreed"]),
                   int(data["ambiguous"]), int(data["over_admitted"]),
                   int(data["under_admitted"]), int(data["other_mismatches"]),
                   int(data["not_compared"]),
                   {str(k): KeyConformance.from_dict(v) for k, v in data["keys"].items()},
                   list(data.get("examples", [])))


def check_conformance(rules: Sequence[Rule], observations: Sequence[Observation], *,
                      tolerance: float = 0.001) -> Conformance:
    """Compare each observed decision with the rules' bounded prediction."""
    obs = list(observations)
    conf = Conformance(requests=len(obs))
    checks = [Window(o.sent - tolerance, o.done + tolerance) for o in obs]
    reports = {i: Window(o.report_lo - tolerance, o.report_hi + tolerance)
               for i, o in enumerate(obs) if o.report_lo is not None and o.report_hi is not None}
    uncertain = _uncertain_reports(obs, checks, reports)
    runs = [(late, bounding_replay(rules, obs, checks, reports, uncertain, check_late=cl,
                                   report_late=late))
            for cl in (False, True) for late in (False, True)]
    for i, o in enumerate(obs):
        per_key = conf.keys.setdefault(o.key, KeyConformance())
        if o.outcome == "error":
            conf.not_compared += 1
            continue
        outcomes = {x for _, run in runs for x in run[i].outcomes}
        lows = [v for late, run in runs if late for v in run[i].balances]
        highs = [v for late, run in runs if not late for v in run[i].balances]
        predicted: str
        if any(run[i].undecidable for _, run in runs):
            predicted = "ambiguous"
        elif outcomes == {"error"}:
            predicted = "error"
        elif "error" in outcomes:
            predicted = "ambiguous"
        elif all(v is None for v in lows + highs):
            predicted = "allow"  # no rule matches the key: never limited
        elif all(v is not None and v > 0 for v in lows):
            predicted = "allow"
        elif all(v is not None and v <= 0 for v in highs):
            predicted = "deny"
        else:
            predicted = "ambiguous"
        observed = "allow" if o.outcome == "allowed" else "deny"
        if predicted == "ambiguous":
            conf.ambiguous += 1
            per_key.ambiguous += 1
            continue
        conf.compared += 1
        per_key.compared += 1
        if predicted == observed:
            conf.agreed += 1
            per_key.agreed += 1
            continue
        if predicted == "deny" and observed == "allow":
            conf.over_admitted += 1
            per_key.over_admitted += 1
            per_key.tokens_above += o.tokens
        elif predicted == "allow" and observed == "deny":
            conf.under_admitted += 1
            per_key.under_admitted += 1
            per_key.tokens_below += o.tokens
        else:
            conf.other_mismatches += 1
        if len(conf.examples) < 10:
            conf.examples.append({"index": o.index, "key": o.key, "sent": round(o.sent, 6),
                                  "observed": observed, "predicted": predicted,
                                  "balance_bounds": [min(v for v in lows if v is not None),
                                                     max(v for v in highs if v is not None)]
                                  if any(v is not None for v in lows + highs) else None})
    return conf


def _uncertain_reports(obs: Sequence[Observation], checks: list[Window],
                       reports: dict[int, Window]) -> list[list[int]]:
    """Per check: the reports for its key whose order relative to it is not known."""
    by_key: dict[str, list[tuple[float, float, int]]] = {}
    for i, w in reports.items():
        by_key.setdefault(obs[i].key, []).append((w.lo, w.hi, i))
    starts: dict[str, list[float]] = {}
    widest: dict[str, float] = {}
    for key, items in by_key.items():
        items.sort()
        starts[key] = [lo for lo, _, _ in items]
        widest[key] = max(hi - lo for lo, hi, _ in items)
    out: list[list[int]] = []
    for i, w in enumerate(checks):
        key = obs[i].key
        found = by_key.get(key)
        if not found:
            out.append([])
            continue
        items = found
        first = bisect.bisect_left(starts[key], w.lo - widest[key])
        last = bisect.bisect_right(starts[key], w.hi)
        out.append([m for lo, hi, m in items[first:last] if hi >= w.lo and m != i])
    return out
