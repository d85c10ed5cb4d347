"""The values the ASM semantics speak in: outcomes, what a report charges, token usage."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

Outcome = Literal["allow", "deny", "error"]
Charge = Literal["completion", "total"]
CHARGES: tuple[Charge, ...] = ("completion", "total")


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one LLM answer, as the plug-in reports them (missing counts are 0)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0

    def charged(self, charge: Charge) -> int:
        """Tokens a report deducts: completion tokens (the ASM service) or total tokens.

        >>> Usage(10, 20, 30).charged("completion"), Usage(10, 20, 30).charged("total")
        (20, 30)
        """
        return self.completion_tokens if charge == "completion" else self.total_tokens

    def report_body(self, keys: Sequence[str]) -> dict[str, Any]:
        """The body of ``POST /update_ratelimit_record`` for ``keys``."""
        return {"ratelimit_keys": list(keys), "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens, "total_tokens": self.total_tokens}


@dataclass(frozen=True, slots=True)
class UsageReport:
    """A decoded ``/update_ratelimit_record`` body: the keys and the usage charged to each."""

    keys: tuple[str, ...]
    usage: Usage = Usage()
