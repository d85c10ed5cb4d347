"""Values shared by traces, limiters and replays."""

from __future__ import annotations

from dataclasses import dataclass

from tokenlimit.bucket.types import Charge, Outcome, Usage


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
        return Usage(self.prompt_tokens, self.completion_tokens, self.total_tokens).charged(charge)


@dataclass(frozen=True, slots=True)
class Decision:
    """What the limiter decided for one request; ``rule`` as in ``CheckResult.rule``."""

    id: str | int
    outcome: Outcome
    rule: int | None
