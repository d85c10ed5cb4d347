"""The service over HTTP with the memory store: the example's answers, exactly."""

from __future__ import annotations

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.service.helpers import RULES, T0, allowed, check, report
from tokenlimit.bucket.limiter import AsmLimiter
from tokenlimit.rules.model import Rule
from tokenlimit.service import ManualClock, ServiceOptions, running_service


def test_the_documented_walkthrough() -> None:
    clock = ManualClock(T0)
    with running_service(RULES, clock=clock) as svc, httpx.Client() as client:
        first = check(client, svc.url, ["regular-user"])
        assert first.status_code == 200
        assert first.content == b'{"allow":true,"description":"ok"}'
        assert first.headers["content-type"] == "text/plain; charset=utf-8"
        assert "retry-after" not in first.headers
        done = report(client, svc.url, ["regular-user"], 60)
        assert (done.status_code, done.content) == (200, b"")
        clock.advance(29)
        limited = check(client, svc.url, ["regular-user"])
        assert limited.content == (
            b'{"allow":false,"description":"regular-user is being rate-limited"}')
        clock.advance(1)  # one interval: -10 + 50 = 40
        assert allowed(check(client, svc.url, ["regular-user"]))
        assert svc.app.store.keyspace.get("regular-user", clock()) == 40  # type: ignore[attr-defined]


def test_keys_stop_at_the_first_limited_one() -> None:
    clock = ManualClock(T0)
    with running_service(RULES, clock=clock) as svc, httpx.Client() as client:
        keyspace = svc.app.store.keyspace  # type: ignore[attr-defined]
        check(client, svc.url, ["regular-user-a"])
        report(client, svc.url, ["regular-user-a"], 50)
        answer = check(client, svc.url, ["nobody", "regular-user-a", "subscriber-b"])
        assert answer.json() == {"allow": False,
                                 "description": "regular-user-a is being rate-limited"}
        assert keyspace.get("subscriber-b", clock()) is None  # never reached
        assert keyspace.get("nobody", clock()) is None  # matches no rule: nothing stored
        assert allowed(check(client, svc.url, ["subscriber-b", "nobody"]))
        assert keyspace.get("subscriber-b", clock()) == 100


def test_bad_inputs_answer_like_the_example() -> None:
    with running_service(RULES, clock=ManualClock(T0)) as svc, httpx.Client() as client:
        assert allowed(client.get(f"{svc.url}/ratelimit?ratelimit_keys=not-json"))
        assert allowed(client.post(f"{svc.url}/ratelimit"))  # any method, no keys
        for body in (b"{", b'{"completion_tokens":1.5}', b'{"ratelimit_keys":[1]}'):
            bad = client.post(f"{svc.url}/update_ratelimit_record", content=body)
            assert (bad.status_code, bad.content) == (400, b"")
        assert client.get(f"{svc.url}/update_ratelimit_record").status_code == 400  # empty body
        missing = client.get(f"{svc.url}/ratelimit/")
        assert (missing.status_code, missing.content) == (404, b"404 page not found\n")
        big = client.post(f"{svc.url}/update_ratelimit_record", content=b" " * (1 << 20 | 1))
        assert big.status_code == 413
        assert big.json() == {"error": "body larger than 1048576 bytes"}
        assert client.get(f"{svc.url}/healthz").json() == {"status": "ok"}


def test_strict_input_gives_json_errors_and_leaves_state_alone() -> None:
    clock = ManualClock(T0)
    options = ServiceOptions(strict_input=True)
    with running_service(RULES, clock=clock, options=options) as svc, httpx.Client() as client:
        check(client, svc.url, ["regular-user"])
        bad_keys = client.get(f"{svc.url}/ratelimit", params={"ratelimit_keys": '["a", 2]'})
        assert bad_keys.status_code == 400
        assert bad_keys.json() == {
            "error": "ratelimit_keys: cannot unmarshal number into string"}
        not_json = client.post(f"{svc.url}/update_ratelimit_record", content=b'{"a": }')
        assert not_json.json() == {
            "error": "body: not valid JSON: Expecting value (line 1, column 7)"}
        negative = report(client, svc.url, ["regular-user"], -500)
        assert negative.status_code == 400
        assert negative.json() == {"error": "completion_tokens: must not be negative"}
        assert svc.app.store.keyspace.get("regular-user", clock()) == 50  # type: ignore[attr-defined]


def test_script_errors_follow_the_fail_mode() -> None:
    broken = (Rule(0, "k", 10, 5, 10, 0),)  # redis_expired_seconds 0: the script fails
    answers = {}
    for fail in ("compat", "open", "closed"):
        options = ServiceOptions(fail=fail)  # type: ignore[arg-type]
        with running_service(broken, options=options) as svc, httpx.Client() as client:
            answer = check(client, svc.url, ["k"])
            answers[fail] = (answer.status_code, answer.content)
    assert answers == {
        "compat": (400, b""),
        "open": (200, b'{"allow":true,"description":"ok"}'),
        "closed": (200, b'{"allow":false,"description":"rate limit backend unavailable"}'),
    }


def test_shadow_charge_and_rate_headers() -> None:
    clock = ManualClock(T0)
    options = ServiceOptions(shadow=True, charge="total", rate_headers=True)
    with running_service(RULES, clock=clock, options=options) as svc, httpx.Client() as client:
        first = check(client, svc.url, ["regular-user"])
        assert first.headers["x-ratelimit-remaining-tokens"] == "50"
        report(client, svc.url, ["regular-user"], 40, total=55)  # total charged: 50 - 55
        clock.advance(10)
        shadowed = check(client, svc.url, ["regular-user"])
        assert shadowed.json() == {"allow": True, "description": "ok"}
        assert shadowed.headers["x-ratelimit-remaining-tokens"] == "0"
        metrics = client.get(f"{svc.url}/metrics").text
    assert 'tokenlimit_checks_total{outcome="deny"} 1' in metrics
    assert "tokenlimit_shadow_limited_total 1" in metrics
    assert "tokenlimit_reported_tokens_total 55" in metrics
    assert 'tokenlimit_limited_total{rule="0",regex="regular-user.*"} 1' in metrics


def test_retry_after_counts_to_the_next_refill() -> None:
    clock = ManualClock(T0)
    options = ServiceOptions(rate_headers=True)
    with running_service(RULES, clock=clock, options=options) as svc, httpx.Client() as client:
        check(client, svc.url, ["regular-user"])
        report(client, svc.url, ["regular-user"], 50)
        clock.advance(12.5)
        limited = check(client, svc.url, ["regular-user"])
        assert not allowed(limited)
        assert limited.headers["retry-after"] == "18"
        assert limited.headers["x-ratelimit-remaining-tokens"] == "0"


def test_set_rules_keeps_bucket_state() -> None:
    clock = ManualClock(T0)
    with running_service(RULES, clock=clock) as svc, httpx.Client() as client:
        check(client, svc.url, ["regular-user"])
        report(client, svc.url, ["regular-user"], 45)
        svc.set_rules((Rule(0, "regular-user.*", 500, 300, 30, 300),))
        clock.advance(30)
        check(client, svc.url, ["regular-user"])  # 5 + 300, kept and refilled by the new rule
        assert svc.app.store.keyspace.get("regular-user", clock()) == 305  # type: ignore[attr-defined]


EVENTS = st.lists(
    st.tuples(
        st.sampled_from(["check", "report"]),
        st.lists(st.sampled_from(["regular-user", "subscriber-x", "nobody", "regular-user-2"]),
                 min_size=0, max_size=3),
        st.integers(0, 400),          # completion tokens
        st.sampled_from([0, 0, 0.4, 1, 7, 29, 30, 61, 301, 700]),  # time step
    ),
    min_size=1, max_size=25,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(EVENTS)
def test_decisions_over_http_equal_the_reference_model(events: list) -> None:  # type: ignore[type-arg]
    clock = ManualClock(T0)
    model = AsmLimiter(RULES)
    with running_service(RULES, clock=clock) as svc, httpx.Client() as client:
        for kind, keys, tokens, step in events:
            clock.advance(step)
            if kind == "report":
                assert report(client, svc.url, keys, tokens).status_code == 200
                model.report(keys, tokens, clock())
                continue
            expected = model.check(keys, clock())
            answer = check(client, svc.url, keys)
            assert answer.json() == {"allow": expected.outcome == "allow",
                                     "description": expected.description}


def test_expect_100_continue_and_pipelined_requests_answer_in_order() -> None:
    import socket

    with running_service(RULES, clock=ManualClock(T0)) as svc, \
            socket.create_connection(("127.0.0.1", svc.port), timeout=5) as sock:
        body = b'{"ratelimit_keys":["regular-user"],"completion_tokens":80}'
        sock.sendall(b"POST /update_ratelimit_record HTTP/1.1\r\nHost: x\r\n"
                     b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        pipelined = b"".join(
            b"GET /ratelimit?ratelimit_keys=%5B%22regular-user%22%5D HTTP/1.1\r\n"
            b"Host: x\r\n\r\n" for _ in range(2)) + b"GET /healthz HTTP/1.1\r\nHost: x\r\n" \
            b"Connection: close\r\n\r\n"
        sock.sendall(pipelined)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    answers = received.split(b"HTTP/1.1 ")[1:]
    assert [a.split(b"\r\n", 1)[0] for a in answers] == [b"200 OK"] * 4
    assert answers[0].endswith(b"Content-Length: 0\r\n\r\n")
    # The report came first, for a key never seen: DECRBY made it -80 with no refill key, so
    # the first check reset the bucket to 50 (the debt forgiven, as in the example).
    assert answers[1].endswith(b'{"allow":true,"description":"ok"}')
    assert answers[2].endswith(b'{"allow":true,"description":"ok"}')
    assert answers[3].endswith(b"Connection: close\r\n\r\n" + b'{"status":"ok"}')


def test_an_internal_failure_is_a_logged_500_without_a_traceback() -> None:
    events: list[tuple[str, dict[str, object]]] = []
    broken = {"now": True}

    def clock() -> float:  # a store that fails in an unforeseen way
        if not broken["now"]:
            return T0
        raise RuntimeError("the clock broke")

    rules = (Rule(0, "k", 10, 5, 60, 600),)
    with running_service(rules, clock=clock, log=lambda e, **f: events.append((e, f))) as svc, \
            httpx.Client() as client:
        failed = check(client, svc.url, ["k"])
        assert (failed.status_code, failed.content) == (500, b"")
        broken["now"] = False
        assert allowed(check(client, svc.url, ["other"]))  # still serving
    assert events == [("internal_error", {
        "path": "/ratelimit", "error": "RuntimeError: the clock broke"})]


def test_oversized_headers_and_garbage_get_an_error_and_a_close() -> None:
    import socket

    with running_service(RULES, clock=ManualClock(T0)) as svc:
        for request, status in (
            (b"GET /healthz HTTP/1.1\r\nX-Big: " + b"a" * ((1 << 20) + 4096) + b"\r\n\r\n",
                 b"431"),
            (b"NOT HTTP AT ALL\r\n\r\n", b"400"),
        ):
            with socket.create_connection(("127.0.0.1", svc.port), timeout=5) as sock:
                sock.sendall(request)
                received = b""
                while chunk := sock.recv(65536):
                    received += chunk
            assert received.startswith(b"HTTP/1.1 " + status), received[:80]
            assert b"Connection: close" in received
        with httpx.Client() as client:  # and the service goes on serving
            assert client.get(f"{svc.url}/healthz").status_code == 200


def test_repeating_incidents_are_logged_once_a_second_with_a_count() -> None:
    from tokenlimit.service import RateLimitApp
    from tokenlimit.service.stores.memory import MemoryStore

    lines: list[tuple[str, dict[str, object]]] = []
    app = RateLimitApp(MemoryStore(RULES), RULES, log=lambda e, **f: lines.append((e, f)))
    now = [100.0]
    app.monotonic = lambda: now[0]
    for step in (0.0, 0.3, 0.3, 0.3, 0.2, 0.5):  # at 100, 100.3, 100.6, 100.9, 101.1, 101.6
        now[0] += step
        app.log_noisy("check_failed", error="redis down")
    assert lines == [("check_failed", {"error": "redis down"}),
                     ("check_failed", {"error": "redis down", "suppressed": 3})]
