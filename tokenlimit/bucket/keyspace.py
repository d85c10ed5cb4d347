"""Redis string keys with expiry, as far as the ASM scripts use them.

The service's state is Redis keys, not buckets: the balance lives under the raw key and the
refill time under ``<key>_last_fill_time`` (so two clients' keys can collide), each key expires
on its own, and ``DECRBY`` on a missing key creates it with no TTL. Modelling the keys, not
buckets, makes those quirks come out exactly. Time is passed in (``now``, Unix seconds as a
float). A key written at ``t`` with TTL ``s`` is alive up to and including ``t + s``.
"""

from __future__ import annotations

LAST_FILL_SUFFIX = "_last_fill_time"


class AsmKeyspace:
    """The keys and deadlines the ASM scripts read and write."""

    def __init__(self) -> None:
        self.values: dict[str, int] = {}
        self.expires_at: dict[str, float] = {}

    def get(self, key: str, now: float) -> int | None:
        """The value of ``key`` at ``now``, or ``None`` when missing or expired (GET)."""
        expiry = self.expires_at.get(key)
        if expiry is not None and now > expiry:
            self.values.pop(key, None)
            del self.expires_at[key]
        return self.values.get(key)

    def set_with_ttl(self, key: str, value: int, ttl: int, now: float) -> None:
        """SET then EXPIRE: a non-positive TTL deletes the key at once."""
        if ttl <= 0:
            self.values.pop(key, None)
            self.expires_at.pop(key, None)
            return
        self.values[key] = value
        self.expires_at[key] = now + ttl

    def decrby(self, key: str, amount: int, now: float) -> int:
        """DECRBY: an existing TTL is kept; a missing key is created with none."""
        value = (self.get(key, now) or 0) - amount
        self.values[key] = value
        return value

    def ttl_deadline(self, key: str) -> float | None:
        """The Unix second after which ``key`` expires, or ``None`` when it has no TTL."""
        return self.expires_at.get(key)
