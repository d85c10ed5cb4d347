"""Values shared by traces, limiters and replays."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Outcome = Literal["allow", "deny", "error"]
Charge = Literal["completion", "total"]


@dataclass(frozen=True, slots=True)
class TraceRequest:
    """One recorded request.

    ``ts``: Unix seconds when it started (the check); ``latency``: seconds until its usage
    was reported; ``keys``: the rendered rate-limit keys, checked in order. ``imputed`` marks
    completion tokens drawn by the simulator for a request recorded without usage.
    """

    id: str | int
    ts: float
    keys: tuple[str, ...]
    latency: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    status: str | None = None
    imputed: bool = False

    def charged(self, charge: Charge) -> int:
        """Tokens a report deducts: completion tokens (the ASM service) or total tokens."""
        return self.completion_tokens if charge == "completion" else self.total_tokens


@dataclass(frozen=True, slots=True)
class Decision:
    """What the limiter decided for one request; ``rule`` as in ``CheckResult.rule``."""

    id: str | int
    outcome: Outcome
    rule: int | None
