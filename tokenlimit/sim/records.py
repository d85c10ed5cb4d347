"""Values shared by traces, limiters and replays."""

from __future__ import annotations

import re
from dataclasses import dataclass

from tokenlimit.bucket.types import Charge, Outcome, Usage

# A CSV cell that is a plain integer id (no sign but minus, no leading zero, fits int64).
CSV_INTEGER_ID = r"^-?(0|[1-9][0-9]{0,17})$"
_CSV_INTEGER_ID = re.compile(CSV_INTEGER_ID)


def csv_id(text: str) -> str | int:
    """A CSV ``id`` cell as the id it stands for: an integer when written as one.

    >>> csv_id("42"), csv_id("007"), csv_id("r-1")
    (42, '007', 'r-1')
    """
    return int(text) if _CSV_INTEGER_ID.match(text) else text


# A status written as a whole decimal (``429.0``: pandas writes an integer column with gaps as
# floats, in Parquet and in CSV text): the status is the integer.
WHOLE_STATUS = r"^([0-9]+)\.0+$"
_WHOLE_STATUS = re.compile(WHOLE_STATUS)


def status_text(value: object) -> str:
    """A recorded status as text, a whole decimal as its integer.

    >>> [status_text(v) for v in (429, 429.0, "429.0", "429", 1.5, "ok")]
    ['429', '429', '429', '429', '1.5', 'ok']
    """
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value)
    whole = _WHOLE_STATUS.match(text)
    return whole.group(1) if whole else text


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
