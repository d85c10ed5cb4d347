"""What the gateway reads from requests and writes into answers: attributes, limits, headers.

>>> check_target(["regular-user"])
b'/ratelimit?ratelimit_keys=%5B%22regular-user%22%5D'
"""

from __future__ import annotations

import functools
import itertools
import json
import time
from collections.abc import Sequence
from email.utils import formatdate
from urllib.parse import quote

from tokenlimit.gateway.asgi import Scope
from tokenlimit.gateway.attributes import RequestAttributes

HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization",
    b"proxy-connection", b"te", b"trailer", b"trailers", b"transfer-encoding", b"upgrade",
})
NOT_FORWARDED = HOP_BY_HOP | {b"expect"}  # 100-continue is the gateway's business with its client
NOT_FORWARDED_SIZED = NOT_FORWARDED | {b"content-length"}
MAX_REQUEST_HEAD = 60 * 1024  # Envoy's default max_request_headers_kb: larger heads get 431
MAX_CHECK_TARGET = 512 * 1024  # well inside the service's 1 MiB request head (Go's default)


def header_text(value: bytes) -> str:
    """A header value as text (UTF-8, else Latin-1), as key templates see it."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")  # not UTF-8: readable, though not byte for byte


def request_attributes(scope: Scope) -> RequestAttributes:
    """The attributes key templates read, from an ASGI scope (header names in lower case, as
    ASGI gives them)."""
    headers = tuple([(k.decode("latin-1"), header_text(v)) for k, v in scope["headers"]])
    host = next((v for k, v in headers if k == "host"), "")
    query = scope.get("query_string", b"").decode("latin-1")
    path = scope.get("raw_path") or scope["path"].encode()
    target = path.decode("latin-1") + (f"?{query}" if query else "")
    client, server = scope.get("client"), scope.get("server")
    return RequestAttributes(
        method=scope["method"], path=target, host=host, scheme=scope.get("scheme", "http"),
        protocol=f"HTTP/{scope.get('http_version', '1.1')}", headers=headers,
        source=(client[0], int(client[1])) if client else None,
        destination=(server[0], int(server[1])) if server and server[1] is not None else None,
    )


def request_target(scope: Scope) -> bytes:
    """The path and query as the client sent them."""
    path: bytes = scope.get("raw_path") or scope["path"].encode()
    query: bytes = scope.get("query_string", b"")
    return path + b"?" + query if query else path


def head_size(scope: Scope) -> int:
    """The request line and headers' size, about as the client sent them."""
    headers = scope["headers"]
    return (len(scope["method"]) + len(request_target(scope)) + 12
            + sum(map(len, itertools.chain.from_iterable(headers))) + 4 * len(headers))


def host_count(scope: Scope) -> int:
    """How many Host headers the request carries (names in lower case, as ASGI gives them)."""
    return [k for k, _ in scope["headers"]].count(b"host")


def forwarded_headers(raw: Sequence[tuple[bytes, bytes]],
                      drop_length: bool = False) -> list[tuple[bytes, bytes]]:
    """The request headers that go upstream: all but hop-by-hop ones and those ``Connection``
    names (and ``Expect``; ``drop_length``: and ``Content-Length``), byte for byte (names in
    lower case, as ASGI gives them)."""
    dropped = NOT_FORWARDED_SIZED if drop_length else NOT_FORWARDED
    for name, value in raw:
        if name == b"connection":
            dropped = dropped | {t.strip().lower() for t in value.split(b",")}
    return [(k, v) for k, v in raw if k not in dropped]


def check_target(keys: Sequence[str]) -> bytes:
    """The request target of the check for ``keys``: the JSON array, percent-encoded."""
    keys = tuple(keys)
    if sum(len(key) for key in keys) <= CACHED_KEYS_CHARACTERS:
        return _check_target_cached(keys)  # the same few keys come again and again
    return _check_target(keys)


def _check_target(keys: tuple[str, ...]) -> bytes:
    keys_json = quote(json.dumps(list(keys), ensure_ascii=False, separators=(",", ":")), safe="")
    return b"/ratelimit?ratelimit_keys=" + keys_json.encode("ascii")


CACHED_KEYS_CHARACTERS = 512
_check_target_cached = functools.lru_cache(maxsize=4096)(_check_target)


_date_cache: tuple[int, bytes] = (0, b"")


def http_date() -> bytes:
    """The current ``Date`` header value (formatted once a second)."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, formatdate(now, usegmt=True).encode())
    return _date_cache[1]
