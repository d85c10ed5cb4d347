"""The ASM service's decisions, event by event: ``check`` for ``/ratelimit``, ``report`` for
``/update_ratelimit_record``.

This is the reference every faster engine and every store is tested against: the multi-key
check (``tokenlimit.bucket.multikey``) over the check script (``tokenlimit.bucket.script``) over
a model of the Redis keyspace (``tokenlimit.bucket.keyspace``). A usage report on an expired
key recreates it with no TTL, and a report for a key that matches no rule still writes one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from tokenlimit.bucket.keyspace import AsmKeyspace
from tokenlimit.bucket.multikey import CheckResult, ScriptCall, run_check
from tokenlimit.bucket.script import KeyCheck, check_script
from tokenlimit.rules.model import Rule
from tokenlimit.rules.regex import RuleMatcher


class Limiter(Protocol):
    """What a replay needs of a limiter: ``AsmLimiter`` or ``ReserveLimiter``."""

    @property
    def keyspace(self) -> AsmKeyspace: ...

    def check(self, keys: Sequence[str], now: float) -> CheckResult: ...

    def report(self, keys: Sequence[str], completion_tokens: int, now: float) -> None: ...


class AsmLimiter:
    """The service's decisions over one keyspace.

    >>> from tokenlimit.rules.model import Rule
    >>> limiter = AsmLimiter([Rule(0, "regular-user.*", 200, 50, 30, 300)])
    >>> limiter.check(["regular-user"], now=0.0).outcome
    'allow'
    >>> limiter.report(["regular-user"], 60, now=1.0)
    >>> limiter.check(["regular-user"], now=2.0).description
    'regular-user is being rate-limited'
    """

    def __init__(self, rules: Sequence[Rule], keyspace: AsmKeyspace | None = None) -> None:
        self.matcher = RuleMatcher(rules)
        self.keyspace = keyspace or AsmKeyspace()

    def check(self, keys: Sequence[str], now: float) -> CheckResult:
        """Check ``keys`` in order; the first limited key ends the check."""

        def script(call: ScriptCall) -> KeyCheck:
            return check_script(self.keyspace, call.key, call.rule, now)

        return run_check(self.matcher, keys, script)

    def report(self, keys: Sequence[str], completion_tokens: int, now: float) -> None:
        """A usage report: every key's balance decreases by ``completion_tokens``."""
        for key in keys:
            self.keyspace.decrby(key, completion_tokens, now)

    def balance(self, key: str, now: float) -> int | None:
        """The stored balance of ``key`` (``None`` when missing or expired), without a check."""
        return self.keyspace.get(key, now)
