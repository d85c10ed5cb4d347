"""The in-process store: the reference model itself (``AsmLimiter`` over a keyspace).

Decisions equal ``tokenlimit.sim.replay_oracle`` and ``simulate --semantics asm`` by
construction. State lives in this process only: one service process, lost at exit.

The keyspace here behaves as Redis does where a long-running service can tell the difference
from the simulator's model: deadlines are whole milliseconds (a key is alive through the whole
millisecond of its deadline), ``DECRBY`` refuses to overflow int64, and expired keys are freed
actively (a few at every call and a sweep ten times a second, as Redis's expire cycle), not only
when read again, so memory follows the live keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import math
import sys
import time
from collections.abc import Sequence

from tokenlimit.bucket.keyspace import AsmKeyspace
from tokenlimit.bucket.limiter import AsmLimiter
from tokenlimit.bucket.multikey import CheckResult
from tokenlimit.bucket.reserve import EstimatePolicy, ReserveLimiter
from tokenlimit.errors import StoreError
from tokenlimit.rules.model import Rule
from tokenlimit.service.stores.base import Clock

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
EXPIRE_PER_CALL = 32  # expired keys freed at each call (Redis frees some at each access too)
SWEEP_EVERY = 0.1  # seconds between background sweeps (Redis: hz 10)
SWEEP_BUDGET = 20_000  # keys freed per sweep at most, so a sweep never stalls the loop long
# Per key beyond the key's own size: two dict slots, the int, the deadline and its heap entry.
KEY_OVERHEAD = 200


def _ms(seconds: float) -> int:
    return math.floor(seconds * 1000)


class RedisKeyspace(AsmKeyspace):
    """``AsmKeyspace`` with Redis's millisecond expiry, overflow errors, active expiry and a
    memory limit.

    ``max_bytes``: what the keys may take (an estimate: the key's size plus a fixed cost per
    key); past it, writing a new key fails as Redis with ``maxmemory`` and ``noeviction``
    does (``OOM command not allowed``): the check is a script error, the report a 500.
    Existing keys are still read, refilled and charged.
    """

    def __init__(self, max_bytes: int | None = None) -> None:
        super().__init__()
        self.deadlines: list[tuple[int, str]] = []  # (deadline ms, key), a min-heap
        self._peak = 0
        self.max_bytes = max_bytes
        self.used_bytes = 0

    def _make_room(self, key: str) -> None:
        if key in self.values:
            return
        size = sys.getsizeof(key) + KEY_OVERHEAD
        if self.max_bytes is not None and self.used_bytes + size > self.max_bytes:
            raise StoreError("OOM command not allowed when used memory > 'maxmemory' "
                             "(--max-memory-mb)")
        self.used_bytes += size

    def _drop(self, key: str) -> None:
        if self.values.pop(key, None) is not None:
            self.used_bytes -= sys.getsizeof(key) + KEY_OVERHEAD
        self.expires_at.pop(key, None)

    def get(self, key: str, now: float) -> int | None:
        expiry = self.expires_at.get(key)
        if expiry is not None and _ms(now) > expiry:
            self._drop(key)
        return self.values.get(key)

    def set_with_ttl(self, key: str, value: int, ttl: int, now: float) -> None:
        if ttl <= 0:  # EXPIRE with a non-positive time deletes the key
            self._drop(key)
            return
        deadline = _ms(now) + ttl * 1000
        self._make_room(key)
        self.values[key] = value
        self.expires_at[key] = deadline
        heapq.heappush(self.deadlines, (deadline, key))

    def decrby(self, key: str, amount: int, now: float) -> int:
        current = self.get(key, now) or 0
        if amount == INT64_MIN:
            raise StoreError("ERR decrement would overflow")
        value = current - amount
        if not INT64_MIN <= value <= INT64_MAX:
            raise StoreError("ERR increment or decrement would overflow")
        self._make_room(key)
        self.values[key] = value  # DECRBY keeps an existing TTL; a new key has none
        return value

    def expire_due(self, now: float, budget: int) -> int:
        """Free up to ``budget`` keys whose deadline has passed; how many were freed."""
        now_ms, heap, freed = _ms(now), self.deadlines, 0
        while heap and heap[0][0] < now_ms and freed < budget:
            deadline, key = heapq.heappop(heap)
            if self.expires_at.get(key) == deadline:  # not rewritten since
                self._drop(key)
                freed += 1
        size = len(self.values)
        self._peak = max(self._peak, size)
        if self._peak > 4096 and size < self._peak // 4:
            # A dict never gives back its table: copy it once it is mostly empty.
            self.values, self.expires_at = dict(self.values), dict(self.expires_at)
            self._peak = size
        return freed


class MemoryStore:
    """Buckets in a dict, exactly as the Redis scripts would keep them.

    ``clock`` gives Unix seconds (default ``time.time``); tests pass a settable clock.
    ``max_bytes`` bounds the keys' memory (see ``RedisKeyspace``).
    """

    name = "memory"
    # The model's only script failure (see tokenlimit.bucket.script.check_script).
    last_script_error = ("the balance key vanished right after being written "
                         "(redis_expired_seconds <= 0)")

    def __init__(self, rules: Sequence[Rule], clock: Clock | None = None,
                 max_bytes: int | None = None) -> None:
        self.clock: Clock = clock or time.time
        self.keyspace = RedisKeyspace(max_bytes)
        self.limiter = AsmLimiter(rules, self.keyspace)
        self.reserving = ReserveLimiter(self.limiter)
        self._sweeper: asyncio.Task[None] | None = None

    def set_rules(self, rules: Sequence[Rule]) -> None:
        self.limiter = AsmLimiter(rules, self.keyspace)
        self.reserving = ReserveLimiter(self.limiter, self.reserving.policy)

    async def check(self, keys: Sequence[str],
                    estimate: EstimatePolicy | None = None) -> CheckResult:
        now = self._tick()
        if estimate is None:
            return self.limiter.check(keys, now)
        if self.reserving.policy is not estimate:
            self.reserving = ReserveLimiter(self.limiter, estimate)
        return self.reserving.check(keys, now)

    async def report(self, keys: Sequence[str], tokens: int, settle: bool = False) -> None:
        now = self._tick()
        if settle:
            self.reserving.report(keys, tokens, now)
        else:
            self.limiter.report(keys, tokens, now)

    def _tick(self) -> float:
        now = self.clock()
        self.keyspace.expire_due(now, EXPIRE_PER_CALL)
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())
        return now

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_EVERY)
            self.keyspace.expire_due(self.clock(), SWEEP_BUDGET)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
