"""The in-process store: the reference model itself (``AsmLimiter`` over ``AsmKeyspace``).

Decisions equal ``tokenlimit.sim.replay_oracle`` and ``simulate --semantics asm`` by
construction. State lives in this process only: one service process, lost at exit.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from tokenlimit.bucket.limiter import AsmKeyspace, AsmLimiter, CheckResult
from tokenlimit.bucket.reserve import EstimatePolicy, ReserveBook
from tokenlimit.rules.model import Rule
from tokenlimit.service.stores.base import Clock


class MemoryStore:
    """Buckets in a dict, exactly as the Redis scripts would keep them.

    ``clock`` gives Unix seconds (default ``time.time``); tests pass a settable clock.
    """

    name = "memory"
    # The model's only script failure (see AsmLimiter.check_key).
    last_script_error = ("the balance key vanished right after being written "
                         "(redis_expired_seconds <= 0)")

    def __init__(self, rules: Sequence[Rule], clock: Clock | None = None) -> None:
        self.clock: Clock = clock or time.time
        self.keyspace = AsmKeyspace()
        self.limiter = AsmLimiter(rules, self.keyspace)
        self.book = ReserveBook(self.keyspace)

    def set_rules(self, rules: Sequence[Rule]) -> None:
        self.limiter = AsmLimiter(rules, self.keyspace)

    async def check(self, keys: Sequence[str],
                    estimate: EstimatePolicy | None = None) -> CheckResult:
        now = self.clock()
        if estimate is None:
            return self.limiter.check(keys, now)
        return self.book.check(self.limiter, keys, estimate, now)

    async def report(self, keys: Sequence[str], tokens: int, settle: bool = False) -> None:
        now = self.clock()
        if settle:
            self.book.settle(self.limiter, keys, tokens, now)
        else:
            self.limiter.report(keys, tokens, now)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None
