"""Request heads read as Go's net/http reads them (the ASM service is a Go ``net/http`` server).

Pure functions over bytes, no I/O. ``parse_head`` takes one request head (request line and
header lines, without the blank line) and returns a ``Head`` or raises ``HeadError`` carrying
the exact bytes Go's server writes before it hangs up. ``route_path`` gives what Go's
``ServeMux`` does with the path: serve it, or redirect to the cleaned path.

Go's rules kept here: any method token reaches the handler (``get`` included); the version is
``HTTP/X.Y`` and only major version 1 is served (``HTTP/2.0``: 505); HTTP/1.1 needs exactly one
``Host``; the target keeps everything after ``?`` as the query, ``#`` included; the path is
percent-decoded (a bad escape is 400); control bytes in the target are 400; identical repeated
``Content-Length`` headers are one; ``Transfer-Encoding`` other than ``chunked`` is 501.
"""

from __future__ import annotations

import functools
import re
from typing import NamedTuple
from urllib.parse import unquote_to_bytes

MAX_HEAD = (1 << 20) + 4096  # Go: DefaultMaxHeaderBytes plus its 4096 bytes of slack
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_CTL = re.compile(rb"[\x00-\x1f\x7f]")
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_SCHEME = re.compile(rb"[A-Za-z][A-Za-z0-9+.\-]*:")
_ERROR_HEADERS = b"\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"


class HeadError(ValueError):
    """A request Go's server refuses before any handler runs; ``answer`` is what it writes."""

    def __init__(self, answer: bytes) -> None:
        super().__init__(answer.split(b"\r\n", 1)[0].decode("latin-1"))
        self.answer = answer


def go_error(status: str, detail: str | None = None) -> HeadError:
    """Go's answer to a request it cannot read: no Content-Length, the text is the body."""
    text = (status if detail is None else f"{status}: {detail}").encode()
    return HeadError(b"HTTP/1.1 " + text + _ERROR_HEADERS + text)


BAD_REQUEST = "400 Bad Request"
TOO_LARGE = go_error("431 Request Header Fields Too Large")
UNSUPPORTED_TE = HeadError(b"HTTP/1.1 501 Not Implemented" + _ERROR_HEADERS
                           + b"Unsupported transfer encoding")


class Head(NamedTuple):
    """One request head as Go's server hands it to the mux (a tuple, not a frozen
    dataclass: it is built for every request, and a tuple is built several times faster)."""

    method: str
    target: bytes  # the request target as sent
    path: str  # percent-decoded, as Go's URL.Path (raw bytes kept as latin-1 code points)
    query: bytes  # everything after the first "?", "#" included
    headers: dict[str, str]  # lower-case names, last value wins
    version: tuple[int, int]
    content_length: int  # -1: chunked
    keep_alive: bool


CACHED_HEAD_BYTES = 2048  # heads up to this size are parsed once (gateways repeat theirs)


def parse_head(head: bytes) -> Head:
    """Parse one head as Go does, or raise ``HeadError`` with Go's answer.

    A gateway sends the same few heads again and again, so small heads are parsed once
    (``Head`` is frozen; its ``headers`` dict is shared and must not be changed).

    >>> parse_head(b"get /%72atelimit?ratelimit_keys=[]#x HTTP/1.1\\r\\nHost: a").path
    '/ratelimit'
    """
    if len(head) <= CACHED_HEAD_BYTES:
        return _parse_head_cached(head)
    return _parse_head(head)


def _parse_head(head: bytes) -> Head:
    lines = head.split(b"\n")
    lines = [line[:-1] if line.endswith(b"\r") else line for line in lines]
    method, target, version, path, query = _request_line(lines[0])
    headers, multi = _headers(lines[1:])
    length = _content_length(multi, version)
    # What Go's server checks once the request is read, in its order:
    if version[0] != 1 and not (version == (2, 0) and method == "PRI" and target == b"*"):
        raise go_error("505 HTTP Version Not Supported", "unsupported protocol version")
    hosts = multi.get("host", [])
    if version >= (1, 1) and not hosts and method != "CONNECT":
        raise go_error(BAD_REQUEST, "missing required Host header")
    if len(hosts) > 1:
        raise go_error(BAD_REQUEST, "too many Host headers")
    connection = headers.get("connection", "").lower()
    keep_alive = "close" not in connection if version >= (1, 1) else "keep-alive" in connection
    return Head(method, target, path, query, headers, version, length, keep_alive)


_parse_head_cached = functools.lru_cache(maxsize=1024)(_parse_head)


def _request_line(line: bytes) -> tuple[str, bytes, tuple[int, int], str, bytes]:
    """(method, target, version, decoded path, raw query) of a request line."""
    if len(line) <= CACHED_HEAD_BYTES:
        return _request_line_cached(line)
    return _read_request_line(line)


def _read_request_line(line: bytes) -> tuple[str, bytes, tuple[int, int], str, bytes]:
    method, space, rest = line.partition(b" ")
    target, sep, proto = rest.partition(b" ")
    if not space or not sep or _TOKEN.fullmatch(method) is None:
        raise go_error(BAD_REQUEST)
    version = _version(proto)
    path, query = _target(method, target)
    return method.decode("latin-1"), target, version, path, query


_request_line_cached = functools.lru_cache(maxsize=4096)(_read_request_line)


def _version(proto: bytes) -> tuple[int, int]:
    if proto == b"HTTP/1.1":
        return 1, 1
    if proto == b"HTTP/1.0":
        return 1, 0
    if (len(proto) != 8 or not proto.startswith(b"HTTP/") or proto[6:7] != b"."
            or not proto[5:6].isdigit() or not proto[7:8].isdigit()):
        raise go_error(BAD_REQUEST)
    return int(proto[5:6]), int(proto[7:8])


def _headers(lines: list[bytes]) -> tuple[dict[str, str], dict[str, list[str]]]:
    headers: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    if any(line[:1] in (b" ", b"\t") for line in lines):
        lines = _unfold(lines)
    for line in lines:
        key, text = _header_cached(line) if len(line) <= 256 else _header(line)
        if key in headers:
            multi[key].append(text)
        else:
            multi[key] = [text]
        headers[key] = text
    return headers, multi


def _unfold(lines: list[bytes]) -> list[bytes]:
    folded: list[bytes] = []
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            if not folded:
                raise go_error(BAD_REQUEST)  # Go: malformed MIME header initial line
            folded[-1] = folded[-1] + b" " + line.strip(b" \t")
        else:
            folded.append(line)
    return folded


def _header(line: bytes) -> tuple[str, str]:
    name, colon, value = line.partition(b":")
    if not colon or _TOKEN.fullmatch(name) is None:
        raise go_error(BAD_REQUEST)
    value = value.strip(b" \t")
    if _BAD_VALUE.search(value):
        raise go_error(BAD_REQUEST)
    return name.decode("latin-1").lower(), value.decode("latin-1")


_header_cached = functools.lru_cache(maxsize=4096)(_header)


def _target(method: bytes, target: bytes) -> tuple[str, bytes]:
    """(decoded path, raw query) as Go's ``url.ParseRequestURI`` gives them."""
    if method == b"CONNECT" and not target.startswith(b"/"):
        return "", b""  # authority form: an empty path
    if not target or _CTL.search(target):
        raise go_error(BAD_REQUEST)
    if target == b"*":
        return "*", b""
    rest, _, query = target.partition(b"?")
    if not rest.startswith(b"/"):
        scheme = _SCHEME.match(rest)
        if scheme is None or not rest[scheme.end():].startswith(b"//"):
            raise go_error(BAD_REQUEST)  # Go: invalid URI for request
        authority_and_path = rest[scheme.end() + 2:]
        slash = authority_and_path.find(b"/")
        rest = authority_and_path[slash:] if slash >= 0 else b""
    if _BAD_ESCAPE.search(rest):
        raise go_error(BAD_REQUEST)
    return unquote_to_bytes(rest).decode("latin-1"), query


def _content_length(multi: dict[str, list[str]], version: tuple[int, int]) -> int:
    encodings = multi.get("transfer-encoding")
    if encodings and version >= (1, 1):
        if len(encodings) != 1 or encodings[0].strip().lower() != "chunked":
            raise UNSUPPORTED_TE
        return -1
    lengths = multi.get("content-length", [])
    if not lengths:
        return 0
    first = lengths[0].strip(" \t")
    if any(other.strip(" \t") != first for other in lengths[1:]):
        raise go_error(BAD_REQUEST)  # Go: message cannot contain multiple Content-Length headers
    if not first.isascii() or not first.isdigit():
        raise go_error(BAD_REQUEST)
    return int(first)


def clean_path(path: str) -> str:
    """Go's ``ServeMux`` cleanPath: one slash between elements, ``.`` and ``..`` resolved, a
    trailing slash kept.

    >>> clean_path("//ratelimit"), clean_path("/x/../ratelimit"), clean_path("")
    ('/ratelimit', '/ratelimit', '/')
    """
    if not path:
        return "/"
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    cleaned = "/" + "/".join(parts)
    if path.endswith("/") and cleaned != "/":
        cleaned += "/"
    return cleaned


class ChunkedBody:
    """A chunked body read as it arrives: each ``read`` looks only at what is new (a body
    dripped a byte at a time costs no rescans). ``HeadError`` for bad framing."""

    def __init__(self, start: int) -> None:
        self.pos = start  # where reading resumes: a chunk-size line, or a trailer line
        self.parts: list[bytes] = []
        self.size = 0
        self.end = -1  # where the message ends, once complete
        self.in_trailers = False

    @property
    def body(self) -> bytes:
        return b"".join(self.parts)

    def read(self, data: bytes | bytearray) -> bool:
        """Go on reading ``data`` (the same buffer, grown); True once the body is complete."""
        pos = self.pos
        while True:
            line_end = data.find(b"\n", pos)
            if line_end < 0:
                self.pos = pos
                return False
            if self.in_trailers:  # trailers, up to the blank line
                line, pos = data[pos:line_end], line_end + 1
                if line in (b"", b"\r"):
                    self.end = pos
                    return True
                continue
            size_text = bytes(data[pos:line_end]).rstrip(b"\r").split(b";", 1)[0].strip(b" \t")
            try:
                size = int(size_text, 16)
            except ValueError:
                raise go_error(BAD_REQUEST) from None
            if size < 0 or size_text[:1] in (b"+", b"-"):
                raise go_error(BAD_REQUEST)
            if size == 0:
                pos, self.in_trailers = line_end + 1, True
                continue
            start = line_end + 1
            if len(data) < start + size + 2:
                self.pos = pos  # the chunk is not all here: its size line is read again
                return False
            self.parts.append(bytes(data[start:start + size]))
            self.size += size
            pos = start + size
            if data[pos:pos + 2] == b"\r\n":
                pos += 2
            elif data[pos:pos + 1] == b"\n":
                pos += 1
            else:
                raise go_error(BAD_REQUEST)
