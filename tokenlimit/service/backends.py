"""Light constants of the service package (``serve``'s help texts need them without asyncio)."""

from __future__ import annotations

import re
from typing import Literal

BackendKind = Literal["memory", "redis", "redis-cluster"]
BACKENDS: tuple[BackendKind, ...] = ("memory", "redis", "redis-cluster")


def redis_db_index(text: str | None) -> int:
    """The Redis database the ASM service uses for ``REDIS_DB_INDEX``: Go's ``strconv.Atoi``
    of the text (an optional sign and ASCII digits, nothing else, within int64), 0 where that
    fails; go-redis selects a database only above 0, so a negative index is database 0 too.

    >>> [redis_db_index(t) for t in (None, "", "3", "+3", "007", "x", "-1", "--1")]
    [0, 0, 3, 3, 7, 0, 0, 0]
    >>> [redis_db_index(t) for t in (" 3", "3 ", "\\uff13", "1_0", "9" * 18, "9" * 19)]
    [0, 0, 0, 0, 999999999999999999, 0]
    """
    if text is None or not _GO_ATOI.fullmatch(text):
        return 0
    number = int(text)
    return number if 0 < number < 2**63 else 0


_GO_ATOI = re.compile(r"[+-]?[0-9]+")
