"""Redis as operators run it, through redis-py: TLS, ACL users, unix sockets, Sentinel.

``redis_url_settings`` reads a ``--redis-url`` with redis-py's own parser (``rediss://`` for
TLS, ``unix://`` for a socket, ``user:password@`` for an ACL user) plus the common
``redis+sentinel://[user:password@]host:port[,host:port...]/MASTER[/DB]`` form. ``RedisPyNode``
is the ``Nodes`` seam of ``RedisStore`` over a redis-py asyncio client, so the scripts, key
layout and decisions are the same as over the built-in connection.

Secrets: no message built here contains the URL, the user name's password or any text redis-py
derived from them (its own errors can echo parts of a malformed URL); ``scrub`` removes the
password from whatever passes through anyway.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis import exceptions as redis_errors
from redis.asyncio.sentinel import Sentinel
from redis.connection import parse_url

from tokenlimit.errors import ConfigError, StoreError
from tokenlimit.service.stores.resp import Arg, ReplyError

SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "rediss+sentinel")
URL_HELP = ("expected redis://[[USER]:PASSWORD@]HOST[:PORT][/DB], rediss://... (TLS), "
            "unix:///PATH[?db=N], or redis+sentinel://[[USER]:PASSWORD@]HOST:PORT[,HOST:PORT]"
            "/MASTER[/DB]; percent-encode '/', '?', '#', '@' and ':' inside a password")


@dataclass(frozen=True, slots=True)
class RedisUrl:
    """What a ``--redis-url`` says, the password kept out of ``repr``."""

    scheme: str
    host: str = "127.0.0.1"
    port: int = 6379
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    path: str | None = None  # unix socket
    sentinels: tuple[tuple[str, int], ...] = ()
    master: str | None = None
    url: str = field(default="", repr=False)

    @property
    def tls(self) -> bool:
        return self.scheme.startswith("rediss")

    @property
    def needs_redis_py(self) -> bool:
        """TLS, a socket, an ACL user or Sentinel: what the built-in connection cannot do."""
        return self.scheme != "redis" or self.username is not None

    def location(self) -> str:
        """Where, for logs: never the password."""
        if self.path is not None:
            where = f"unix socket {self.path}"
        elif self.master is not None:
            hosts = ",".join(f"{host}:{port}" for host, port in self.sentinels)
            where = f"master {self.master!r} of sentinels {hosts}"
        else:
            where = f"{self.host}:{self.port}"
        extras = [f"db {self.db}"]
        if self.tls:
            extras.append("TLS")
        if self.username:
            extras.append(f"user {self.username!r}")
        if self.password:
            extras.append("with password")
        return f"{where} ({', '.join(extras)})"


def redis_url_settings(url: str) -> RedisUrl:
    """Read ``url``; ``ConfigError`` that never repeats any part of it but the scheme.

    >>> redis_url_settings("rediss://app:p%2Fw@cache:6380/2").location()
    "cache:6380 (db 2, TLS, user 'app', with password)"
    """
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme not in SCHEMES:
        raise ConfigError(f"--redis-url: {URL_HELP}")
    try:
        if scheme.endswith("+sentinel"):
            return _sentinel_url(url, scheme)
        found = parse_url(url)  # type: ignore[no-untyped-call]
    except (ValueError, TypeError, UnicodeError) as exc:
        raise ConfigError(f"--redis-url: cannot be read: {URL_HELP}") from exc
    return RedisUrl(scheme, found.get("host") or "127.0.0.1", int(found.get("port") or 6379),
                    int(found.get("db") or 0), found.get("username") or None,
                    found.get("password") or None, found.get("path"), url=url)


def _sentinel_url(url: str, scheme: str) -> RedisUrl:
    parts = urllib.parse.urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    username, _, password = userinfo.partition(":")
    sentinels = []
    for item in hosts.split(","):
        host, sep, port = item.rpartition(":")
        if not sep or not port.isdigit():
            raise ValueError("a sentinel needs host:port")
        sentinels.append((host.strip("[]"), int(port)))
    names = [unit for unit in parts.path.split("/") if unit]
    if not names or len(names) > 2 or (len(names) == 2 and not names[1].isdigit()):
        raise ValueError("the path must be /MASTER or /MASTER/DB")
    return RedisUrl(scheme, db=int(names[1]) if len(names) == 2 else 0,
                    username=urllib.parse.unquote(username) or None,
                    password=urllib.parse.unquote(password) or None,
                    sentinels=tuple(sentinels), master=urllib.parse.unquote(names[0]), url=url)


def scrub(text: str, settings: RedisUrl) -> str:
    """``text`` without the password or the URL, whatever produced it."""
    for secret in (settings.url, settings.password):
        if secret:
            text = text.replace(secret, "***")
            text = text.replace(urllib.parse.quote(secret, safe=""), "***")
    return text


def redis_py_client(settings: RedisUrl, timeout: float) -> aioredis.Redis:
    """The redis-py asyncio client for ``settings`` (connections open on first use)."""
    options: dict[str, Any] = {"socket_timeout": timeout, "socket_connect_timeout": timeout,
                               "db": settings.db, "username": settings.username,
                               "password": settings.password}
    if settings.master is not None:
        extra = {"ssl": True} if settings.tls else {}
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            list(settings.sentinels), sentinel_kwargs={
                "socket_timeout": timeout, "password": settings.password,
                "username": settings.username, **extra}, **options, **extra)
        client: aioredis.Redis = sentinel.master_for(settings.master)
        return client
    if not settings.url:  # from REDIS_ADDRESS and friends
        return aioredis.Redis(host=settings.host, port=settings.port, **options)
    return aioredis.Redis.from_url(settings.url, socket_timeout=timeout,
                                   socket_connect_timeout=timeout)


class RedisPyNode:
    """``Nodes`` (see ``stores.redis``) over a redis-py asyncio client."""

    def __init__(self, settings: RedisUrl, timeout: float,
                 client: aioredis.Redis | None = None) -> None:
        self.settings = settings
        self.client = client or redis_py_client(settings, timeout)

    def _translate(self, exc: Exception) -> Exception:
        message = scrub(str(exc), self.settings)
        if isinstance(exc, redis_errors.NoScriptError):
            return ReplyError(f"NOSCRIPT {message}")
        if isinstance(exc, redis_errors.ResponseError):
            return ReplyError(message)
        return StoreError(f"redis at {self.settings.location()}: {type(exc).__name__}: "
                          f"{message}")

    # Errors are raised "from None": redis-py's own exception text can quote a malformed
    # URL or a password, and a chained cause would carry it along.
    async def call(self, route: str, *args: Arg) -> Any:
        try:
            return await self.client.execute_command(*args)  # type: ignore[no-untyped-call]
        except (redis_errors.RedisError, OSError) as exc:
            raise self._translate(exc) from None

    async def send(self, route: str, command: bytes) -> Any:
        pool = self.client.connection_pool
        try:
            connection = await pool.get_connection()  # type: ignore[no-untyped-call]
        except (redis_errors.RedisError, OSError) as exc:
            raise self._translate(exc) from None
        try:
            await connection.send_packed_command(command, check_health=False)
            return await connection.read_response()
        except (redis_errors.RedisError, OSError) as exc:
            if not isinstance(exc, redis_errors.ResponseError):
                await connection.disconnect()
            raise self._translate(exc) from None
        finally:
            await pool.release(connection)

    async def ping(self) -> None:
        try:
            await self.client.ping()  # type: ignore[misc]
        except (redis_errors.RedisError, OSError) as exc:
            raise self._translate(exc) from None

    async def close(self) -> None:
        await self.client.aclose()
