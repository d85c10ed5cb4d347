"""One interface for every replay semantics, and the registry whose names the CLI offers.

``ALGORITHMS[name].replay(rules, trace, charge)`` returns a ``Replay``. ``asm`` is the exact
service (the fast engine), ``asm-reserve`` the exact ``serve --mode reserve`` (the
event-by-event model, ``tokenlimit.bucket.reserve.ReserveLimiter``); the others are what-if
meters (``meters.py``) replayed event by event with the same ordering convention and the
same multi-key rule (the first limited key ends the check).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tokenlimit.bucket.reserve import EstimatePolicy
from tokenlimit.bucket.types import CHARGES as CHARGES  # re-exported
from tokenlimit.bucket.types import Charge
from tokenlimit.rules.model import Rule
from tokenlimit.sim.engine import Replay, key_rules, replay_asm, replay_asm_oracle
from tokenlimit.sim.meters import METERS, Meter
from tokenlimit.sim.semantics import SEMANTICS
from tokenlimit.sim.trace_table import Trace


@dataclass(frozen=True, slots=True)
class Algorithm:
    """A named semantics: ``replay`` decides a whole trace."""

    name: str
    summary: str

    def replay(self, rules: Sequence[Rule], trace: Trace, charge: Charge = "completion",
               estimate: EstimatePolicy | None = None) -> Replay:
        """Decide ``trace``; ``estimate`` is ``asm-reserve``'s (default: serve's default)."""
        if self.name == "asm":
            return replay_asm(rules, trace, charge)
        if self.name == "asm-reserve":
            return replay_asm_oracle(rules, trace, charge, estimate=estimate or EstimatePolicy())
        return replay_meters(METERS[self.name], rules, trace, charge)


ALGORITHMS: dict[str, Algorithm] = {
    name: Algorithm(name, summary) for name, summary in SEMANTICS.items()
}


def _whole(value: float) -> int:
    """A balance as a whole number of tokens (rounded down, clamped for infinite rates)."""
    return math.floor(min(max(value, -(2.0**62)), 2.0**62))


def replay_meters(meter: type[Meter], rules: Sequence[Rule], trace: Trace,
                  charge: Charge = "completion") -> Replay:
    """Event-by-event replay of ``trace`` with one ``meter`` per key."""
    rule_of_key = key_rules(rules, trace.key_names).tolist()
    n = len(trace)
    order = trace.time_order()
    ranked = list(range(n)) if order is None else order.tolist()
    ts, latency = trace.ts.tolist(), trace.latency.tolist()
    charged = trace.charged(charge).tolist()
    ptr, index = trace.key_ptr.tolist(), trace.key_index.tolist()
    outcome = np.zeros(n, dtype=np.int8)
    rule = np.full(n, -1, dtype=np.int64)
    key = np.full(n, -1, dtype=np.int64)
    balance = np.zeros(n, dtype=np.int64)
    deepest = np.zeros(len(trace.key_names), dtype=np.int64)
    meters: dict[int, Meter] = {}
    pending: list[tuple[float, int, int]] = []
    reserved: dict[int, list[tuple[int, float]]] = {}

    def settle(i: int, when: float) -> None:
        for k, amount in reserved.pop(i):
            after = meters[k].settle(when, charged[i], amount)
            deepest[k] = min(int(deepest[k]), _whole(after))

    for rank, i in enumerate(ranked):
        now = ts[i]
        while pending and pending[0][0] <= now:
            when, _, j = heapq.heappop(pending)
            settle(j, when)
        held: list[tuple[int, float]] = []
        for k in index[ptr[i]:ptr[i + 1]]:
            r = rule_of_key[k]
            if r < 0:
                continue
            state = meters.get(k)
            if state is None:
                state = meters[k] = meter(rules[r])
            admitted, level, amount = state.admit(now)
            if not admitted:
                outcome[i], rule[i], key[i], balance[i] = 1, r, k, _whole(level)
                for k2, amount2 in held:
                    meters[k2].release(amount2)
                break
            if not held:
                rule[i], key[i], balance[i] = r, k, _whole(level)
            held.append((k, amount))
        if outcome[i] == 0 and held:
            reserved[i] = held
            heapq.heappush(pending, (now + max(latency[i], 0.0), rank, i))
    while pending:
        when, _, j = heapq.heappop(pending)
        settle(j, when)
    return Replay(outcome, rule, key, balance, deepest, "events")
