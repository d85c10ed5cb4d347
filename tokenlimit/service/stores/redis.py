"""The Redis store: the example's check script (rewritten, same keys and arithmetic) by EVALSHA.

Key layout, compatible with the example so the two services can share one Redis: the balance
under the raw key, the last refill second under ``<key>_last_fill_time``. Reserve mode adds
``<key>_reserved``, ``<key>_reserved_n`` and ``<key>_avg_tokens`` (see
``tokenlimit.bucket.reserve``). The cluster layout wraps the key in a hash tag (``{<key>}``,
``{<key>}_last_fill_time``, ...) so that a key's state lives in one slot.

Scripts are ``.lua`` files in ``tokenlimit/service/lua`` (``bucket.lua`` is prepended to each),
loaded on every new connection and called by EVALSHA; a NOSCRIPT answer reloads them.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Protocol

from tokenlimit.bucket.keyspace import LAST_FILL_SUFFIX
from tokenlimit.bucket.multikey import CheckResult, ScriptCall, run_check_async
from tokenlimit.bucket.reserve import AVG_WEIGHT, EstimatePolicy
from tokenlimit.bucket.script import KeyCheck, ScriptError
from tokenlimit.errors import StoreError
from tokenlimit.rules.model import Rule
from tokenlimit.rules.regex import RuleMatcher
from tokenlimit.service.stores.base import Clock
from tokenlimit.service.stores.resp import Arg, ReplyError, RespConnection, encode_command

SCRIPT_NAMES = ("check", "reserve", "release", "settle", "report")
COMMAND_CACHE_SIZE = 10_000
COMMAND_CACHE_KEY_CHARS = 512  # longer keys are encoded every time: the cache stays < 10 MB
SUFFIXES = ("", LAST_FILL_SUFFIX, "_reserved", "_reserved_n", "_avg_tokens")


@dataclass(frozen=True, slots=True)
class Script:
    """One script: its full text (``bucket.lua`` + the body) and SHA1."""

    name: str
    text: str
    sha: str


@cache
def load_script(name: str) -> Script:
    """The script ``name`` from the package's ``lua`` folder.

    >>> load_script("check").sha == hashlib.sha1(load_script("check").text.encode()).hexdigest()
    True
    """
    folder = resources.files("tokenlimit.service").joinpath("lua")
    text = folder.joinpath("bucket.lua").read_text("utf-8") + "\n" + folder.joinpath(
        f"{name}.lua").read_text("utf-8")
    return Script(name, text, hashlib.sha1(text.encode()).hexdigest())


def plain_names(key: str) -> tuple[str, ...]:
    """The example's layout: the raw key, then ``<key>_last_fill_time`` and reserve keys."""
    return tuple(key + suffix for suffix in SUFFIXES)


EMPTY_TAG_PREFIX = "{\x00}\x00"  # names of keys whose own hash tag would be empty


def hashtag_names(key: str) -> tuple[str, ...]:
    """The cluster layout: ``{<key>}`` then the same suffixes, all in the key's slot.

    A key whose tag would be empty (``""``, or one starting with ``}``) would have its names
    hashed whole, into different slots; those go under the fixed tag ``{\\x00}`` instead
    (``{\\x00}\\x00<key>...``), so the cluster accepts every key a single node accepts.

    >>> hashtag_names("u")[:2]
    ('{u}', '{u}_last_fill_time')
    >>> hashtag_names("}u")[0]
    '{\\x00}\\x00}u'
    """
    if not key or key.startswith("}"):
        return tuple(EMPTY_TAG_PREFIX + key + suffix for suffix in SUFFIXES)
    return tuple("{" + key + "}" + suffix for suffix in SUFFIXES)


class Nodes(Protocol):
    """Where commands go: one Redis node, or the node owning the slot of ``route``."""

    async def call(self, route: str, *args: Arg) -> Any: ...

    async def send(self, route: str, command: bytes) -> Any:
        """Send one already encoded command."""

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


def setup_commands(password: str | None, db: int) -> list[list[Arg]]:
    """Run on every new connection: AUTH, SELECT, and loading every script."""
    commands: list[list[Arg]] = []
    if password:
        commands.append(["AUTH", password])
    if db:
        commands.append(["SELECT", db])
    commands.extend(["SCRIPT", "LOAD", load_script(name).text] for name in SCRIPT_NAMES)
    return commands


class SingleNode:
    """One Redis server over one pipelined connection."""

    def __init__(self, host: str, port: int, *, password: str | None, db: int,
                 timeout: float) -> None:
        self.connection = RespConnection(host, port, timeout=timeout,
                                         setup=setup_commands(password, db))

    async def call(self, route: str, *args: Arg) -> Any:
        return await self.connection.call(*args)

    async def send(self, route: str, command: bytes) -> Any:
        return await self.connection.send(command)

    async def ping(self) -> None:
        try:
            await self.connection.call("PING")
        except ReplyError as exc:
            raise StoreError(f"redis at {self.connection.address}: {exc}") from exc

    async def close(self) -> None:
        await self.connection.close()


class RedisStore:
    """Buckets in Redis (one node, or a cluster with ``nodes`` and ``names``).

    ``clock``: ``None`` lets the scripts read Redis ``TIME`` (production); a callable's Unix
    seconds are passed to the scripts instead (tests, replays), see ``bucket.lua``.
    """

    name = "redis"

    def __init__(self, rules: Sequence[Rule], host: str = "127.0.0.1", port: int = 6379, *,
                 password: str | None = None, db: int = 0, timeout: float = 1.0,
                 clock: Clock | None = None, nodes: Nodes | None = None,
                 names: Callable[[str], tuple[str, ...]] = plain_names) -> None:
        self.matcher = RuleMatcher(rules)
        self.clock = clock
        self.nodes: Nodes = nodes or SingleNode(host, port, password=password, db=db,
                                                timeout=timeout)
        self.names = names
        self._commands: dict[str, tuple[str, bytes]] = {}
        self.last_script_error = ""

    def set_rules(self, rules: Sequence[Rule]) -> None:
        self.matcher = RuleMatcher(rules)
        self._commands = {}

    def _now_arg(self) -> str:
        return "" if self.clock is None else str(math.floor(self.clock() * 1000))

    async def _run(self, name: str, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        script = load_script(name)
        try:
            return await self.nodes.call(keys[0], "EVALSHA", script.sha, len(keys), *keys, *args)
        except ReplyError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
        await self.nodes.call(keys[0], "SCRIPT", "LOAD", script.text)
        return await self.nodes.call(keys[0], "EVALSHA", script.sha, len(keys), *keys, *args)

    async def _check_script(self, key: str, rule: Rule, now: str) -> Any:
        # The one hot call: with Redis TIME the whole command is the same for a key and rule,
        # so its encoding is kept (bounded) instead of rebuilt on every request.
        if now or not getattr(self.nodes, "packed", True):
            args: list[Arg] = [now, rule.fill_interval_second, rule.tokens_per_fill,
                               rule.max_tokens, rule.redis_expired_seconds]
            return await self._run("check", self.names(key)[:2], args)
        cached = self._commands.get(key)
        if cached is None:
            names = self.names(key)[:2]
            cached = names[0], encode_command([
                "EVALSHA", load_script("check").sha, 2, *names, "", rule.fill_interval_second,
                rule.tokens_per_fill, rule.max_tokens, rule.redis_expired_seconds])
            if len(key) <= COMMAND_CACHE_KEY_CHARS:
                if len(self._commands) >= COMMAND_CACHE_SIZE:
                    self._commands.clear()
                self._commands[key] = cached
        try:
            return await self.nodes.send(*cached)
        except ReplyError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
        return await self._run("check", self.names(key)[:2], ["", rule.fill_interval_second,
                               rule.tokens_per_fill, rule.max_tokens, rule.redis_expired_seconds])

    async def check(self, keys: Sequence[str],
                    estimate: EstimatePolicy | None = None) -> CheckResult:
        now = self._now_arg()
        made: list[tuple[tuple[str, ...], int]] = []

        async def script(call: ScriptCall) -> KeyCheck:
            rule = call.rule
            try:
                if estimate is None:
                    balance, last, now_s = await self._check_script(call.key, rule, now)
                    return KeyCheck(balance, last, now_s, balance)
                names = self.names(call.key)
                fixed = estimate.fixed(call.index)
                args: list[Arg] = [now, rule.fill_interval_second, rule.tokens_per_fill,
                                   rule.max_tokens, rule.redis_expired_seconds,
                                   "" if fixed is None else fixed, estimate.default]
                balance, last, amount, after, now_s = await self._run("reserve", names, args)
            except ReplyError as exc:  # as the example: logged, the check goes on, then 400
                self.last_script_error = f"{call.key}: {exc}"
                raise ScriptError(self.last_script_error) from exc
            if balance > 0:  # admitted by this key: a reservation (maybe of 0) made
                made.append((names, amount))
            return KeyCheck(balance, last, now_s, after)

        result = await run_check_async(self.matcher, keys, script)
        if result.outcome != "allow":
            await self._release(made, now)
        return result

    async def _release(self, made: list[tuple[tuple[str, ...], int]], now: str) -> None:
        for names, amount in made:
            try:
                await self._run("release", names, [now, amount])
            except ReplyError as exc:
                raise StoreError(f"releasing a reservation failed: {exc}") from exc

    async def report(self, keys: Sequence[str], tokens: int, settle: bool = False) -> None:
        now = self._now_arg()
        for key in keys:
            try:
                names = self.names(key)
                if settle:
                    index = self.matcher.index_for(key)
                    ttl: Arg = "" if index is None else (
                        self.matcher.rules[index].redis_expired_seconds)
                    await self._run("settle", names, [now, tokens, ttl, AVG_WEIGHT])
                elif self.clock is None:
                    await self.nodes.call(names[0], "DECRBY", names[0], tokens)
                else:
                    await self._run("report", names[:1], [now, tokens])
            except ReplyError as exc:
                raise StoreError(f"usage report for {key!r} failed: {exc}") from exc

    async def ping(self) -> None:
        await self.nodes.ping()

    async def close(self) -> None:
        await self.nodes.close()
