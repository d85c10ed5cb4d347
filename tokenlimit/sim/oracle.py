"""Event-by-event replay of a trace through the ASM service: the reference for every engine.

Ordering (docs/asm-semantics.md, "Replaying a recorded trace"): a request is checked at ``ts``;
if admitted, its usage is reported at ``ts + latency``. At one instant, reports go before
checks (including reports created at that very instant by an earlier check), checks go in
trace order, and reports in the order of the checks that created them.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

from tokenlimit.bucket.limiter import AsmLimiter, Limiter
from tokenlimit.bucket.types import Charge
from tokenlimit.rules.model import Rule
from tokenlimit.sim.records import Decision, TraceRequest

_REPORT, _CHECK = 0, 1


def replay_oracle(
    rules: Sequence[Rule],
    requests: Sequence[TraceRequest],
    *,
    charge: Charge = "completion",
    limiter: Limiter | None = None,
) -> list[Decision]:
    """Decisions for ``requests`` (returned in the same order as given).

    ``limiter``: the model that decides (default ``AsmLimiter(rules)``; a ``ReserveLimiter``
    replays ``serve --mode reserve``).

    >>> from tokenlimit.rules.model import Rule
    >>> rule = Rule(0, "u", max_tokens=100, tokens_per_fill=10, fill_interval_second=60,
    ...             redis_expired_seconds=600)
    >>> reqs = [TraceRequest(0, 0.0, ("u",), 1.0, completion_tokens=30),
    ...         TraceRequest(1, 5.0, ("u",), 1.0, completion_tokens=30)]
    >>> [d.outcome for d in replay_oracle([rule], reqs)]
    ['allow', 'deny']
    """
    limiter = limiter or AsmLimiter(rules)
    order = sorted(range(len(requests)), key=lambda i: requests[i].ts)  # stable: file order
    events: list[tuple[float, int, int, int]] = [
        (requests[i].ts, _CHECK, rank, i) for rank, i in enumerate(order)
    ]
    heapq.heapify(events)
    decisions: list[Decision | None] = [None] * len(requests)
    reports_made = 0
    while events:
        when, kind, _, i = heapq.heappop(events)
        request = requests[i]
        if kind == _REPORT:
            limiter.report(request.keys, request.charged(charge), when)
            continue
        result = limiter.check(request.keys, when)
        decisions[i] = Decision(request.id, result.outcome, result.rule)
        if result.outcome == "allow":
            heapq.heappush(events, (when + max(request.latency, 0.0), _REPORT, reports_made, i))
            reports_made += 1
    return [d for d in decisions if d is not None]
