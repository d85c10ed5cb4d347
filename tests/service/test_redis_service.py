"""The service over HTTP with a real redis-server: failures, restarts, concurrency."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import time

import httpx
import pytest

from tests.conftest import RedisServer, start_redis
from tests.service.helpers import allowed, check, report
from tests.service.redis_helpers import redis_call, run
from tokenlimit.rules.model import Rule
from tokenlimit.service import BackendConfig, EstimatePolicy, ServiceOptions, running_service

pytestmark = pytest.mark.redis

RULES = (Rule(0, "team-.*", 1000, 1000, 3600, 7200),)
ALLOW = (200, b'{"allow":true,"description":"ok"}')


def test_redis_password_and_db_from_the_environment_variables() -> None:
    from tokenlimit.service import backend_config

    server = start_redis(password="s3cret")
    try:
        env = {"REDIS_ADDRESS": server.address, "REDIS_PASSWORD": "s3cret",
               "REDIS_DB_INDEX": "3"}
        backend = backend_config(environ=env)
        assert repr(backend).count("s3cret") == 0  # never printed
        assert backend.describe() == f"redis at {server.address} db 3 with password"
        with running_service(RULES, backend=backend) as svc, httpx.Client() as client:
            assert allowed(check(client, svc.url, ["team-a"]))
            assert client.get(f"{svc.url}/readyz").json() == {"status": "ready"}

        async def look() -> object:
            from tokenlimit.service.stores.resp import RespConnection

            connection = RespConnection("127.0.0.1", server.port, setup=[
                ["AUTH", "s3cret"], ["SELECT", 3]])
            try:
                return await connection.call("GET", "team-a")
            finally:
                await connection.close()

        assert run(look) == b"1000"
    finally:
        server.stop()
        shutil.rmtree(server.workdir, ignore_errors=True)


def test_redis_stopped_and_restarted_follows_the_fail_mode_then_recovers() -> None:
    server = start_redis()
    port = server.port
    backend = BackendConfig("redis", "127.0.0.1", port, timeout=0.5)
    try:
        with running_service(RULES, backend=backend,
                             options=ServiceOptions(fail="closed")) as closed, \
                running_service(RULES, backend=backend) as compat, \
                running_service(RULES, backend=backend,
                                options=ServiceOptions(fail="open")) as opened, \
                httpx.Client() as client:
            for svc in (closed, compat, opened):
                assert allowed(check(client, svc.url, ["team-a"]))
            server.stop()
            down = {name: check(client, svc.url, ["team-a"])
                    for name, svc in (("closed", closed), ("compat", compat), ("open", opened))}
            assert {name: (r.status_code, r.content) for name, r in down.items()} == {
                "closed": (200, b'{"allow":false,"description":"rate limit backend unavailable"}'),
                "compat": (400, b""),
                "open": ALLOW,
            }
            assert report(client, compat.url, ["team-a"], 5).status_code == 500
            assert client.get(f"{compat.url}/readyz").status_code == 503
            metrics = client.get(f"{compat.url}/metrics").text
            assert "tokenlimit_backend_errors_total 2" in metrics
            server = start_redis(port)
            # Recovery: the next call reconnects (after at most a 50 ms fail-fast pause).
            time.sleep(0.06)
            answers = [check(client, svc.url, ["team-b"]) for svc in (closed, compat, opened)]
            assert [(a.status_code, a.content) for a in answers] == [ALLOW] * 3
            assert client.get(f"{compat.url}/readyz").status_code == 200
    finally:
        server.stop()
        shutil.rmtree(server.workdir, ignore_errors=True)


def test_a_hung_redis_times_out_instead_of_hanging(redis_server: RedisServer) -> None:
    backend = BackendConfig("redis", "127.0.0.1", redis_server.port, timeout=0.2)
    with running_service(RULES, backend=backend, options=ServiceOptions(fail="open")) as svc, \
            httpx.Client(timeout=5) as client:
        assert allowed(check(client, svc.url, ["team-a"]))
        os.kill(redis_server.process.pid, signal.SIGSTOP)  # alive but silent
        try:
            answer = check(client, svc.url, ["team-a"])
        finally:
            os.kill(redis_server.process.pid, signal.SIGCONT)
        assert (answer.status_code, answer.content) == ALLOW
        assert "tokenlimit_backend_errors_total 1" in client.get(f"{svc.url}/metrics").text
        time.sleep(0.06)  # past the fail-fast pause: the next call reconnects
        assert allowed(check(client, svc.url, ["team-a"]))


async def _burst(url: str, clients: int) -> list[bool]:
    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=10) as client:
        async def one(i: int) -> bool:
            answer = await client.get(f"{url}/ratelimit",
                                      params={"ratelimit_keys": '["team-a"]'})
            return bool(answer.json()["allow"])

        return list(await asyncio.gather(*(one(i) for i in range(clients))))


@pytest.mark.parametrize("backend_kind", ["redis", "memory"])
@pytest.mark.parametrize(("mode", "admitted"), [("compat", 100), ("reserve", 10)])
def test_reserve_mode_stops_over_admission_under_100_concurrent_clients(
        redis_server: RedisServer, mode: str, admitted: int, backend_kind: str) -> None:
    # A fresh bucket holds 1000 tokens; each request will use 100. The example admits all
    # 100 concurrent checks (nothing is charged before the reports); reserve mode admits 10.
    backend = BackendConfig(backend_kind, "127.0.0.1", redis_server.port)  # type: ignore[arg-type]
    options = ServiceOptions(mode=mode, estimate=EstimatePolicy(100, average=False))  # type: ignore[arg-type]
    with running_service(RULES, backend=backend, options=options) as svc, httpx.Client() as client:
        decisions = asyncio.run(_burst(svc.url, 100))
        assert sum(decisions) == admitted
        for _ in range(sum(decisions)):
            assert report(client, svc.url, ["team-a"], 100).status_code == 200
        metrics = client.get(f"{svc.url}/metrics").text
        assert f"tokenlimit_reported_tokens_total {100 * admitted}" in metrics
        if backend_kind == "redis":
            balance = run(lambda: redis_call(redis_server.port, "GET", "team-a"))
        else:
            balance = svc.app.store.keyspace.get("team-a", time.time())  # type: ignore[attr-defined]
        assert int(balance) == 1000 - 100 * admitted


def test_a_report_from_a_client_that_hangs_up_is_still_applied_to_every_key(
        redis_server: RedisServer) -> None:
    import socket

    backend = BackendConfig("redis", "127.0.0.1", redis_server.port, timeout=5)
    with running_service(RULES, backend=backend) as svc, httpx.Client() as client:
        assert allowed(check(client, svc.url, ["team-a"]))  # connected, scripts loaded
        body = b'{"ratelimit_keys":["team-a","team-b"],"completion_tokens":30}'
        os.kill(redis_server.process.pid, signal.SIGSTOP)  # the report will wait on Redis
        try:
            with socket.create_connection(("127.0.0.1", svc.port), timeout=5) as sock:
                sock.sendall(b"POST /update_ratelimit_record HTTP/1.1\r\nHost: x\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            time.sleep(0.2)  # the service has read it; the client is gone
        finally:
            os.kill(redis_server.process.pid, signal.SIGCONT)
        deadline = time.monotonic() + 5
        while run(lambda: redis_call(redis_server.port, "GET", "team-b")) is None:
            assert time.monotonic() < deadline, "the second key was never charged"
            time.sleep(0.02)
        assert run(lambda: redis_call(redis_server.port, "GET", "team-a")) == b"970"
        assert run(lambda: redis_call(redis_server.port, "GET", "team-b")) == b"-30"


def test_head_requests_get_the_head_only() -> None:
    with running_service(RULES) as svc, httpx.Client() as client:
        answer = client.head(f"{svc.url}/ratelimit")
        assert (answer.status_code, answer.content) == (200, b"")
        assert answer.headers["content-length"] == "33"
        assert client.get(f"{svc.url}/healthz").json() == {"status": "ok"}  # still in sync


@pytest.mark.parametrize(("text", "db"), [
    ("3", 3), ("+3", 3), ("007", 7), (" 3", 0), ("3 ", 0), ("-1", 0), ("--1", 0), ("x", 0),
    ("\uff13", 0), ("1_0", 0), ("9" * 19, 0), ("", 0)])
def test_redis_db_index_is_read_as_the_service_reads_it(text: str, db: int) -> None:
    """The service takes Go's strconv.Atoi of REDIS_DB_INDEX (0 when that fails), and go-redis
    selects only a database above 0: " 3" was database 3 here and 0 there, "+3" the reverse,
    "-1" a SELECT Redis refuses, and "--1" a traceback."""
    from tokenlimit.service import backend_config

    backend = backend_config(environ={"REDIS_ADDRESS": "127.0.0.1:6379", "REDIS_DB_INDEX": text})
    assert backend.db == db
