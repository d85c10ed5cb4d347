"""Differential suite: ``serve`` answers as the ASM service does, byte for byte, on both backends.

Every case is a fact measured against the ASM example service itself (its Go source built and
run beside ``serve``); see issue 12 and /work/shared/ASM-SEMANTICS.md. Requests go over raw
sockets so that what is sent and what comes back are exact bytes. Each test runs against the
memory store and against a real redis-server.
"""

from __future__ import annotations

import asyncio
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

    def exchange(self, request: bytes) -> bytes:
        """Send ``request``, read until the server closes (requests ask it to)."""
        with socket.create_connection(("127.0.0.1", self.svc.port), timeout=10) as sock:
            sock.sendall(request)
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
    assert answer == (b"HTTP/1.1 417 Expectation Failed\r\nContent-Length: 0\r\n"
                      b"Connection: close\r\n\r\n")


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
    assert answer == (b"HTTP/1.0 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n"
                      b"Content-Length: 33\r\n\r\n" + ALLOW_BODY)
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
