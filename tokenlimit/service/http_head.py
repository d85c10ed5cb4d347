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
# textproto reads a header name with spaces (not canonicalized); the server then refuses it
_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z ]*")
# Go's url.parseAuthority / parseHost for an absolute-form target
_USERINFO = re.compile(rb"[0-9A-Za-z\-._:~!$&'()*+,;=%@]*")
_URL_HOST = re.compile(rb"(?:[0-9A-Za-z!$&'()*+,;=:\[\]<>\"\-_.~\x80-\xff]|%25"
                       rb"|%[89A-Fa-f][0-9A-Fa-f])*")
_PORT = re.compile(rb"(?::[0-9]*)?")
_HOST = re.compile(rb"[0-9A-Za-z!$%&()*+,\-.:;=\[\]'_~]*")  # httpguts.ValidHostHeader's bytes
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
    hosts = multi.get("host", [])
    if len(hosts) > 1:
        raise go_error(BAD_REQUEST)  # Go's readRequest: a plain error, no detail shown
    length = _content_length(multi, version)
    # What Go's server checks once the request is read, in its order:
    h2_preface = version == (2, 0) and method == "PRI" and target == b"*"
    if version[0] != 1 and not h2_preface:
        raise go_error("505 HTTP Version Not Supported", "unsupported protocol version")
    if version >= (1, 1) and not hosts and method != "CONNECT" and not h2_preface:
        raise go_error(BAD_REQUEST, "missing required Host header")
    if len(hosts) == 1 and _HOST.fullmatch(hosts[0].encode("latin-1")) is None:
        raise go_error(BAD_REQUEST, "malformed Host header")
    if any(" " in name for name in multi):
        raise go_error(BAD_REQUEST, "invalid header name")
    # Go: HTTP/1.0 stays open only when the first Connection header has "keep-alive" (then
    # even with "close" beside it); HTTP/1.1 unless any Connection header has "close"
    connections = multi.get("connection", [])
    if version < (1, 1):
        keep_alive = bool(connections) and has_token(connections[0], "keep-alive")
    else:
        keep_alive = not any(has_token(value, "close") for value in connections)
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
        if not key:
            continue  # Go's textproto skips a header with an empty name
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
    if not colon or _NAME.fullmatch(name) is None:
        raise go_error(BAD_REQUEST)
    value = value.strip(b" \t")
    if _BAD_VALUE.search(value):
        raise go_error(BAD_REQUEST)
    return name.decode("latin-1").lower(), value.decode("latin-1")


_header_cached = functools.lru_cache(maxsize=4096)(_header)


def check_lines(data: bytes | bytearray, start: int, final: bool = False) -> int:
    """Check the whole lines of an unfinished head from ``start`` (where a line begins) as
    Go reads them, one at a time: raise ``HeadError`` with Go's answer for a bad one, else
    return where the next unchecked line starts. ``final`` (the client closed): the last,
    unterminated line is checked too, as Go's reader hands it over at end of input."""
    request_end = data.find(b"\n")
    pos = start
    while pos < len(data):
        newline = data.find(b"\n", pos)
        if newline < 0 and not final:
            break
        end = len(data) if newline < 0 else newline
        line = bytes(data[pos:end])
        if newline >= 0 and line.endswith(b"\r"):
            line = line[:-1]
        if pos == 0:
            _request_line(line)
        elif line[:1] in (b" ", b"\t"):
            if pos == request_end + 1 or _BAD_VALUE.search(line.strip(b" \t")):
                raise go_error(BAD_REQUEST)  # Go: malformed MIME header (initial) line
        elif line:
            _header_cached(line) if len(line) <= 256 else _header(line)
        pos = end + 1
    return min(pos, len(data))


def has_token(value: str, token: str) -> bool:
    """Go's ``hasToken``: ``token`` (lower case), any case, between the start or end,
    spaces, tabs and commas.

    >>> has_token("Upgrade, Close", "close"), has_token("xclose", "close")
    (True, False)
    """
    text = value.lower()
    start = text.find(token)
    while start >= 0:
        end = start + len(token)
        if ((start == 0 or text[start - 1] in " ,\t")
                and (end == len(text) or text[end] in " ,\t")):
            return True
        start = text.find(token, start + 1)
    return False


def expects_continue(expect: str) -> bool:
    """Go's ``Request.expectsContinue``.

    >>> expects_continue("100-Continue"), expects_continue("x100-continue")
    (True, False)
    """
    return has_token(expect, "100-continue")


def _target(method: bytes, target: bytes) -> tuple[str, bytes]:
    """(decoded path, raw query) as Go's ``url.ParseRequestURI`` gives them."""
    if method == b"CONNECT" and not target.startswith(b"/"):
        target = b"http://" + target  # authority form, read as Go does: "http://" put before
    if not target or _CTL.search(target):
        raise go_error(BAD_REQUEST)
    if target == b"*":
        return "*", b""
    rest, _, query = target.partition(b"?")
    if not rest.startswith(b"/"):
        scheme = _SCHEME.match(rest)
        if scheme is None:
            raise go_error(BAD_REQUEST)  # Go: invalid URI for request
        after = rest[scheme.end():]
        if not after.startswith(b"/"):
            return "", query  # "scheme:rest": an opaque URL, its path empty
        if not after.startswith(b"//"):
            after = b"//" + after  # "scheme:/path": no authority
        authority_and_path = after[2:]
        slash = authority_and_path.find(b"/")
        rest = authority_and_path[slash:] if slash >= 0 else b""
        if not _valid_authority(authority_and_path[:slash] if slash >= 0
                                else authority_and_path):
            raise go_error(BAD_REQUEST)
    if _BAD_ESCAPE.search(rest):
        raise go_error(BAD_REQUEST)
    return unquote_to_bytes(rest).decode("latin-1"), query


_PATH_KEEP = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
                       b"-_.~$&+,/:;=@")  # what Go's escape(s, encodePath) leaves as is
_VALID_ENCODED = _PATH_KEEP | frozenset(b"!'()*[]%")  # validEncoded(s, encodePath)


def go_escape_path(raw: bytes) -> str:
    """Go's ``url.PathEscape``-like ``escape(s, encodePath)``: ``%`` itself is escaped.

    >>> go_escape_path(b'/%72a "x"')
    '/%2572a%20%22x%22'
    """
    return "".join(chr(byte) if byte in _PATH_KEEP else f"%{byte:02X}" for byte in raw)


def _raw_path(target: bytes) -> tuple[bytes, str]:
    """(the path as sent, ``scheme://authority`` of an absolute-form target or "")."""
    rest = target.partition(b"?")[0]
    if rest.startswith(b"/"):
        return rest, ""
    scheme = _SCHEME.match(rest)
    after = rest[scheme.end():] if scheme is not None else b""
    if scheme is None or not after.startswith(b"/"):
        return b"", ""
    if not after.startswith(b"//"):
        return after, rest[:scheme.end()].lower().decode("latin-1")
    slash = after.find(b"/", 2)
    authority = after[:slash] if slash >= 0 else after
    return (after[slash:] if slash >= 0 else b""), (
        rest[:scheme.end()].lower() + authority).decode("latin-1")


def go_redirect(target: bytes, path: str) -> tuple[bool, str] | None:
    """``_go_redirect``, cached for the targets a gateway repeats."""
    if len(target) <= CACHED_HEAD_BYTES:
        return _go_redirect_cached(target, path)
    return _go_redirect(target, path)


def _go_redirect(target: bytes, path: str) -> tuple[bool, str] | None:
    """Whether the Go service redirects this (non-CONNECT) request, and where to. Go's
    ``ServeMux`` first cleans the *escaped* path (``%2e`` is not a dot) and redirects to it,
    escaping it once more (``//%72x`` goes to ``/%2572x``): ``(True, path)``. Then
    gorilla/mux cleans the decoded path and redirects to the URL with it (scheme and host of
    an absolute-form target kept): ``(False, url without the query)``. ``None``: served."""
    if path == "*":
        return None
    raw, origin = _raw_path(target)
    valid = all(byte in _VALID_ENCODED for byte in raw)
    escaped = raw.decode("latin-1") if valid else go_escape_path(path.encode("latin-1"))
    cleaned = clean_path(escaped)
    if cleaned != escaped:
        return True, go_escape_path(cleaned.encode("latin-1"))
    cleaned = clean_path(path)
    if cleaned != path:
        return False, origin + go_escape_path(cleaned.encode("latin-1"))
    return None


_go_redirect_cached = functools.lru_cache(maxsize=4096)(_go_redirect)


def connect_redirect(target: bytes, path: str) -> str | None:
    """Where the Go service redirects a CONNECT request (``None``: served). Its ServeMux
    does not clean CONNECT paths; it only sends an empty one to ``/``. gorilla/mux cleans
    the decoded path and keeps the authority: ``CONNECT h:1/./x`` goes to ``//h:1/x``."""
    if not path:
        return "/"
    cleaned = clean_path(path)
    if cleaned == path:
        return None
    authority = b""
    if not target.startswith(b"/"):
        authority = b"//" + target.partition(b"?")[0].partition(b"/")[0]
    return authority.decode("latin-1") + go_escape_path(cleaned.encode("latin-1"))


def _valid_authority(authority: bytes) -> bool:
    """Whether Go's ``url.Parse`` accepts this ``[userinfo@]host[:port]``."""
    userinfo, at, host = authority.rpartition(b"@")
    if at and (_USERINFO.fullmatch(userinfo) is None or _BAD_ESCAPE.search(userinfo)):
        return False
    if host.startswith(b"["):
        close = host.rfind(b"]")
        if close < 0 or _PORT.fullmatch(host[close + 1:]) is None:
            return False
    elif (colon := host.rfind(b":")) >= 0 and _PORT.fullmatch(host[colon:]) is None:
        return False
    return _URL_HOST.fullmatch(host) is not None


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


class BodyError(ValueError):
    """A chunked body Go's reader refuses. It is not Go's server refusing the request: the
    handler sees a read error (the report handler answers 400) and the connection closes."""


MAX_CHUNK_LINE = 4096  # Go's maxLineLength for a chunk-size line
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")


class ChunkedBody:
    """A chunked body read as it arrives, by Go's rules (net/http/internal/chunked.go): a
    size line is 1 to 16 hex digits, trailing white space and a ``;`` extension ignored; the
    data ends with CRLF exactly; at most 16 KiB of framing beyond 16 bytes per chunk plus
    twice its data; after the last chunk, CRLF or trailer lines up to a blank line. Each
    ``read`` looks only at what is new (a body dripped a byte at a time costs no rescans).
    ``BodyError`` for bad framing."""

    def __init__(self, start: int) -> None:
        self.pos = start  # where reading resumes: a chunk-size line, or the trailers
        self.parts: list[bytes] = []
        self.size = 0
        self.end = -1  # where the message ends, once complete
        self.in_trailers = False
        self.excess = 0  # Go's count of framing bytes beyond what it tolerates

    @property
    def body(self) -> bytes:
        return b"".join(self.parts)

    def read(self, data: bytes | bytearray) -> bool:
        """Go on reading ``data`` (the same buffer, grown); True once the body is complete."""
        pos = self.pos
        while True:
            if self.in_trailers:
                self.pos = pos
                return self._trailers(data, pos)
            line_end = data.find(b"\n", pos, pos + MAX_CHUNK_LINE)
            if line_end < 0:
                if len(data) - pos >= MAX_CHUNK_LINE:
                    raise BodyError("chunk line too long")
                self.pos = pos
                return False
            line = bytes(data[pos:line_end + 1])
            if len(line) >= MAX_CHUNK_LINE:
                raise BodyError("chunk line too long")
            size_text = line.rstrip(b" \t\r\n\v\f").split(b";", 1)[0]
            if _HEX.fullmatch(size_text) is None:
                raise BodyError("invalid chunk length")
            size = int(size_text, 16)
            excess = max(self.excess + len(line) + 2 - 16 - 2 * size, 0)
            if excess > 16 * 1024:
                raise BodyError("chunked encoding contains too much non-data")
            if size == 0:
                self.excess, pos, self.in_trailers = excess, line_end + 1, True
                continue
            start = line_end + 1
            if len(data) < start + size + 2:
                self.pos = pos  # the chunk is not all here: its size line is read again
                return False
            if data[start + size:start + size + 2] != b"\r\n":
                raise BodyError("malformed chunked encoding")
            self.excess = excess
            self.parts.append(bytes(data[start:start + size]))
            self.size += size
            pos = start + size + 2

    def _trailers(self, data: bytes | bytearray, pos: int) -> bool:
        if len(data) < pos + 2:
            return False
        if data[pos:pos + 2] == b"\r\n":
            self.end = pos + 2
            return True
        end = data.find(b"\r\n\r\n", pos)
        if end < 0:
            return False
        lines = bytes(data[pos:end]).split(b"\n")
        try:  # trailer lines are read as header lines
            _headers([line[:-1] if line.endswith(b"\r") else line for line in lines])
        except HeadError:
            raise BodyError("malformed trailer") from None
        self.end = end + 4
        return True
