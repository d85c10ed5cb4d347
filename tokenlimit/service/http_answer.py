"""Answers written as Go's net/http writes them: the status line, the handler's headers
sorted by name, then ``Date``, ``Content-Length``, a sniffed ``Content-Type`` and
``Connection`` in that order (Go's ``extraHeader``), and ``ServeMux``'s redirect for unclean
paths.

Pure functions over values; the only input besides them is the wall clock (``Date``).
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus


@dataclass(frozen=True, slots=True)
class Response:
    """One answer. ``headers`` are the handler's own (written sorted by name, as Go does);
    ``sniffed`` is a Content-Type Go's server adds itself after sniffing the body (written
    after ``Content-Length``). Date, Content-Length and Connection are added here."""

    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = field(default=())
    sniffed: str = ""


_REASONS = {s.value: s.phrase for s in HTTPStatus}
CACHED_ANSWER_BYTES = 512  # larger answers (redirects echo the target) are not cached


_date: tuple[int, bytes] = (-1, b"")


def date_line() -> bytes:
    """``Date: <now>`` and CRLF, as Go writes it (RFC 1123, GMT), formatted once a second."""
    global _date  # a one-entry cache
    now = int(time.time())
    if now != _date[0]:
        _date = (now, f"Date: {formatdate(now, usegmt=True)}\r\n".encode())
    return _date[1]


def encode_response(response: Response, keep_alive: bool, http10: bool = False,
                    head: bool = False) -> bytes:
    """The bytes of an answer (small ones cached: most answers are one of a few).

    As Go's server: an HTTP/1.0 request gets an ``HTTP/1.0`` status line, ``Connection:
    keep-alive`` when it asked for it and no ``Connection`` header otherwise; HTTP/1.1 gets
    ``Connection: close`` when the connection ends after the answer (unless the handler set
    ``Connection`` itself). ``head``: the answer to a HEAD request, without its body; Go
    then sends ``Content-Length`` only when the handler wrote a body.
    """
    if len(response.body) + sum(len(v) for _, v in response.headers) > CACHED_ANSWER_BYTES:
        before, after = _encode(response, keep_alive, http10, head)
    else:
        before, after = _encode_cached(response, keep_alive, http10, head)
    return before + date_line() + after


def _encode(response: Response, keep_alive: bool, http10: bool,
            head: bool) -> tuple[bytes, bytes]:
    """(status line and handler headers, the rest after ``Date``)."""
    reason = _REASONS.get(response.status, "Unknown")
    lines = [f"HTTP/1.{0 if http10 else 1} {response.status} {reason}"]
    lines.extend(f"{name}: {value}" for name, value in sorted(response.headers))
    before = ("\r\n".join(lines) + "\r\n").encode("latin-1", "replace")
    lines = []
    own_length = any(name.lower() == "content-length" for name, _ in response.headers)
    if (response.body or not head) and not own_length:
        lines.append(f"Content-Length: {len(response.body)}")
    if response.sniffed:
        lines.append(f"Content-Type: {response.sniffed}")
    if not any(name.lower() == "connection" for name, _ in response.headers):
        if http10 and keep_alive:
            lines.append("Connection: keep-alive")
        elif not keep_alive and not http10:
            lines.append("Connection: close")
    after = "".join(line + "\r\n" for line in lines).encode("latin-1", "replace") + b"\r\n"
    return before, after + (b"" if head else response.body)


_encode_cached = functools.lru_cache(maxsize=4096)(_encode)


_GO_HTML = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&#34;", "'": "&#39;"})


def gorilla_redirect(location: str, query: bytes) -> Response:
    """gorilla/mux's answer to an unclean decoded path: 301, ``Location`` only, no body."""
    return Response(301, b"", (("Location", location + ("?" + query.decode("latin-1")
                                                          if query else "")),))


def go_html_escape(text: str) -> str:
    """Go's ``html.EscapeString`` (numeric references for quotes, unlike Python's).

    >>> go_html_escape('<a href="x&y">')
    '&lt;a href=&#34;x&amp;y&#34;&gt;'
    """
    return text.translate(_GO_HTML)


def redirect_response(method: str, path: str, query: bytes) -> Response:
    """Go's ``ServeMux`` answer to an unclean path: 301 to the cleaned one (``path``,
    escaped already), query kept."""
    location = path + ("?" + query.decode("latin-1") if query else "")
    if method not in ("GET", "HEAD"):
        return Response(301, b"", (("Location", location),))
    headers = (("Content-Type", "text/html; charset=utf-8"), ("Location", location))
    if method == "HEAD":  # Go's http.Redirect writes its body for GET only
        return Response(301, b"", headers)
    body = f'<a href="{go_html_escape(location)}">Moved Permanently</a>.\n\n'.encode()
    return Response(301, body, headers)


# Go's server answers "OPTIONS *" itself (200, empty); "*" with any other method is a 400
# from its ServeMux, which sets "Connection: close" itself for HTTP/1.1 requests.
OPTIONS_STAR = Response(200, b"", (("Content-Length", "0"),))  # set by its handler
STAR_OTHER = Response(400, b"", (("Connection", "close"),))
STAR_OTHER_HTTP10 = Response(400)
# Go's sendExpectationFailed sets "Connection: close" as a handler header.
EXPECTATION_FAILED = Response(417, b"", (("Connection", "close"),))
