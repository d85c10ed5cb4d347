"""Reading a live deployment's buckets from Redis (redis-py), read-only, for ``inspect``.

Only GET, PEXPIRETIME (PTTL on Redis before 7), TIME and SCAN are sent: nothing is ever
written, and keys are found with SCAN (never KEYS, which blocks the server). Works with a
single node (the ASM example's layout, and ``serve --backend redis``) and with a Redis Cluster
(``serve --backend redis-cluster``: hash-tagged names ``{<key>}``), over ``redis://`` or
``rediss://`` (TLS) URLs with a password or an ACL user, as redis-py's ``from_url`` reads them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import redis
import redis.cluster

from tokenlimit.bucket.keyspace import LAST_FILL_SUFFIX
from tokenlimit.errors import StoreError
from tokenlimit.service.inspection import NOT_UTF8, StoredBucket, is_service_key, shown_key
from tokenlimit.service.stores.redis import SUFFIXES

READ_BATCH = 500


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """Where to read: a URL (``redis://[[user]:password@]host:port/db``, ``rediss://`` for TLS)
    and whether it is a cluster (hash-tagged layout)."""

    url: str
    cluster: bool = False
    timeout: float = 5.0


class BucketReader:
    """A read-only view of the buckets in one Redis deployment.

    >>> BucketReader.names("u", cluster=True)
    ('{u}', '{u}_last_fill_time')
    """

    def __init__(self, target: RedisTarget) -> None:
        self.target = target
        self.client = _connect(target)

    @staticmethod
    def names(key: str, cluster: bool) -> tuple[str, str]:
        """The Redis names of a key's balance and last refill time."""
        base = "{" + key + "}" if cluster else key
        return base, base + LAST_FILL_SUFFIX

    def _call(self, action: str, call: Any) -> Any:
        try:
            return call()
        except redis.RedisError as exc:
            raise StoreError(f"redis ({redacted_url(self.target.url)}): {action} failed: "
                             f"{exc}") from exc

    def now_ms(self) -> int:
        """The server's clock (``TIME``) in Unix milliseconds: the clock the scripts use."""
        reply = self._call("TIME", self.client.time)
        if isinstance(reply, dict):  # a cluster answers per node
            reply = next(iter(reply.values()))
        seconds, micros = reply
        return int(seconds) * 1000 + int(micros) // 1000

    def scan(self, pattern: str, limit: int) -> list[str]:
        """Keys (not Redis names) whose balance entry matches the glob ``pattern``, at most
        ``limit``. Names of the other entries (``_last_fill_time``, reserve mode's) are
        skipped; in a cluster the pattern applies inside the hash tag."""
        match = "{" + pattern + "}" if self.target.cluster else pattern
        found: list[str] = []

        def run() -> None:
            for raw in self.client.scan_iter(match=match, count=1000):
                name = raw.decode("utf-8", "surrogateescape") if isinstance(raw, bytes) else raw
                if any(name.endswith(s) for s in SUFFIXES[1:]):
                    continue
                if self.target.cluster:
                    if not (name.startswith("{") and name.endswith("}")):
                        continue
                    name = name[1:-1]
                found.append(name)
                if len(found) >= limit:
                    return

        self._call("SCAN", run)
        return sorted(set(found))

    def read(self, keys: Sequence[str]) -> list[StoredBucket]:
        """Both entries of each key, with their absolute expiry."""
        out: list[StoredBucket] = []
        for start in range(0, len(keys), READ_BATCH):
            batch = keys[start:start + READ_BATCH]
            replies = self._call("reading keys", lambda b=batch: self._read_batch(b))
            out.extend(_bucket(key, *replies[4 * i:4 * i + 4]) for i, key in enumerate(batch))
        return out

    def _read_batch(self, keys: Sequence[str]) -> list[Any]:
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            for name in self.names(key, self.target.cluster):
                pipe.get(_wire(name))
                pipe.execute_command("PEXPIRETIME", _wire(name))
        replies: list[Any] = pipe.execute(raise_on_error=False)
        if any(isinstance(r, redis.ResponseError) and "unknown command" in str(r).lower()
               for r in replies):
            replies = self._read_batch_before_7(keys)
        return replies

    def _read_batch_before_7(self, keys: Sequence[str]) -> list[Any]:
        # Redis < 7 has no PEXPIRETIME: the deadline is the server's TIME plus PTTL.
        now = self.now_ms()
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            for name in self.names(key, self.target.cluster):
                pipe.get(_wire(name))
                pipe.pttl(_wire(name))
        replies: list[Any] = pipe.execute(raise_on_error=False)
        return [r + now if i % 2 and isinstance(r, int) and r >= 0 else r
                for i, r in enumerate(replies)]

    def close(self) -> None:
        self.client.close()


def _wire(name: str) -> bytes:
    """A name as Redis holds it: a name SCAN found that is not UTF-8 keeps its bytes."""
    return name.encode("utf-8", "surrogateescape")


def _connect(target: RedisTarget) -> Any:
    options = {"socket_timeout": target.timeout, "socket_connect_timeout": target.timeout}
    try:
        if target.cluster:
            return redis.cluster.RedisCluster.from_url(target.url, **options)
        return redis.Redis.from_url(target.url, **options)
    except (ValueError, redis.RedisError) as exc:
        raise StoreError(f"redis ({redacted_url(target.url)}): cannot connect: {exc}") from exc


def redacted_url(url: str) -> str:
    """The URL without its credentials, for messages.

    >>> redacted_url("redis://app:s3cret@10.0.0.5:6379/0")
    'redis://10.0.0.5:6379/0'
    """
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}{rest.rpartition('@')[2]}" if sep else url


def _integer(value: Any) -> tuple[int | None, str | None]:
    if value is None:
        return None, None
    if isinstance(value, Exception):
        return None, f"not a bucket ({value})"
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    try:
        return int(text), None
    except ValueError:
        return None, f"not a bucket (value {text[:40]!r} is not an integer)"


def _expiry(value: Any) -> int | None:
    return int(value) if isinstance(value, int) and value >= 0 else None


def _bucket(key: str, balance: Any, balance_exp: Any, last: Any, last_exp: Any) -> StoredBucket:
    if not is_service_key(key):
        return StoredBucket(shown_key(key), None, _expiry(balance_exp), None, _expiry(last_exp),
                            NOT_UTF8)
    amount, problem = _integer(balance)
    stamp, problem_last = _integer(last)
    wrong_type = any(isinstance(v, redis.ResponseError) and str(v).startswith("WRONGTYPE")
                     for v in (balance, last))
    return StoredBucket(key, amount, _expiry(balance_exp), stamp, _expiry(last_exp),
                        problem or problem_last, wrong_type)


def watch_rounds(count: int | None) -> Iterator[int]:
    """Round numbers for ``--watch``: ``count`` of them, or without end when ``None``."""
    round_number = 0
    while count is None or round_number < count:
        yield round_number
        round_number += 1
