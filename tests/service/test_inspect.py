"""`tokenlimit inspect` against real Redis filled by real checks and reports through `serve`.

Every value shown is compared with the reference model fed the same calls, and every
prediction (next refill, admitted again) is checked by running the model to that moment.
"""

from __future__ import annotations

import copy
import json
import math
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from tests.conftest import SAMPLES, RedisServer, start_redis
from tests.service.conftest import RedisCluster
from tests.service.helpers import check, report
from tests.service.redis_helpers import injected_start
from tokenlimit.bucket.keyspace import LAST_FILL_SUFFIX
from tokenlimit.bucket.limiter import AsmLimiter
from tokenlimit.cli.main import app
from tokenlimit.rules.model import Rule
from tokenlimit.service import BackendConfig, ManualClock, running_service

pytestmark = pytest.mark.redis
runner = CliRunner()

RULES = (
    Rule(0, "regular-user.*", 200, 50, 30, 300),
    Rule(1, "subscriber.*", 1000, 100, 60, 600),
    Rule(2, "short", 30, 10, 5, 12),            # expires between refills
)
# (seconds after the start, call, keys, completion tokens)
EVENTS = [
    (0.0, "check", ["regular-user-a"], 0), (0.5, "report", ["regular-user-a"], 260),
    (1.0, "check", ["subscriber-b"], 0), (1.25, "report", ["subscriber-b"], 1130),
    (2.0, "check", ["short-c"], 0), (2.0, "report", ["short-c"], 45),
    (3.0, "check", ["regular-user-d"], 0), (3.0, "report", ["regular-user-d"], 20),
    (4.0, "report", ["nobody"], 9),
]
KEYS = ["nobody", "regular-user-a", "regular-user-d", "short-c", "subscriber-b"]
PROBES = (4.0, 14.5, 31.0, 61.25)


def _fill(backend: BackendConfig) -> tuple[ManualClock, AsmLimiter]:
    """The events through a real service on ``backend`` and through the model."""
    start = injected_start()
    clock = ManualClock(start)
    model = AsmLimiter(RULES)
    with running_service(RULES, backend=backend, clock=clock) as svc, httpx.Client() as client:
        for offset, call, keys, tokens in EVENTS:
            clock.set(start + offset)
            if call == "check":
                assert check(client, svc.url, keys).status_code == 200
                model.check(keys, clock())
            else:
                assert report(client, svc.url, keys, tokens).status_code == 200
                model.report(keys, tokens, clock())
    clock.set(start)
    return clock, model


def _rules_file(tmp_path: Path) -> str:
    path = tmp_path / "rules.json"
    path.write_text(json.dumps([r.to_config() for r in RULES]))
    return str(path)


def _inspect(*args: str) -> Any:
    return runner.invoke(app, ["inspect", *args])


def _outcome_at(model: AsmLimiter, key: str, at: float) -> tuple[str, int | None]:
    trial = copy.deepcopy(model)
    result = trial.check([key], at)
    return result.outcome, trial.balance(key, at)


def _assert_matches_model(state: dict[str, Any], model: AsmLimiter, now: float) -> None:
    key = state["key"]
    space = model.keyspace
    balance = space.get(key, now)
    last = space.get(key + LAST_FILL_SUFFIX, now)
    if model.matcher.index_for(key) is None:
        assert (state["rule"], state["balance"], state["admitted"]) == (None, balance, True)
        return
    if balance is None or last is None:
        assert state["state"].startswith(("expired", "no bucket", "no refill time"))
        assert state["admitted"] is True
        assert _outcome_at(model, key, now)[0] == "allow"
        return
    assert (state["balance"], state["last_fill"]) == (balance, last)
    deadline = min(space.expires_at[key], space.expires_at[key + LAST_FILL_SUFFIX])
    assert state["expires_at"] == pytest.approx(deadline, abs=1e-6)
    assert state["ttl_seconds"] == pytest.approx(deadline - now, abs=1e-6)
    # The next refill: nothing changes before it, it adds what the table says at it.
    refill_at = state["next_refill_at"]
    if refill_at > math.floor(now):
        assert _outcome_at(model, key, refill_at - 0.001)[1] == balance
    assert _outcome_at(model, key, max(refill_at, now))[1] == balance + state["refill_adds"]
    # Admitted again: the model admits a check then, and denies one a millisecond before.
    again = state["admitted_again_at"]
    assert state["admitted"] is (_outcome_at(model, key, now)[0] == "allow")
    assert _outcome_at(model, key, again)[0] == "allow"
    if again - 0.001 >= now:
        assert _outcome_at(model, key, again - 0.001)[0] == "deny"


def _probe(url: str, rules: str, clock: ManualClock, model: AsmLimiter, *extra: str) -> None:
    start = clock()
    seen_limited = 0
    for offset in PROBES:
        now = start + offset
        result = _inspect("--rules", rules, "--redis-url", url, "--now", str(now), "-f", "json",
                          *extra)
        assert result.exit_code == 0, result.output
        body = json.loads(result.stdout)
        assert [s["key"] for s in body["keys"]] == KEYS
        for state in body["keys"]:
            # a copy: reading an expired key from the model deletes it
            _assert_matches_model(state, copy.deepcopy(model), now)
            seen_limited += not state["admitted"]
    assert seen_limited >= 4  # the probes really see limited keys, not only fresh ones


def test_values_and_predictions_equal_the_reference_model(redis_server: RedisServer,
                                                          tmp_path: Path) -> None:
    clock, model = _fill(BackendConfig("redis", "127.0.0.1", redis_server.port))
    _probe(redis_server.url, _rules_file(tmp_path), clock, model)


def test_given_keys_top_and_text(redis_server: RedisServer, tmp_path: Path) -> None:
    clock, _ = _fill(BackendConfig("redis", "127.0.0.1", redis_server.port))
    rules = _rules_file(tmp_path)
    now = str(clock() + 4)
    top = _inspect("--rules", rules, "--redis-url", redis_server.url, "--now", now, "--top", "2",
                   "-f", "json")
    assert top.exit_code == 0, top.output
    assert [(s["key"], s["balance"]) for s in json.loads(top.stdout)["keys"]] == [
        ("subscriber-b", -1030), ("regular-user-a", -210)]
    given = _inspect("regular-user-a", "never-seen", "--rules", rules, "--redis-url",
                     redis_server.url, "--now", now)
    assert given.exit_code == 0, given.output
    lines = given.stdout.splitlines()
    row = next(line for line in lines if line.startswith("│ regular-user-a"))
    cells = [c.strip() for c in row.strip("│").split("│")]
    assert cells[:8] == ["regular-user-a", "0 regular-user.*", "-210",
                         _utc(clock()), "in 26 s", "+50", "296.000 s", "in 2 min 26 s"]
    assert any(line.startswith("│ never-seen") and "matches no rule" in line for line in lines)


def _utc(seconds: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(math.floor(seconds), UTC).strftime("%Y-%m-%d %H:%M:%S")


def test_match_scans_with_a_glob(redis_server: RedisServer, tmp_path: Path) -> None:
    clock, _ = _fill(BackendConfig("redis", "127.0.0.1", redis_server.port))
    result = _inspect("--rules", _rules_file(tmp_path), "--redis-url", redis_server.url,
                      "--now", str(clock() + 4), "--match", "regular-user-*", "-f", "json")
    assert result.exit_code == 0, result.output
    assert [s["key"] for s in json.loads(result.stdout)["keys"]] == ["regular-user-a",
                                                                     "regular-user-d"]


@pytest.fixture
def password_redis() -> Iterator[RedisServer]:
    server = start_redis(password="s3cret")
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.workdir, ignore_errors=True)


def _redis_command(server: RedisServer, *args: str) -> bytes:
    payload = b"*%d\r\n" % len(args) + b"".join(
        b"$%d\r\n%s\r\n" % (len(a.encode()), a.encode()) for a in args)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(f"AUTH {server.password}\r\n".encode())
        sock.recv(64)
        sock.sendall(payload)
        return sock.recv(4096)


def test_password_and_a_read_only_acl_user(password_redis: RedisServer, tmp_path: Path) -> None:
    clock, model = _fill(BackendConfig("redis", "127.0.0.1", password_redis.port,
                                       password="s3cret"))
    rules = _rules_file(tmp_path)
    _probe(password_redis.url, rules, clock, model)
    # A user that may only read: any write by inspect would fail with NOPERM.
    assert _redis_command(password_redis, "ACL", "SETUSER", "reader", "on", ">readpw", "~*",
                          "+get", "+pexpiretime", "+pttl", "+time", "+scan", "+ping",
                          "+hello").startswith(b"+OK")
    reader_url = f"redis://reader:readpw@127.0.0.1:{password_redis.port}/0"
    _probe(reader_url, rules, clock, model)
    wrong = _inspect("--rules", rules, "--redis-url",
                     f"redis://:nope@127.0.0.1:{password_redis.port}/0")
    assert wrong.exit_code == 1
    assert wrong.stderr.startswith(f"error: redis (redis://127.0.0.1:{password_redis.port}/0)")
    assert len(wrong.stderr.splitlines()) == 1
    assert "nope" not in wrong.stderr


def test_cluster(redis_cluster: RedisCluster, tmp_path: Path) -> None:
    clock, model = _fill(BackendConfig("redis-cluster", "127.0.0.1", redis_cluster.seed.port))
    _probe(redis_cluster.seed.url, _rules_file(tmp_path), clock, model, "--cluster")


def test_watch_refreshes_and_stops_after_count(redis_server: RedisServer,
                                               tmp_path: Path) -> None:
    clock, _ = _fill(BackendConfig("redis", "127.0.0.1", redis_server.port))
    result = _inspect("--rules", _rules_file(tmp_path), "--redis-url", redis_server.url,
                      "--now", str(clock() + 4), "--watch", "--count", "2", "--interval", "0.1")
    assert result.exit_code == 0, result.output
    assert result.stdout.count("regular-user-a") >= 1


def test_no_redis_is_one_line_error(tmp_path: Path) -> None:
    from tests.conftest import free_port

    result = _inspect("--rules", _rules_file(tmp_path), "--redis-url",
                      f"redis://127.0.0.1:{free_port()}/0")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: redis (redis://127.0.0.1:")
    assert len(result.stderr.splitlines()) == 1


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[RedisServer, int, Path]]:
    """A redis-server with a plain port (the service writes there) and a TLS port."""
    import subprocess

    from tests.conftest import free_port

    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (needed to make a certificate)")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    tls_port = free_port()
    server = start_redis(extra=("--tls-port", str(tls_port), "--tls-cert-file", str(cert),
                                "--tls-key-file", str(key), "--tls-ca-cert-file", str(cert),
                                "--tls-auth-clients", "no"))
    try:
        yield server, tls_port, cert
    finally:
        server.stop()
        shutil.rmtree(server.workdir, ignore_errors=True)


def test_tls(tls_redis: tuple[RedisServer, int, Path], tmp_path: Path) -> None:
    server, tls_port, cert = tls_redis
    clock, model = _fill(BackendConfig("redis", "127.0.0.1", server.port))
    rules = _rules_file(tmp_path)
    _probe(f"rediss://127.0.0.1:{tls_port}/0?ssl_ca_certs={cert}", rules, clock, model)
    untrusted = _inspect("--rules", rules, "--redis-url", f"rediss://127.0.0.1:{tls_port}/0")
    assert untrusted.exit_code == 1
    assert "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr
    assert len(untrusted.stderr.splitlines()) == 1


def test_ctrl_c_ends_a_watch_quietly(redis_server: RedisServer, tmp_path: Path) -> None:
    import select
    import signal
    import subprocess
    import sys
    import time

    _fill(BackendConfig("redis", "127.0.0.1", redis_server.port))
    process = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.argv[0] = 'tokenlimit'; "
         "from tokenlimit.cli.main import run; run()", "inspect", "--rules",
         _rules_file(tmp_path), "--redis-url", redis_server.url, "--watch", "--interval", "0.2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        assert process.stdout is not None
        seen = ""
        while seen.count("regular-user-a") < 2:  # two refreshes drawn, one after the other
            ready, _, _ = select.select([process.stdout], [], [], 1.0)
            if ready:
                seen += process.stdout.readline()
            assert time.monotonic() < deadline and process.poll() is None, seen
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)
    assert (process.returncode, err) == (0, "")


def _fill_raw(server: RedisServer, *entries: tuple[bytes, bytes]) -> None:
    import redis

    with redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=5) as client:
        for name, value in entries:
            client.set(name, value)


def _rows(text: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("│").split("│")]
            for line in text.splitlines() if line.startswith("│ ") and line[2] != " "]


def test_keys_and_regexes_are_shown_as_written_not_as_markup(redis_server: RedisServer) -> None:
    # Square brackets in a key or a regex were read as Rich markup: 'user[/]' ended in a
    # MarkupError traceback, '[red]x' was shown as a red 'x'.
    _fill_raw(redis_server, (b"user[/]", b"7"), (b"[red]x", b"3"))
    rules = ('[{"rate_limit_key_regex":"^user\\\\[/]","max_tokens":10,"tokens_per_fill":5,'
             '"fill_interval_second":60,"redis_expired_seconds":600}]')
    result = _inspect("--config-json", rules, "--redis-url", redis_server.url)
    assert result.exit_code == 0, result.output
    rows = _rows(result.stdout)
    assert [row[:3] for row in rows] == [["[red]x", "-", "3"], ["user[/]", "0 ^user\\[/]", "7"]]
    assert rows[1][8].startswith("no refill time: the next check restarts it at 5")


def test_names_that_are_not_utf8(redis_server: RedisServer) -> None:
    # A name SCAN found that is not UTF-8 (another application's) ended in a UnicodeEncodeError
    # traceback. The service never writes one (Go reads each bad byte of a key as U+FFFD); a
    # KEY given with a bad byte is looked up as the service keeps it, with U+FFFD.
    replaced = "regular-user-\ufffd".encode()
    _fill_raw(redis_server, (b"bin\xff\xfekey", b"3"), (b"regular-user-\xff", b"9"),
              (replaced, b"-5"), (replaced + b"_last_fill_time", b"1000"))
    rules = str(SAMPLES / "rules.json")
    scanned = _inspect("--rules", rules, "--redis-url", redis_server.url, "--now", "1010",
                       "-f", "json")
    assert scanned.exit_code == 0, scanned.output
    states = {s["key"]: s for s in json.loads(scanned.stdout)["keys"]}
    assert sorted(states) == ["bin\\xff\\xfekey", "regular-user-\\xff", "regular-user-\ufffd"]
    foreign = ("not a bucket: the name is not UTF-8 (the service reads each such byte of a "
               "key as U+FFFD, so it never writes this name)")
    for name in ("bin\\xff\\xfekey", "regular-user-\\xff"):
        assert (states[name]["rule"], states[name]["balance"], states[name]["state"]) == (
            None, None, foreign)
    assert (states["regular-user-\ufffd"]["rule"], states["regular-user-\ufffd"]["balance"],
            states["regular-user-\ufffd"]["state"]) == (0, -5, "limited")
    text = _inspect("--rules", rules, "--redis-url", redis_server.url, "--now", "1010")
    assert text.exit_code == 0, text.output
    assert [row[:3] for row in _rows(text.stdout)] == [
        ["bin\\xff\\xfekey", "-", "-"], ["regular-user-\\xff", "-", "-"],
        ["regular-user-\ufffd", "0 regular-user.*", "-5"]]
    given = _inspect("regular-user-\udcff", "--rules", rules, "--redis-url", redis_server.url,
                     "--now", "1010", "-f", "json")
    assert given.exit_code == 0, given.output
    assert [(s["key"], s["balance"]) for s in json.loads(given.stdout)["keys"]] == [
        ("regular-user-\ufffd", -5)]


def test_the_services_environment_with_a_password_of_url_characters() -> None:
    # REDIS_PASSWORD went into the URL as it was: what follows its '@' was read as the host
    # (here loopback port 9: "Connection refused"; 'p@ss' connected to a host named 'ss').
    password = "pw@127.0.0.1:9/x#1%"
    server = start_redis(password=password)
    try:
        _fill_raw_with_password(server, password, (b"regular-user-1", b"-20"),
                                (b"regular-user-1_last_fill_time", b"1000"))
        env = {"REDIS_ADDRESS": server.address, "REDIS_PASSWORD": password,
               "REDIS_DB_INDEX": "0"}
        result = runner.invoke(app, ["inspect", "--rules", str(SAMPLES / "rules.json"),
                                     "--now", "1010", "-f", "json"], env=env)
        assert result.exit_code == 0, result.output
        body = json.loads(result.stdout)
        assert body["redis"] == f"redis://{server.address}/0"
        assert [(s["key"], s["balance"], s["state"]) for s in body["keys"]] == [
            ("regular-user-1", -20, "limited")]
        assert "127.0.0.1:9" not in result.output
    finally:
        server.stop()
        shutil.rmtree(server.workdir, ignore_errors=True)


def _fill_raw_with_password(server: RedisServer, password: str,
                            *entries: tuple[bytes, bytes]) -> None:
    import redis

    with redis.Redis(host="127.0.0.1", port=server.port, password=password,
                     socket_timeout=5) as client:
        for name, value in entries:
            client.set(name, value)


def test_a_url_whose_database_is_not_a_number_is_a_usage_error(redis_server: RedisServer) -> None:
    # redis-py reads a path such as /db1 as database 0: the table showed database 0's keys
    # under the title 'redis://.../db1', exit 0.
    _fill_raw(redis_server, (b"regular-user-1", b"5"))
    rules = str(SAMPLES / "rules.json")
    typo = _inspect("--rules", rules, "--redis-url", f"redis://{redis_server.address}/db1")
    assert typo.exit_code == 2
    assert "the database in the path must be a number, not 'db1'" in " ".join(
        typo.stderr.replace("│", " ").split())
    slash = _inspect("--rules", rules, "--redis-url",
                     f"redis://u:pw/secret@{redis_server.address}/0")
    assert slash.exit_code == 2
    assert "secret" not in slash.stderr
    assert "percent-encode it in the password as %2F" in " ".join(
        slash.stderr.replace("│", " ").split())
    for fine in ("/0", "/", "", "/0?socket_timeout=3"):
        result = _inspect("--rules", rules, "--redis-url", f"redis://{redis_server.address}{fine}",
                          "-f", "json")
        assert result.exit_code == 0, result.output
        assert [s["key"] for s in json.loads(result.stdout)["keys"]] == ["regular-user-1"]


def test_another_applications_entry_under_a_rules_key(redis_server: RedisServer) -> None:
    # A hash under a key a rule takes was shown "admitted", admitted again "now"; the
    # service's script fails on it (WRONGTYPE), so every check of the key answers 400.
    import redis

    with redis.Redis(host="127.0.0.1", port=redis_server.port, socket_timeout=5) as client:
        client.hset("regular-user-h", "field", "1")
        client.hset("session-h", "field", "1")
    result = _inspect("--rules", str(SAMPLES / "rules.json"), "--redis-url", redis_server.url,
                      "-f", "json")
    assert result.exit_code == 0, result.output
    states = {s["key"]: s for s in json.loads(result.stdout)["keys"]}
    wrong = "not a bucket (WRONGTYPE Operation against a key holding the wrong kind of value)"
    assert (states["regular-user-h"]["rule"], states["regular-user-h"]["admitted"],
            states["regular-user-h"]["admitted_again_at"], states["regular-user-h"]["state"]) == (
        0, False, None, f"{wrong}: every check of this key fails (the service answers 400; the "
        "plug-in's failStrategy decides)")
    # A key no rule takes is never checked against the script: never limited.
    assert (states["session-h"]["rule"], states["session-h"]["admitted"],
            states["session-h"]["state"]) == (None, True, wrong)
    text = _inspect("--rules", str(SAMPLES / "rules.json"), "--redis-url", redis_server.url)
    assert [row[:8] for row in _rows(text.stdout)] == [
        ["regular-user-h", "0 regular-user.*", "-", "-", "-", "-", "-", "-"],
        ["session-h", "-", "-", "-", "-", "-", "-", "now"]]


@pytest.mark.parametrize(("text", "db"), [("+2", 2), (" 2", 0), ("-1", 0), ("--1", 0)])
def test_inspect_reads_redis_db_index_as_the_service_does(
        text: str, db: int, monkeypatch: pytest.MonkeyPatch) -> None:
    from tokenlimit.cli.inspect import _redis_url

    monkeypatch.setenv("REDIS_ADDRESS", "127.0.0.1:6390")
    monkeypatch.delenv("REDIS_PASSWORD", raising=False)
    monkeypatch.setenv("REDIS_DB_INDEX", text)
    assert _redis_url(None) == f"redis://127.0.0.1:6390/{db}"
