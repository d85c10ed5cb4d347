"""Differential suite: ``serve`` answers as the ASM service does, byte for byte, on both backends.

Every case is a fact measured against the ASM example service itself (its Go source built and
run beside ``serve``); see issue 12 and /work/shared/ASM-SEMANTICS.md. Requests go over raw
sockets so that what is sent and what comes back are exact bytes. Each test runs against the
memory store and against a real redis-server.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.conftest import RedisServer, start_redis
from tests.service.redis_helpers import redis_call
from tokenlimit.rules.model import Rule
from tokenlimit.service import BackendConfig, running_service
from tokenlimit.service.runner import RunningService

RULES = (Rule(0, "regular-user.*", 200, 50, 30, 300),)
ALLOW_BODY = b'{"allow":true,"description":"ok"}'
GO_400 = (b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
          b"Connection: close\r\n\r\n400 Bad Request")
ALLOW_ANSWER = (b"HTTP/1.1 200 OK\r\nDate: *\r\nContent-Length: 33\r\nContent-Type: "
                b"text/plain; charset=utf-8\r\nConnection: close\r\n\r\n" + ALLOW_BODY)
_DATE = re.compile(rb"Date: (Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|"
                   rb"Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d GMT\r\n")


def undated(answer: bytes) -> bytes:
    """``answer`` with each ``Date`` header (Go's format, checked) written ``Date: *``."""
    return _DATE.sub(b"Date: *\r\n", answer)


@dataclass
class Target:
    """A running service and a way to read the state it left."""

    svc: RunningService
    redis: RedisServer | None

    def stored(self, key: str) -> int | None:
        if self.redis is None:
            store = self.svc.app.store
            return store.keyspace.values.get(key)  # type: ignore[attr-defined,no-any-return]
        value = asyncio.run(redis_call(self.redis.port, "GET", key.encode()))
        return None if value is None else int(value)

    def exchange(self, request: bytes, half_close: bool = False) -> bytes:
        """Send ``request``, read until the server closes (requests ask it to, or the
        client half-closes its side with ``half_close``)."""
        with socket.create_connection(("127.0.0.1", self.svc.port), timeout=10) as sock:
            sock.sendall(request)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
            received = b""
            while chunk := sock.recv(1 << 16):
                received += chunk
            return received


@pytest.fixture(params=["memory", "redis"])
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    redis = start_redis() if request.param == "redis" else None
    backend = BackendConfig() if redis is None else BackendConfig("redis", port=redis.port)
    try:
        with running_service(RULES, backend=backend) as svc:
            yield Target(svc, redis)
    finally:
        if redis is not None:
            redis.stop()


def get(target: str, extra: bytes = b"") -> bytes:
    return (b"GET " + target.encode() + b" HTTP/1.1\r\nHost: rl\r\nConnection: close\r\n"
            + extra + b"\r\n")


def post(path: str, body: bytes) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: rl\r\nConnection: close\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def parse(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(": ")
        headers[name.lower()] = value
    return int(lines[0].split(" ")[1]), headers, body


def status_body(answer: bytes) -> tuple[int, str | None, bytes]:
    status, headers, body = parse(answer)
    return status, headers.get("content-type"), body


def report_body(completion: bytes, keys: bytes = b'["regular-user"]') -> bytes:
    return b'{"ratelimit_keys":' + keys + b',"completion_tokens":' + completion + b"}"


# Decoding
def test_each_invalid_utf8_byte_of_a_key_is_its_own_replacement(target: Target) -> None:
    answer = target.exchange(get("/ratelimit?ratelimit_keys=%5B%22regular-user-%E2%82%22%5D"))
    assert status_body(answer) == (200, "text/plain; charset=utf-8", ALLOW_BODY)
    assert target.stored("regular-user-\ufffd\ufffd") == 50
    assert target.stored("regular-user-\ufffd") is None


@pytest.mark.parametrize("body", [
    b'{"completion_tokens":"x","completion_tokens":70,"ratelimit_keys":["regular-user"]}',
    b'{"ratelimit_keys":5,"ratelimit_keys":["regular-user"],"completion_tokens":70}',
])
def test_a_wrong_typed_first_field_is_400_and_charges_nothing(target: Target,
                                                              body: bytes) -> None:
    target.exchange(get('/ratelimit?ratelimit_keys=["regular-user"]'))
    answer = target.exchange(post("/update_ratelimit_record", body))
    assert status_body(answer) == (400, None, b"")
    assert target.stored("regular-user") == 50


def test_nesting_of_ten_thousand_levels_is_read(target: Target) -> None:
    target.exchange(get('/ratelimit?ratelimit_keys=["regular-user"]'))
    deep = b"[" * 9_999 + b"]" * 9_999  # 10,000 levels with the object around it
    body = b'{"ignored":' + deep + b',"ratelimit_keys":["regular-user"],"completion_tokens":20}'
    assert status_body(target.exchange(post("/update_ratelimit_record", body))) == (
        200, None, b"")
    assert target.stored("regular-user") == 30
    too_deep = b"[" * 10_000 + b"]" * 10_000
    body = b'{"ignored":' + too_deep + b',"ratelimit_keys":["regular-user"]}'
    assert status_body(target.exchange(post("/update_ratelimit_record", body)))[0] == 400


def test_numbers_with_thousands_of_digits_are_type_errors(target: Target) -> None:
    target.exchange(get('/ratelimit?ratelimit_keys=["regular-user"]'))
    for number in (b"9" * 5000, b"-" + b"9" * 5000, b"1" + b"0" * 4000 + b".5"):
        answer = target.exchange(post("/update_ratelimit_record", report_body(number)))
        assert status_body(answer) == (400, None, b"")
        keys = b"%5B" + number + b"%5D"
        assert status_body(target.exchange(get("/ratelimit?ratelimit_keys=" + keys.decode())))[
            2] == ALLOW_BODY
    assert target.stored("regular-user") == 50


def test_a_hash_stays_in_the_query_value(target: Target) -> None:
    answer = target.exchange(get('/ratelimit?ratelimit_keys=["regular-user"]#x'))
    assert status_body(answer) == (200, "text/plain; charset=utf-8", ALLOW_BODY)
    assert target.stored("regular-user") is None  # invalid JSON: no keys


def test_request_targets_up_to_go_s_header_limit_are_served(target: Target) -> None:
    pad = "p" * (900 * 1024)
    answer = target.exchange(get(f'/ratelimit?pad={pad}&ratelimit_keys=["regular-user"]'))
    assert status_body(answer) == (200, "text/plain; charset=utf-8", ALLOW_BODY)
    assert target.stored("regular-user") == 50
    pad = "p" * ((1 << 20) + 4096)
    assert target.exchange(get(f"/ratelimit?pad={pad}")) == (
        b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain; "
        b"charset=utf-8\r\nConnection: close\r\n\r\n431 Request Header Fields Too Large")


def test_a_report_that_would_overflow_int64_is_500(target: Target) -> None:
    target.exchange(get('/ratelimit?ratelimit_keys=["regular-user"]'))  # balance 50
    for tokens in (b"-9223372036854775807", b"-9223372036854775808"):
        answer = target.exchange(post("/update_ratelimit_record", report_body(tokens)))
        assert status_body(answer) == (500, None, b"")
    assert target.stored("regular-user") == 50


# The HTTP layer, as Go's net/http
@pytest.mark.parametrize("method", [b"get", b"FOO", b"POST", b"M-SEARCH"])
def test_any_method_token_reaches_the_handler(target: Target, method: bytes) -> None:
    request = method + b' /ratelimit?ratelimit_keys=["regular-user"] HTTP/1.1\r\nHost: rl\r\n' \
        b"Connection: close\r\n\r\n"
    assert status_body(target.exchange(request)) == (200, "text/plain; charset=utf-8",
                                                     ALLOW_BODY)


@pytest.mark.parametrize(("request_bytes", "answer"), [
    (b"GET /ratelimit HTTP/1.1\r\n\r\n",
     b"HTTP/1.1 400 Bad Request: missing required Host header\r\nContent-Type: text/plain; "
     b"charset=utf-8\r\nConnection: close\r\n\r\n400 Bad Request: missing required Host header"),
    (b"GET /ratelimit HTTP/2.0\r\nHost: rl\r\n\r\n",
     b"HTTP/1.1 505 HTTP Version Not Supported: unsupported protocol version\r\nContent-Type: "
     b"text/plain; charset=utf-8\r\nConnection: close\r\n\r\n505 HTTP Version Not Supported: "
     b"unsupported protocol version"),
    (b"GET /%zzratelimit HTTP/1.1\r\nHost: rl\r\n\r\n", GO_400),
    (b"G(T /ratelimit HTTP/1.1\r\nHost: rl\r\n\r\n", GO_400),
    (b"GET /ratelimit HTTP/1.1\r\nHost: rl\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
     GO_400),
    (b"NOT HTTP AT ALL\r\n\r\n", GO_400),
    (b"POST /update_ratelimit_record HTTP/1.1\r\nHost: rl\r\nTransfer-Encoding: gzip\r\n\r\n",
     b"HTTP/1.1 501 Not Implemented\r\nContent-Type: text/plain; charset=utf-8\r\n"
     b"Connection: close\r\n\r\nUnsupported transfer encoding"),
])
def test_requests_go_refuses_get_go_s_exact_answer(target: Target, request_bytes: bytes,
                                                   answer: bytes) -> None:
    assert target.exchange(request_bytes) == answer


def test_an_expectation_other_than_100_continue_is_417(target: Target) -> None:
    answer = target.exchange(b"GET /ratelimit HTTP/1.1\r\nHost: rl\r\nExpect: teapot\r\n\r\n")
    assert undated(answer) == (b"HTTP/1.1 417 Expectation Failed\r\nConnection: close\r\n"
                               b"Date: *\r\nContent-Length: 0\r\n\r\n")


def test_options_star_is_200_and_empty(target: Target) -> None:
    answer = target.exchange(b"OPTIONS * HTTP/1.1\r\nHost: rl\r\nConnection: close\r\n\r\n")
    status, headers, body = parse(answer)
    assert (status, headers["content-length"], body) == (200, "0", b"")


@pytest.mark.parametrize(("path", "location"), [
    ("//ratelimit", "/ratelimit?ratelimit_keys=[]"),
    ("/./ratelimit", "/ratelimit?ratelimit_keys=[]"),
    ("/x/../ratelimit", "/ratelimit?ratelimit_keys=[]"),
])
def test_unclean_paths_redirect_to_the_clean_one(target: Target, path: str,
                                                 location: str) -> None:
    status, headers, body = parse(target.exchange(get(f"{path}?ratelimit_keys=[]")))
    assert (status, headers["location"]) == (301, location)
    assert body == f'<a href="{location}">Moved Permanently</a>.\n\n'.encode()
    assert headers["content-type"] == "text/html; charset=utf-8"


def test_connect_redirects_to_the_root(target: Target) -> None:
    status, headers, body = parse(target.exchange(
        b"CONNECT rl:443 HTTP/1.1\r\nConnection: close\r\n\r\n"))
    assert (status, headers["location"], body) == (301, "/", b"")


def test_percent_encoded_paths_route_decoded(target: Target) -> None:
    answer = target.exchange(get('/%72atelimit?ratelimit_keys=["regular-user"]'))
    assert status_body(answer) == (200, "text/plain; charset=utf-8", ALLOW_BODY)
    assert target.stored("regular-user") == 50


def test_identical_content_lengths_and_raw_utf8_targets_are_accepted(target: Target) -> None:
    body = report_body(b"5")
    request = (b"POST /update_ratelimit_record HTTP/1.1\r\nHost: rl\r\nConnection: close\r\n"
               + f"Content-Length: {len(body)}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
               + body)
    target.exchange(get('/ratelimit?ratelimit_keys=["regular-user"]'))
    assert status_body(target.exchange(request)) == (200, None, b"")
    assert target.stored("regular-user") == 45
    answer = target.exchange(get('/ratelimit?ratelimit_keys=["regular-user-é"]'))
    assert status_body(answer) == (200, "text/plain; charset=utf-8", ALLOW_BODY)
    assert target.stored("regular-user-é") == 50


def test_unknown_paths_are_go_s_404(target: Target) -> None:
    status, headers, body = parse(target.exchange(get("/nothing")))
    assert (status, body) == (404, b"404 page not found\n")
    assert headers["content-type"] == "text/plain; charset=utf-8"
    assert headers["x-content-type-options"] == "nosniff"


def test_chunked_reports_are_read(target: Target) -> None:
    body = report_body(b"10")
    request = (b"POST /update_ratelimit_record HTTP/1.1\r\nHost: rl\r\nConnection: close\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n"
               + f"{len(body) - 5:x}\r\n".encode() + body[:-5] + b"\r\n"
               + b"5\r\n" + body[-5:] + b"\r\n0\r\n\r\n")
    target.exchange(get('/ratelimit?ratelimit_keys=["regular-user"]'))
    assert status_body(target.exchange(request)) == (200, None, b"")
    assert target.stored("regular-user") == 40


def test_pipelined_requests_are_answered_in_order(target: Target) -> None:
    one = b'GET /ratelimit?ratelimit_keys=["regular-user"] HTTP/1.1\r\nHost: rl\r\n\r\n'
    bad = b"GET /ratelimit HTTP/1.1\r\n\r\n"
    answer = target.exchange(one * 3 + bad)
    assert answer.count(ALLOW_BODY) == 3
    assert answer.endswith(b"400 Bad Request: missing required Host header")


@pytest.mark.parametrize("backend_name", ["memory", "redis"])
def test_a_debt_past_minus_1e17_is_not_the_services_crash(backend_name: str) -> None:
    """Declared difference: the ASM service stores a refilled balance at or below about -1e17
    as float text and every later report on the key fails (500). serve keeps an integer."""
    from tokenlimit.service import ManualClock

    redis = start_redis() if backend_name == "redis" else None
    backend = BackendConfig() if redis is None else BackendConfig("redis", port=redis.port)
    clock = ManualClock(float(int(time.time()) + 5))
    try:
        with running_service(RULES, backend=backend, clock=clock) as svc:
            target = Target(svc, redis)
            target.exchange(get('/ratelimit?ratelimit_keys=["regular-user"]'))
            debt = report_body(b"200000000000000000")
            assert status_body(target.exchange(post("/update_ratelimit_record", debt)))[0] == 200
            clock.advance(30)  # one refill: the script rewrites the balance
            answer = target.exchange(get('/ratelimit?ratelimit_keys=["regular-user"]'))
            assert status_body(answer)[2] == (
                b'{"allow":false,"description":"regular-user is being rate-limited"}')
            assert status_body(target.exchange(post("/update_ratelimit_record",
                                                    report_body(b"1"))))[0] == 200
            balance = target.stored("regular-user")
            assert balance is not None and abs(balance - (-2 * 10**17 + 99)) < 1000
    finally:
        if redis is not None:
            redis.stop()


def test_http_1_0_is_answered_in_http_1_0(target: Target) -> None:
    answer = target.exchange(b'GET /ratelimit?ratelimit_keys=["regular-user"] HTTP/1.0\r\n\r\n')
    assert undated(answer) == (b"HTTP/1.0 200 OK\r\nDate: *\r\nContent-Length: 33\r\n"
                               b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + ALLOW_BODY)
    with socket.create_connection(("127.0.0.1", target.svc.port), timeout=10) as sock:
        sock.sendall(b"GET /nothing HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        status, headers, _ = parse(sock.recv(4096))
        assert (status, headers["connection"]) == (404, "keep-alive")


def test_memory_keys_live_through_the_millisecond_of_their_deadline() -> None:
    from tokenlimit.service import ManualClock

    clock = ManualClock(1_700_000_000.0004)  # keys written 0.4 ms into a millisecond
    with running_service(RULES, clock=clock) as svc:
        target = Target(svc, None)
        for key in ("regular-user-a", "regular-user-b"):
            target.exchange(get(f'/ratelimit?ratelimit_keys=["{key}"]'))
            target.exchange(post("/update_ratelimit_record",
                                 report_body(b"10", f'["{key}"]'.encode())))
        clock.set(1_700_000_300.0009)  # the deadline's millisecond, 0.5 ms past t + ttl
        target.exchange(get('/ratelimit?ratelimit_keys=["regular-user-a"]'))
        assert target.stored("regular-user-a") == 200  # alive: refilled (40 + 10 x 50, capped)
        clock.set(1_700_000_300.0010)
        target.exchange(get('/ratelimit?ratelimit_keys=["regular-user-b"]'))
        assert target.stored("regular-user-b") == 50  # expired: starts again, debt forgiven


def test_the_memory_store_refuses_new_keys_past_its_limit_as_redis_maxmemory_does() -> None:
    from tokenlimit.service import ManualClock

    clock = ManualClock(1_700_000_000.0)
    rules = (Rule(0, "regular-user.*", 200, 50, 30, 2),)
    backend = BackendConfig(memory_limit=64 * 1024)
    with running_service(rules, backend=backend, clock=clock) as svc:
        target = Target(svc, None)
        statuses = [status_body(target.exchange(get(
            f'/ratelimit?ratelimit_keys=["regular-user-{i}-{"x" * 900}"]')))[0]
            for i in range(60)]
        assert statuses[:20] == [200] * 20 and statuses[-1] == 400  # no room: script error
        refused = statuses.index(400)
        assert set(statuses[refused:]) == {400}
        longer = ('["regular-user-new-' + "x" * 1000 + '"]').encode()  # more than is left
        assert status_body(target.exchange(post("/update_ratelimit_record",
                                                report_body(b"1", longer))))[0] == 500
        first = f'regular-user-0-{"x" * 900}'
        answer = target.exchange(get(f'/ratelimit?ratelimit_keys=["{first}"]'))
        assert status_body(answer)[0] == 200  # existing keys still work
        clock.advance(3)  # past the TTL: the sweeper frees the keys, room again
        time.sleep(0.3)
        answer = target.exchange(get('/ratelimit?ratelimit_keys=["regular-user-later"]'))
        assert status_body(answer) == (200, "text/plain; charset=utf-8", ALLOW_BODY)


def test_a_chunked_report_dripped_byte_by_byte_with_trailers(target: Target) -> None:
    body = report_body(b"7")
    request = (b"POST /update_ratelimit_record HTTP/1.1\r\nHost: rl\r\nConnection: close\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n"
               + b"".join(f"{len(body[i:i + 9]):x};ext=1\r\n".encode() + body[i:i + 9] + b"\r\n"
                          for i in range(0, len(body), 9))
               + b"0\r\nX-Trailer: yes\r\n\r\n")
    target.exchange(get('/ratelimit?ratelimit_keys=["regular-user"]'))
    with socket.create_connection(("127.0.0.1", target.svc.port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for index in range(len(request)):
            sock.sendall(request[index:index + 1])
            if index % 16 == 0:
                time.sleep(0.001)  # let the server read the pieces separately
        received = b""
        while chunk := sock.recv(4096):
            received += chunk
    assert status_body(received) == (200, None, b"")
    assert target.stored("regular-user") == 43


# Checked call for call against the ASM service built from its Go source (Go 1.22 net/http,
# gorilla/mux): the exact bytes it wrote, its Date header written "Date: *".
KEYS = b'/ratelimit?ratelimit_keys=["regular-user"]'


@pytest.mark.parametrize(("request_bytes", "answer"), [
    (b"GET " + KEYS + b" HTTP/1.1\r\nHost: rl\r\nConnection: close\r\n\r\n", ALLOW_ANSWER),
    (b"GET /nothing HTTP/1.1\r\nHost: rl\r\nConnection: close\r\n\r\n",
     b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\n"
     b"X-Content-Type-Options: nosniff\r\nDate: *\r\nContent-Length: 19\r\n"
     b"Connection: close\r\n\r\n404 page not found\n"),
    (b"GET //ratelimit?ratelimit_keys=[] HTTP/1.1\r\nHost: rl\r\nConnection: close\r\n\r\n",
     b"HTTP/1.1 301 Moved Permanently\r\nContent-Type: text/html; charset=utf-8\r\n"
     b"Location: /ratelimit?ratelimit_keys=[]\r\nDate: *\r\nContent-Length: 63\r\n"
     b"Connection: close\r\n\r\n"
     b'<a href="/ratelimit?ratelimit_keys=[]">Moved Permanently</a>.\n\n'),
    (b"HEAD //ratelimit?ratelimit_keys=[] HTTP/1.1\r\nHost: rl\r\nConnection: close\r\n\r\n",
     b"HTTP/1.1 301 Moved Permanently\r\nContent-Type: text/html; charset=utf-8\r\n"
     b"Location: /ratelimit?ratelimit_keys=[]\r\nDate: *\r\nConnection: close\r\n\r\n"),
    (b"POST //ratelimit?ratelimit_keys=[] HTTP/1.1\r\nHost: rl\r\nConnection: close\r\n"
     b"Content-Length: 2\r\n\r\n{}",
     b"HTTP/1.1 301 Moved Permanently\r\nLocation: /ratelimit?ratelimit_keys=[]\r\n"
     b"Date: *\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
    (b"GET //ratelimit?k=[\"a\",\'b\'<&> HTTP/1.0\r\n\r\n",
     b"HTTP/1.0 301 Moved Permanently\r\nContent-Type: text/html; charset=utf-8\r\n"
     b"Location: /ratelimit?k=[\"a\",\'b\'<&>\r\nDate: *\r\nContent-Length: 85\r\n\r\n"
     b'<a href="/ratelimit?k=[&#34;a&#34;,&#39;b&#39;&lt;&amp;&gt;">Moved Permanently</a>.\n\n'),
    (b"CONNECT rl:443 HTTP/1.1\r\nConnection: close\r\n\r\n",
     b"HTTP/1.1 301 Moved Permanently\r\nLocation: /\r\nDate: *\r\nContent-Length: 0\r\n"
     b"Connection: close\r\n\r\n"),
    (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
     b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nDate: *\r\nContent-Length: 0\r\n\r\n"),
    (b"GET * HTTP/1.1\r\nHost: rl\r\n\r\n",
     b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nDate: *\r\nContent-Length: 0\r\n\r\n"),
    (b"OPTIONS * HTTP/1.1\r\nHost: rl\r\nConnection: close\r\n\r\n",
     b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nDate: *\r\nConnection: close\r\n\r\n"),
    (b"GET /ratelimit HTTP/1.1\r\nHost: rl\r\nHost: rl\r\n\r\n", GO_400),
    (b"GET /ratelimit HTTP/1.1\r\nHost: r l\r\n\r\n",
     b"HTTP/1.1 400 Bad Request: malformed Host header\r\nContent-Type: text/plain; "
     b"charset=utf-8\r\nConnection: close\r\n\r\n400 Bad Request: malformed Host header"),
    (b"GET /ratelimit HTTP/1.1\r\nHost: rl\r\nX-A : 1\r\n\r\n",
     b"HTTP/1.1 400 Bad Request: invalid header name\r\nContent-Type: text/plain; "
     b"charset=utf-8\r\nConnection: close\r\n\r\n400 Bad Request: invalid header name"),
    (b"GET " + KEYS + b" HTTP/1.1\r\nHost: rl\r\n: empty name\r\nConnection: close\r\n\r\n",
     ALLOW_ANSWER),
    (b"GET " + KEYS + b" HTTP/1.1\r\nHost: rl\r\nX-A: 1\r\n 2\r\nConnection: close\r\n\r\n",
     ALLOW_ANSWER),
    (b"GET /ratelimit HTTP/1.1\r\n X: 1\r\nHost: rl\r\n\r\n", GO_400),
    (b"POST /update_ratelimit_record HTTP/1.1\r\nHost: a\r\nHost: b\r\n"
     b"Transfer-Encoding: gzip\r\n\r\n", GO_400),
    (b"HEAD /update_ratelimit_record HTTP/1.1\r\nHost: rl\r\nConnection: close\r\n\r\n",
     b"HTTP/1.1 400 Bad Request\r\nDate: *\r\nConnection: close\r\n\r\n"),
    (b"GET /update_ratelimit_record HTTP/1.1\r\nHost: rl\r\nConnection: close\r\n\r\n",
     b"HTTP/1.1 400 Bad Request\r\nDate: *\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
    (b"GET * HTTP/1.0\r\n\r\n",
     b"HTTP/1.0 400 Bad Request\r\nDate: *\r\nContent-Length: 0\r\n\r\n"),
    (b"POST /update_ratelimit_record HTTP/1.1\r\nHost: rl\r\nConnection: close\r\n"
     b"Content-Length: 2\r\nExpect: 100-continue\r\n\r\n{}",
     b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nDate: *\r\n"
     b"Content-Length: 0\r\nConnection: close\r\n\r\n"),
    (b"POST /update_ratelimit_record HTTP/1.1\r\nHost: rl\r\nConnection: close\r\n"
     b"Content-Length: 2\r\nExpect: x100-continue\r\n\r\n{}",
     b"HTTP/1.1 417 Expectation Failed\r\nConnection: close\r\nDate: *\r\n"
     b"Content-Length: 0\r\n\r\n"),
    (b"GET " + KEYS + b" HTTP/1.1\r\nHost: rl\r\nConnection: close\r\n"
     b"Expect: 100-continue\r\n\r\n", ALLOW_ANSWER),
])
def test_answers_are_go_s_bytes(target: Target, request_bytes: bytes, answer: bytes) -> None:
    assert undated(target.exchange(request_bytes)) == answer


def test_a_report_expecting_100_continue_gets_it_and_the_connection_stays(
        target: Target) -> None:
    target.exchange(get('/ratelimit?ratelimit_keys=["regular-user"]'))
    body = report_body(b"3")
    request = (b"POST /update_ratelimit_record HTTP/1.1\r\nHost: rl\r\nExpect: 100-continue\r\n"
               + f"Content-Length: {len(body)}\r\n\r\n".encode())
    with socket.create_connection(("127.0.0.1", target.svc.port), timeout=10) as sock:
        sock.sendall(request)  # the head only: the body waits for "100 Continue"
        assert sock.recv(4096) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body + get('/ratelimit?ratelimit_keys=["regular-user"]'))
        received = b""
        while chunk := sock.recv(4096):
            received += chunk
    assert undated(received) == (b"HTTP/1.1 200 OK\r\nDate: *\r\nContent-Length: 0\r\n\r\n"
                                 + ALLOW_ANSWER)
    assert target.stored("regular-user") == 47


def test_a_body_no_handler_reads_gets_no_100_continue_and_the_connection_closes(
        target: Target) -> None:
    """Go sends "100 Continue" only when the handler reads the body; /ratelimit does not, so
    Go answers at once, without waiting for the body, with "Connection: close"."""
    request = (b'POST /ratelimit?ratelimit_keys=["regular-user"] HTTP/1.1\r\nHost: rl\r\n'
               b"Content-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    with socket.create_connection(("127.0.0.1", target.svc.port), timeout=10) as sock:
        sock.sendall(request)
        received = b""
        while len(received) < len(ALLOW_ANSWER) + 30 and (chunk := sock.recv(4096)):
            received += chunk
    assert undated(received) == ALLOW_ANSWER
    assert target.stored("regular-user") == 50


def test_a_head_of_exactly_go_s_limit_is_served_one_byte_more_is_431(target: Target) -> None:
    limit = (1 << 20) + 4096  # Go counts the request line, headers and the blank line
    tail = b" HTTP/1.1\r\nHost: rl\r\nConnection: close\r\n\r\n"
    start = b"GET /ratelimit?pad="
    exact = start + b"p" * (limit - len(start) - len(tail)) + tail
    assert len(exact) == limit
    assert undated(target.exchange(exact)) == ALLOW_ANSWER
    over = start + b"p" * (limit + 1 - len(start) - len(tail)) + tail
    assert target.exchange(over) == (
        b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain; "
        b"charset=utf-8\r\nConnection: close\r\n\r\n431 Request Header Fields Too Large")


def chunked(chunks: bytes, path: bytes = b"/update_ratelimit_record") -> bytes:
    return (b"POST " + path + b" HTTP/1.1\r\nHost: rl\r\nTransfer-Encoding: chunked\r\n\r\n"
            + chunks)


READ_ERROR_400 = (b"HTTP/1.1 400 Bad Request\r\nDate: *\r\nContent-Length: 0\r\n"
                  b"Connection: close\r\n\r\n")


@pytest.mark.parametrize(("request_bytes", "answer"), [
    # Go's chunked reader: 1 to 16 hex digits, no "0x", no space before ";", CRLF after the
    # data, trailers as header lines. A bad body is a read error in the report handler (its
    # 400) and the connection closes; /ratelimit never reads it and answers, then closes.
    (chunked(b"0x2\r\n{}\r\n0\r\n\r\n"), READ_ERROR_400),
    (chunked(b"2 ;a=b\r\n{}\r\n0\r\n\r\n"), READ_ERROR_400),
    (chunked(b"2\n{}\n0\n\n"), READ_ERROR_400),
    (chunked(b"2\r\n{}\r\n0\r\nbad trailer\r\n\r\n"), READ_ERROR_400),
    (chunked(b"fffffffffffffffff\r\n"), READ_ERROR_400),
    (chunked(b"0x2\r\n{}\r\n0\r\n\r\n", KEYS), ALLOW_ANSWER),
    (chunked(b"2 \r\n{}\r\n0\r\nX-T: 1\r\n\r\n")
     + b"GET " + KEYS + b" HTTP/1.1\r\nHost: rl\r\nConnection: close\r\n\r\n",
     b"HTTP/1.1 200 OK\r\nDate: *\r\nContent-Length: 0\r\n\r\n" + ALLOW_ANSWER),
    # Connection tokens as Go's hasToken reads them
    (b"GET " + KEYS + b" HTTP/1.1\r\nHost: rl\r\nConnection: xclose\r\n\r\nGET " + KEYS
     + b" HTTP/1.1\r\nHost: rl\r\nConnection: upgrade, Close\r\n\r\n",
     ALLOW_ANSWER.replace(b"Connection: close\r\n", b"") + ALLOW_ANSWER),
    (b"GET " + KEYS + b" HTTP/1.0\r\nConnection: Keep-Alive, close\r\n\r\nGET " + KEYS
     + b" HTTP/1.0\r\n\r\n",
     b"HTTP/1.0 200 OK\r\nDate: *\r\nContent-Length: 33\r\nContent-Type: text/plain; "
     b"charset=utf-8\r\nConnection: keep-alive\r\n\r\n" + ALLOW_BODY
     + b"HTTP/1.0 200 OK\r\nDate: *\r\nContent-Length: 33\r\nContent-Type: text/plain; "
     b"charset=utf-8\r\n\r\n" + ALLOW_BODY),
    (b"GET " + KEYS + b" HTTP/1.1\r\nHost: rl\r\nConnection: keep-alive\r\n"
     b"Connection: close\r\n\r\n", ALLOW_ANSWER),
    # a body under Go's 256 KiB discard limit is skipped and the connection kept
    (b"GET " + KEYS + b" HTTP/1.1\r\nHost: rl\r\nContent-Length: 262143\r\n\r\n"
     + b"a" * 262143 + b"GET " + KEYS + b" HTTP/1.1\r\nHost: rl\r\nConnection: close\r\n\r\n",
     ALLOW_ANSWER.replace(b"Connection: close\r\n", b"") + ALLOW_ANSWER),
    # absolute-form targets: the authority as Go's url.Parse checks it
    (b"GET http://x:abc/ratelimit HTTP/1.1\r\nHost: rl\r\n\r\n", GO_400),
    (b"GET http://x|y/ratelimit HTTP/1.1\r\nHost: rl\r\n\r\n", GO_400),
    (b"GET http://u:p@x:80" + KEYS + b" HTTP/1.1\r\nHost: rl\r\nConnection: close\r\n\r\n",
     ALLOW_ANSWER),
])
def test_bodies_connections_and_targets_as_go(target: Target, request_bytes: bytes,
                                              answer: bytes) -> None:
    assert undated(target.exchange(request_bytes)) == answer


def test_a_body_from_go_s_discard_limit_up_is_not_waited_for(target: Target) -> None:
    """/ratelimit never reads its body; from 256 KiB on Go does not discard it either: it
    answers at once and closes."""
    with socket.create_connection(("127.0.0.1", target.svc.port), timeout=10) as sock:
        sock.sendall(b"GET " + KEYS + b" HTTP/1.1\r\nHost: rl\r\nContent-Length: 262144\r\n\r\n")
        received = b""
        while len(received) < len(ALLOW_ANSWER) + 30 and (chunk := sock.recv(4096)):
            received += chunk
    assert undated(received) == ALLOW_ANSWER



REPORT = b'{"ratelimit_keys":["regular-user"],"completion_tokens":3}'
POST_REPORT = (b"POST /update_ratelimit_record HTTP/1.1\r\nHost: rl\r\nContent-Length: "
               + str(len(REPORT)).encode() + b"\r\n\r\n" + REPORT)
GET_KEYS = b"GET " + KEYS + b" HTTP/1.1\r\nHost: rl\r\n\r\n"
KEEP_ALLOW = ALLOW_ANSWER.replace(b"Connection: close\r\n", b"")
KEEP_200 = b"HTTP/1.1 200 OK\r\nDate: *\r\nContent-Length: 0\r\n\r\n"


@pytest.mark.parametrize(("request_bytes", "answer"), [
    # what was sent whole is answered, then the connection closes
    (GET_KEYS, KEEP_ALLOW),
    (POST_REPORT, KEEP_200),
    # a next head of fewer than 4 bytes is never read (Go peeks 4 bytes first)
    (GET_KEYS + b"GET", KEEP_ALLOW),
    (GET_KEYS + b"}\r\n", KEEP_ALLOW),
    # from 4 bytes on, a head cut short is a 400, or the answer to its first bad line
    (GET_KEYS + b"GET / HTTP/1.1", KEEP_ALLOW + GO_400),
    (GET_KEYS + b"GET / HTTP/1.1\r\nHo st", KEEP_ALLOW + GO_400),
    (GET_KEYS + b"\r\n\r\n", KEEP_ALLOW + GO_400),
    # after a POST, up to 4 CR/LF bytes before the next request are skipped
    (POST_REPORT + b"\r\n\r\n", KEEP_200),
    (POST_REPORT + b"\r\n" + GET_KEYS, KEEP_200 + KEEP_ALLOW),
    # a report body cut short: the handler's 400, without "Connection: close"
    (POST_REPORT[:-5], b"HTTP/1.1 400 Bad Request\r\nDate: *\r\nContent-Length: 0\r\n\r\n"),
    # a body /ratelimit never reads, cut short: answered, "Connection: close"
    (b"POST " + KEYS + b" HTTP/1.1\r\nHost: rl\r\nContent-Length: 10\r\n\r\nabc", ALLOW_ANSWER),
    # a chunked body cut short: the report handler's 400, "Connection: close"
    (chunked(b"5\r\n{\"a\""), READ_ERROR_400),
])
def test_a_client_that_half_closes_is_answered_as_go_does(target: Target, request_bytes: bytes,
                                                         answer: bytes) -> None:
    assert undated(target.exchange(request_bytes, half_close=True)) == answer


def test_a_head_may_end_with_lf_crlf_and_a_bad_line_is_refused_before_the_head_ends(
        target: Target) -> None:
    request = b"GET " + KEYS + b" HTTP/1.1\r\nHost: rl\r\nConnection: close\n\r\n"
    assert undated(target.exchange(request)) == ALLOW_ANSWER
    with socket.create_connection(("127.0.0.1", target.svc.port), timeout=10) as sock:
        sock.sendall(b"GET /ratelimit HTTP/1.1\r\nHost: rl\r\nno colon here\r\n")  # no blank line
        received = b""
        while chunk := sock.recv(4096):
            received += chunk
    assert received == GO_400


def _get(target: bytes) -> bytes:
    return b"GET " + target + b" HTTP/1.1\r\nHost: rl\r\nConnection: close\r\n\r\n"


def _moved(location: bytes) -> bytes:
    """Go's ServeMux redirect (http.Redirect) of a GET."""
    body = b'<a href="' + location + b'">Moved Permanently</a>.\n\n'
    return (b"HTTP/1.1 301 Moved Permanently\r\nContent-Type: text/html; charset=utf-8\r\n"
            b"Location: " + location + b"\r\nDate: *\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)


def _gorilla(location: bytes) -> bytes:
    """gorilla/mux's redirect: Location only, no body."""
    return (b"HTTP/1.1 301 Moved Permanently\r\nLocation: " + location + b"\r\nDate: *\r\n"
            b"Content-Length: 0\r\nConnection: close\r\n\r\n")


@pytest.mark.parametrize(("request_bytes", "answer"), [
    # Go's ServeMux cleans the escaped path and escapes the result once more
    (_get(b"//%72atelimit"), _moved(b"/%2572atelimit")),
    (_get(b'//"x'), _moved(b"/%2522x")),
    (_get(b"//a%2Fb?q=1"), _moved(b"/a%252Fb?q=1")),
    (_get(b"//\xc3\xa9"), _moved(b"/%25C3%25A9")),
    # a dot escaped is no dot to ServeMux; gorilla/mux cleans the decoded path
    (_get(b"/%2e/ratelimit"), _gorilla(b"/ratelimit")),
    (_get(b"/x/..%2fratelimit?k=1"), _gorilla(b"/ratelimit?k=1")),
    (_get(b"http://h/%2e/ratelimit"), _gorilla(b"http://h/ratelimit")),
    # "scheme:/path" has a path; "scheme:rest" is opaque, its path empty
    (_get(b"http:/ratelimit?ratelimit_keys=%5B%22regular-user%22%5D"), ALLOW_ANSWER),
    (_get(b"mailto:x?y=1"), _moved(b"/?y=1")),
])
def test_redirects_as_go_s_two_routers(target: Target, request_bytes: bytes,
                                       answer: bytes) -> None:
    assert undated(target.exchange(request_bytes)) == answer


def _connect(target: bytes) -> bytes:
    return b"CONNECT " + target + b" HTTP/1.1\r\nHost: rl\r\nConnection: close\r\n\r\n"


@pytest.mark.parametrize(("request_bytes", "answer"), [
    # Go reads an authority-form target as "http://" + target; its ServeMux sends an empty
    # path to "/", gorilla/mux cleans the rest and keeps the authority
    (_connect(b"rl:443?k=1"), _gorilla(b"/?k=1")),
    (_connect(b"rl:443/./ratelimit?k=1"), _gorilla(b"//rl:443/ratelimit?k=1")),
    (_connect(b"http://x/ratelimit"), _gorilla(b"//http:/x/ratelimit")),
    (_connect(b"rl:443/%2e/x"), _gorilla(b"//rl:443/x")),
    (_connect(b"/./x"), _gorilla(b"/x")),
    (_connect(b"rl:443" + KEYS), ALLOW_ANSWER),
    (_connect(b"rl:abc/x"), GO_400),
])
def test_connect_as_go(target: Target, request_bytes: bytes, answer: bytes) -> None:
    assert undated(target.exchange(request_bytes)) == answer
