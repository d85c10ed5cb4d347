"""The Redis Cluster store: the Redis store's scripts, routed by slot, with hash-tagged keys.

Opt-in layout (``--backend redis-cluster``): ``{<key>}``, ``{<key>}_last_fill_time`` (and the
reserve-mode keys with the same prefix), so every script touches one slot. This layout is not
the example's: a service switched from a single Redis to a cluster starts with fresh buckets.
Keys whose hash tag would be empty (the empty key, or one starting with ``}``) are stored
under a fixed tag (see ``hashtag_names``): the cluster accepts every key a single node does.

The slot map comes from ``CLUSTER SLOTS`` on the seed node (then on any known node); a
``MOVED`` answer refreshes it and retries once, an ``ASK`` answer retries on the named node.
"""

from __future__ import annotations

import binascii
from collections.abc import Sequence
from typing import Any

from tokenlimit.errors import StoreError
from tokenlimit.rules.model import Rule
from tokenlimit.service.stores.base import Clock
from tokenlimit.service.stores.redis import RedisStore, hashtag_names, setup_commands
from tokenlimit.service.stores.resp import Arg, ReplyError, RespConnection, encode_command

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
    """Connections to the cluster's masters and the slot map."""

    def __init__(self, host: str, port: int, *, password: str | None, timeout: float) -> None:
        self.seeds = [(host, port)]
        self.password = password
        self.timeout = timeout
        self.connections: dict[tuple[str, int], RespConnection] = {}
        self.slots: list[tuple[str, int] | None] = [None] * SLOTS

    def _connection(self, address: tuple[str, int]) -> RespConnection:
        if address not in self.connections:
            self.connections[address] = RespConnection(
                address[0], address[1], timeout=self.timeout,
                setup=setup_commands(self.password, 0))
        return self.connections[address]

    async def refresh(self) -> None:
        """Read the slot map from the first node that answers."""
        errors = []
        for address in [*self.seeds, *self.connections]:
            try:
                reply = await self._connection(address).call("CLUSTER", "SLOTS")
            except (StoreError, ReplyError) as exc:
                errors.append(str(exc))
                continue
            slots: list[tuple[str, int] | None] = [None] * SLOTS
            for entry in reply:
                start, end, master = int(entry[0]), int(entry[1]), entry[2]
                host = master[0].decode() if isinstance(master[0], bytes) else str(master[0])
                owner = (host or address[0], int(master[1]))
                for slot in range(start, end + 1):
                    slots[slot] = owner
            self.slots = slots
            return
        raise StoreError("no cluster node answered CLUSTER SLOTS: " + "; ".join(errors[:3]))

    async def call(self, route: str, *args: Arg) -> Any:
        return await self.send(route, encode_command(args))

    async def send(self, route: str, command: bytes) -> Any:
        slot = key_slot(route)
        if self.slots[slot] is None:
            await self.refresh()
        owner = self.slots[slot]
        if owner is None:
            raise StoreError(f"cluster slot {slot} is not served by any node")
        try:
            return await self._connection(owner).send(command)
        except ReplyError as exc:
            text = str(exc)
            if text.startswith("MOVED"):
                await self.refresh()
                return await self._connection(_address(text)).send(command)
            if text.startswith("ASK"):
                connection = self._connection(_address(text))
                await connection.call("ASKING")
                return await connection.send(command)
            raise
        except StoreError:
            self.slots = [None] * SLOTS  # the node may be gone: read the map again next time
            raise

    async def ping(self) -> None:
        await self.refresh()
        for owner in {owner for owner in self.slots if owner is not None}:
            try:
                await self._connection(owner).call("PING")
            except ReplyError as exc:
                raise StoreError(f"cluster node {owner[0]}:{owner[1]}: {exc}") from exc

    async def close(self) -> None:
        for connection in self.connections.values():
            await connection.close()


def _address(reply: str) -> tuple[str, int]:
    # "MOVED 3999 127.0.0.1:6381" / "ASK 3999 127.0.0.1:6381"
    host, _, port = reply.split()[-1].rpartition(":")
    return host, int(port)


class ClusterStore(RedisStore):
    """``RedisStore`` over a Redis Cluster with the hash-tagged key layout."""

    name = "redis-cluster"

    def __init__(self, rules: Sequence[Rule], host: str = "127.0.0.1", port: int = 6379, *,
                 password: str | None = None, timeout: float = 1.0,
                 clock: Clock | None = None) -> None:
        nodes = ClusterNodes(host, port, password=password, timeout=timeout)
        super().__init__(rules, clock=clock, nodes=nodes, names=hashtag_names)
