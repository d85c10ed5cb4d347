"""The interface every bucket store implements: memory, Redis, Redis Cluster.

A store runs the example's check script for a list of keys (stopping at the first limited key)
and its usage report, against whatever holds the state. The HTTP app does not know which store
it talks to. Every method may raise ``StoreError`` (unreachable, timed out, script failed).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from tokenlimit.bucket.multikey import CheckResult
from tokenlimit.bucket.reserve import EstimatePolicy
from tokenlimit.rules.model import Rule

Clock = Callable[[], float]


class Store(Protocol):
    """What the service needs from a bucket store."""

    name: str
    last_script_error: str  # why the last failed check failed, for the log

    def set_rules(self, rules: Sequence[Rule]) -> None:
        """Use these rules from now on; stored bucket state is kept."""

    async def check(self, keys: Sequence[str],
                    estimate: EstimatePolicy | None = None) -> CheckResult:
        """The ``/ratelimit`` decision for ``keys``; with ``estimate``, reserve tokens too."""

    async def report(self, keys: Sequence[str], tokens: int, settle: bool = False) -> None:
        """Charge ``tokens`` to every key; ``settle`` returns a reservation first."""

    async def ping(self) -> None:
        """Raise ``StoreError`` unless the backend answers."""

    async def close(self) -> None:
        """Release connections."""
