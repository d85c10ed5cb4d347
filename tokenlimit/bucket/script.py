"""The check script for one key: the example's Lua, as arithmetic over an ``AsmKeyspace``.

``check_script`` is the definition. Two faster engines must equal it and are held to it by
property tests: the Lua in ``tokenlimit/service/lua/check.lua`` (tests/service/test_redis_store.py
and test_cluster_store.py run random call sequences against a real Redis and this model) and
the numba scan in ``tokenlimit.sim.scan`` (tests/sim/test_engine.py against
``tokenlimit.sim.oracle.replay_oracle``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tokenlimit.bucket.keyspace import LAST_FILL_SUFFIX, AsmKeyspace
from tokenlimit.rules.model import Rule


class ScriptError(Exception):
    """The check script failed for a key (the service answers 400 for the whole call)."""


@dataclass(frozen=True, slots=True)
class KeyCheck:
    """What the check script returned for one key.

    ``balance`` decides (admit when above 0); ``last`` is the last refill second and ``now``
    the script's whole second (``retry_after`` counts from them); ``remaining`` is the balance
    left once the check is done (lower than ``balance`` when a reservation was taken).
    """

    balance: int
    last: int
    now: int
    remaining: int

    def retry_after(self, rule: Rule) -> int:
        """Whole seconds until the key's next refill (at least 1).

        >>> KeyCheck(0, 100, 110, 0).retry_after(Rule(0, "u", 10, 5, 30, 60))
        20
        """
        return max(rule.fill_interval_second - (self.now - self.last), 1)


def refill(balance: int, last: int, now_s: int, rule: Rule) -> tuple[int, int, bool]:
    """(balance, last refill time, rewritten?) after the check script's refill step.

    ``fill_interval_second == 0`` is Lua's division by zero: ``(now - last) / 0`` is +inf
    once the second has changed (the bucket jumps to ``max_tokens``) and NaN within the same
    second (no refill). With ``tokens_per_fill <= 0`` as well, Lua's arithmetic gives NaN or
    -inf; that case is modelled as no refill.

    >>> refill(10, 0, 65, Rule(0, "u", 100, 20, 30, 600))  # two whole intervals; 5 s lost
    (50, 65, True)
    """
    if rule.fill_interval_second == 0:
        if now_s <= last or rule.tokens_per_fill <= 0:
            return balance, last, False
        return rule.max_tokens, now_s, True
    intervals = math.floor((now_s - last) / rule.fill_interval_second)
    if intervals <= 0:
        return balance, last, False
    return min(balance + rule.tokens_per_fill * intervals, rule.max_tokens), now_s, True


def check_script(space: AsmKeyspace, key: str, rule: Rule, now: float) -> KeyCheck:
    """Run the check script for ``key`` at ``now``: create or refill the bucket, read it.

    A missing balance or refill key (new or expired) restarts the bucket at
    ``tokens_per_fill``; otherwise whole intervals refill it. Raises ``ScriptError`` when the
    balance key is gone right after being written (``redis_expired_seconds <= 0``).
    """
    now_s = math.floor(now)
    last_key = key + LAST_FILL_SUFFIX
    balance = space.get(key, now)
    last = space.get(last_key, now)
    if balance is None or last is None:
        balance, last, rewritten = rule.tokens_per_fill, now_s, True
    else:
        balance, last, rewritten = refill(balance, last, now_s, rule)
    if rewritten:
        space.set_with_ttl(key, balance, rule.redis_expired_seconds, now)
        space.set_with_ttl(last_key, last, rule.redis_expired_seconds, now)
    stored = space.get(key, now)
    if stored is None:
        raise ScriptError(f"{key}: the balance key vanished (redis_expired_seconds <= 0)")
    return KeyCheck(stored, last, now_s, stored)
