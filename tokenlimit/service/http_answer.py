"""Answers written as Go's net/http writes them: the status line, ``Content-Length``,
``Connection``, and ``ServeMux``'s redirect for unclean paths.

Pure functions over values, no I/O.
"""

from __future__ import annotations

import functools
import html
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import quote


@dataclass(frozen=True, slots=True)
class Response:
    """One answer; ``headers`` are extra (Content-Length and Connection are added here)."""

    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = field(default=())


_REASONS = {s.value: s.phrase for s in HTTPStatus}
CACHED_ANSWER_BYTES = 512  # larger answers (redirects echo the target) are not cached


def encode_response(response: Response, keep_alive: bool, http10: bool = False) -> bytes:
    """The bytes of an answer (small ones cached: most answers are one of a few).

    As Go's server: an HTTP/1.0 request gets an ``HTTP/1.0`` status line, ``Connection:
    keep-alive`` when it asked for it and no ``Connection`` header otherwise; HTTP/1.1 gets
    ``Connection: close`` when the connection ends after the answer.
    """
    if len(response.body) + sum(len(v) for _, v in response.headers) > CACHED_ANSWER_BYTES:
        return _encode(response, keep_alive, http10)
    return _encode_cached(response, keep_alive, http10)


def _encode(response: Response, keep_alive: bool, http10: bool = False) -> bytes:
    reason = _REASONS.get(response.status, "Unknown")
    lines = [f"HTTP/1.{0 if http10 else 1} {response.status} {reason}"]
    lines.extend(f"{name}: {value}" for name, value in response.headers)
    lines.append(f"Content-Length: {len(response.body)}")
    if http10 and keep_alive:
        lines.append("Connection: keep-alive")
    elif not keep_alive and not http10:
        lines.append("Connection: close")
    head = "\r\n".join(lines).encode("latin-1", "replace") + b"\r\n\r\n"
    return head + response.body


_encode_cached = functools.lru_cache(maxsize=4096)(_encode)


def redirect_response(method: str, path: str, query: bytes) -> Response:
    """Go's ``ServeMux`` answer to an unclean path: 301 to the cleaned one, query kept."""
    location = quote(path, safe="/:@!$&'()*+,;=-._~") + ("?" + query.decode("latin-1")
                                                      if query else "")
    if method not in ("GET", "HEAD"):
        return Response(301, b"", (("Location", location),))
    body = f'<a href="{html.escape(location)}">Moved Permanently</a>.\n\n'.encode()
    return Response(301, body, (("Content-Type", "text/html; charset=utf-8"),
                                ("Location", location)))


# Go's server answers "OPTIONS *" itself (200, empty); "*" with any other method is a 400.
OPTIONS_STAR = Response(200)
STAR_OTHER = Response(400)
EXPECTATION_FAILED = Response(417)
