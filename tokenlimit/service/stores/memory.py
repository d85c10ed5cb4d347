"""The in-process store: the reference model itself (``tokenlimit.bucket``).

Decisions equal ``tokenlimit.sim.replay_oracle`` and ``simulate --semantics asm`` (or
``asm-reserve``) by construction. State lives in this process only: one service process, lost
at exit.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from tokenlimit.bucket.keyspace import AsmKeyspace
from tokenlimit.bucket.limiter import AsmLimiter
from tokenlimit.bucket.multikey import CheckResult
from tokenlimit.bucket.reserve import EstimatePolicy, ReserveLimiter
from tokenlimit.rules.model import Rule
from tokenlimit.service.stores.base import Clock


class MemoryStore:
    """Buckets in a dict, exactly as the Redis scripts would keep them.

    ``clock`` gives Unix seconds (default ``time.time``); tests pass a settable clock.
    """

    name = "memory"
    # The model's only script failure (see tokenlimit.bucket.script.check_script).
    last_script_error = ("the balance key vanished right after being written "
                         "(redis_expired_seconds <= 0)")

    def __init__(self, rules: Sequence[Rule], clock: Clock | None = None) -> None:
        self.clock: Clock = clock or time.time
        self.keyspace = AsmKeyspace()
        self.limiter = AsmLimiter(rules, self.keyspace)
        self.reserving = ReserveLimiter(self.limiter)

    def set_rules(self, rules: Sequence[Rule]) -> None:
        self.limiter = AsmLimiter(rules, self.keyspace)
        self.reserving = ReserveLimiter(self.limiter, self.reserving.policy)

    async def check(self, keys: Sequence[str],
                    estimate: EstimatePolicy | None = None) -> CheckResult:
        now = self.clock()
        if estimate is None:
            return self.limiter.check(keys, now)
        if self.reserving.policy is not estimate:
            self.reserving = ReserveLimiter(self.limiter, estimate)
        return self.reserving.check(keys, now)

    async def report(self, keys: Sequence[str], tokens: int, settle: bool = False) -> None:
        now = self.clock()
        if settle:
            self.reserving.report(keys, tokens, now)
        else:
            self.limiter.report(keys, tokens, now)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None
