"""The Redis Cluster store: the Redis store's scripts, routed by slot, with hash-tagged keys.

Opt-in layout (``--backend redis-cluster``): ``{<key>}``, ``{<key>}_last_fill_time`` (and the
reserve-mode keys with the same prefix), so every script touches one slot. This layout is not
the example's: a service switched from a single Redis to a cluster starts with fresh buckets.
Keys whose hash tag would be empty (the empty key, or one starting with ``}``) are stored
under a fixed tag (see ``hashtag_names``): the cluster accepts every key a single node does.

The topology (slot map, ``MOVED``/``ASK`` redirections, nodes coming and going) is redis-py's
``RedisCluster``: well-kept code for exactly this, where a hand-written map had to be kept in
step with Redis by us.
"""

from __future__ import annotations

import binascii
from collections.abc import Sequence
from typing import Any

from redis import exceptions as redis_errors
from redis.asyncio.cluster import RedisCluster

from tokenlimit.errors import StoreError
from tokenlimit.rules.model import Rule
from tokenlimit.service.stores.base import Clock
from tokenlimit.service.stores.redis import RedisStore, hashtag_names
from tokenlimit.service.stores.resp import Arg, ReplyError

SLOTS = 16384


def crc16(data: bytes) -> int:
    """CRC16-CCITT (XMODEM), as Redis Cluster uses: ``binascii.crc_hqx`` computes exactly it,
    in C.

    >>> hex(crc16(b"123456789"))
    '0x31c3'
    """
    return binascii.crc_hqx(data, 0)


def key_slot(key: str) -> int:
    """The cluster slot of ``key``, honouring a non-empty ``{hash tag}``.

    >>> key_slot("{u}_last_fill_time") == key_slot("{u}") == key_slot("u")
    True
    """
    data = key.encode("utf-8", "surrogatepass")
    start = data.find(b"{")
    if start >= 0:
        end = data.find(b"}", start + 1)
        if end > start + 1:
            data = data[start + 1:end]
    return crc16(data) % SLOTS


class ClusterNodes:
    """The cluster's topology through redis-py's ``RedisCluster``: it reads the slot map,
    routes each command by the slot of its keys, follows ``MOVED`` (reading the map again) and
    ``ASK``, and retries on a node that went away. Commands go as arguments (``packed`` is
    False): redis-py computes the slot from them."""

    packed = False

    def __init__(self, host: str, port: int, *, password: str | None, timeout: float,
                 username: str | None = None) -> None:
        self.address = f"{host}:{port}"
        self.client = RedisCluster(host=host, port=port, password=password, username=username,
                                   socket_timeout=timeout, socket_connect_timeout=timeout,
                                   require_full_coverage=False)

    def _translate(self, exc: Exception) -> Exception:
        message = str(exc)
        if isinstance(exc, redis_errors.NoScriptError):
            return ReplyError(f"NOSCRIPT {message}")
        if isinstance(exc, redis_errors.ResponseError):
            return ReplyError(message)
        return StoreError(f"redis cluster at {self.address}: {type(exc).__name__}: {message}")

    # Errors are raised "from None": redis-py's text can quote what it was given.
    async def call(self, route: str, *args: Arg) -> Any:
        try:
            if args[:2] == ("SCRIPT", "LOAD"):  # to every primary: any of them may run it
                return await self.client.script_load(args[2])  # type: ignore[arg-type]
            return await self.client.execute_command(*args)
        except (redis_errors.RedisError, OSError) as exc:
            raise self._translate(exc) from None

    async def send(self, route: str, command: bytes) -> Any:
        raise NotImplementedError("cluster commands go as arguments (packed is False)")

    async def ping(self) -> None:
        try:
            await self.client.ping(target_nodes=RedisCluster.PRIMARIES)  # type: ignore[misc]
        except (redis_errors.RedisError, OSError) as exc:
            raise self._translate(exc) from None

    async def close(self) -> None:
        await self.client.aclose()


class ClusterStore(RedisStore):
    """``RedisStore`` over a Redis Cluster with the hash-tagged key layout."""

    name = "redis-cluster"

    def __init__(self, rules: Sequence[Rule], host: str = "127.0.0.1", port: int = 6379, *,
                 password: str | None = None, timeout: float = 1.0,
                 clock: Clock | None = None, username: str | None = None) -> None:
        nodes = ClusterNodes(host, port, password=password, timeout=timeout, username=username)
        super().__init__(rules, clock=clock, nodes=nodes, names=hashtag_names)
