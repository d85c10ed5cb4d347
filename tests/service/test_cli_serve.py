"""``tokenlimit serve`` from the command line: start-up errors in-process, a real run as a
subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from tests.conftest import REPO, SAMPLES, RedisServer, free_port
from tests.service.helpers import check, report
from tests.service.redis_helpers import redis_call, run
from tokenlimit.cli.main import app

runner = CliRunner()


def test_rules_with_errors_are_refused_with_validates_findings(tmp_path: Path) -> None:
    rules = tmp_path / "rules.json"
    rules.write_text('[{"rate_limit_key_regex": "u", "max_tokens": 10, "tokens_per_fill": 5,\n'
                     '  "fill_interval_second": 0, "redis_expired_seconds": 60}]\n')
    result = runner.invoke(app, ["serve", "--rules", str(rules), "--stop-after", "0"])
    assert result.exit_code == 1
    assert result.output.startswith(f"error: {rules}:2:27: TL108 fill_interval_second is 0")
    assert "Traceback" not in result.output


def test_help_lists_every_option() -> None:
    result = runner.invoke(app, ["serve", "--help"])
    assert result.exit_code == 0, result.output
    for option in ("--rules", "--host", "--port", "--backend", "--redis-url", "--mode",
                   "--estimate", "--shadow", "--fail-open", "--fail-closed", "--charge",
                   "--strict-input", "--rate-headers", "--workers", "--stop-grace",
                   "--idle-timeout", "--request-timeout", "--max-in-flight"):
        assert option in result.output


def test_warnings_are_logged_at_start_up(tmp_path: Path) -> None:
    rules = tmp_path / "rules.json"
    rules.write_text('[{"rate_limit_key_regex": "u", "max_tokens": 10, "tokens_per_fill": 5,\n'
                     '  "fill_interval_second": 60, "redis_expired_seconds": 600, "burst": 3}]\n')
    result = runner.invoke(app, ["serve", "--rules", str(rules), "--port", str(free_port()),
                                 "--stop-after", "0"], env={"REDIS_ADDRESS": ""})
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    warning = {k: v for k, v in lines[1].items() if k != "ts"}
    assert warning == {
        "event": "rule_warning", "code": "TL206", "rule": 0, "where": f"{rules}:2:61",
        "message": "unknown field 'burst' in rule 0: the service ignores it silently."}


def test_missing_rules_and_bad_options(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("RATE_LIMIT_CONFIG", "REDIS_ADDRESS")}
    result = runner.invoke(app, ["serve", "--stop-after", "0"], env=env)
    assert result.exit_code == 1
    assert result.output == ("error: no rules: give --rules SOURCE or set RATE_LIMIT_CONFIG "
                             "(the example exits at start-up without it)\n")
    assert runner.invoke(app, ["serve", "--mode", "fast"]).exit_code == 2
    assert runner.invoke(app, ["serve", "--fail-open", "--fail-closed"]).exit_code == 2
    assert runner.invoke(app, ["serve", "--estimate", "lots"]).exit_code == 2
    workers = runner.invoke(app, ["serve", "--rules", str(SAMPLES / "rules.json"),
                                  "--workers", "2", "--stop-after", "0"], env=env)
    assert workers.exit_code == 1
    assert workers.output == ("error: --workers > 1 needs a Redis backend: memory state is per "
                              "process\n")
    bad_url = runner.invoke(app, ["serve", "--rules", str(SAMPLES / "rules.json"),
                                  "--redis-url", "http://x", "--stop-after", "0"])
    assert bad_url.exit_code == 1
    assert bad_url.output.startswith("error: --redis-url: expected redis://[[USER]:PASSWORD@]"
                                     "HOST[:PORT][/DB], rediss://... (TLS), unix:///PATH")
    assert "http://x" not in bad_url.output


def test_an_unreachable_redis_is_logged_but_not_fatal() -> None:
    dead = free_port()  # nothing listens there
    result = runner.invoke(app, ["serve", "--rules", str(SAMPLES / "rules.json"), "--port",
                                 str(free_port()), "--redis-url", f"redis://:pw@127.0.0.1:{dead}",
                                 "--stop-after", "0"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert [line["event"] for line in lines] == [
        "starting", "listening", "backend_unreachable", "stopped"]
    assert lines[0]["backend"] == f"redis at 127.0.0.1:{dead} (db 0, with password)"
    assert lines[2]["error"] == f"cannot connect to redis at 127.0.0.1:{dead}: Connection refused"
    assert "pw" not in result.output.replace("password", "")


def test_a_port_in_use_is_one_clear_line() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(app, ["serve", "--rules", str(SAMPLES / "rules.json"), "--port",
                                     str(port), "--stop-after", "0"], env={"REDIS_ADDRESS": ""})
    assert result.exit_code == 1
    # Once, in the OS's words (asyncio's own text repeated the address).
    assert result.output.splitlines()[-1] == (
        f"error: cannot listen on 127.0.0.1:{port}: Address already in use")


def test_in_process_run_reads_rules_from_the_environment() -> None:
    config = (SAMPLES / "rules.json").read_text()
    port = free_port()
    result = runner.invoke(app, ["serve", "--port", str(port), "--stop-after", "0.2"],
                           env={"RATE_LIMIT_CONFIG": config, "REDIS_ADDRESS": ""})
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert [line["event"] for line in lines] == ["starting", "listening", "stopped"]
    assert lines[0]["backend"].startswith("memory (state in this process only")
    assert lines[1]["port"] == port


def _wait_healthy(client: httpx.Client, url: str, log: Path) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            client.get(f"{url}/healthz")
            return
        except httpx.TransportError:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)


def test_subprocess_serves_the_example_api(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "RATE_LIMIT_CONFIG": (SAMPLES / "rules.json").read_text()}
    env.pop("REDIS_ADDRESS", None)
    log = tmp_path / "log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "tokenlimit", "serve", "--port", str(port),
             "--stop-after", "60"], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        with httpx.Client() as client:
            _wait_healthy(client, url, log)
            assert check(client, url, ["subscriber-1"]).json()["allow"] is True
            assert report(client, url, ["subscriber-1"], 100).status_code == 200
            limited = check(client, url, ["subscriber-1"])
            assert limited.content == (
                b'{"allow":false,"description":"subscriber-1 is being rate-limited"}')
    finally:
        process.terminate()
        process.wait(10)
    assert process.returncode == 0
    events = [json.loads(line)["event"] for line in log.read_text().splitlines()]
    assert events == ["starting", "listening", "stopped"]


@pytest.mark.redis
def test_two_workers_share_the_port_and_the_redis_state(tmp_path: Path,
                                                        redis_server: RedisServer) -> None:
    port = free_port()
    env = {**os.environ, "REDIS_ADDRESS": redis_server.address}
    log = tmp_path / "log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "tokenlimit", "serve", "--rules", str(SAMPLES / "rules.json"),
             "--port", str(port), "--workers", "2", "--stop-after", "60"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        with httpx.Client() as first, httpx.Client() as second:
            deadline = time.monotonic() + 20
            while log.read_text().count('"event": "listening"') < 2:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
            assert check(first, url, ["subscriber-9"]).json()["allow"] is True
            assert report(second, url, ["subscriber-9"], 100).status_code == 200
            for client in (first, second):  # whichever worker answers, the bucket is spent
                assert check(client, url, ["subscriber-9"]).json()["allow"] is False
    finally:
        process.terminate()
        process.wait(10)
    assert process.returncode == 0
    events = [json.loads(line)["event"] for line in log.read_text().splitlines()]
    assert sorted(events) == ["listening", "listening", "starting", "stopped", "stopped"]


@pytest.mark.redis
def test_clock_offset_runs_ahead_of_redis_time(redis_server: RedisServer) -> None:
    port = free_port()
    env = {**os.environ, "REDIS_ADDRESS": redis_server.address}
    process = subprocess.Popen(
        [sys.executable, "-m", "tokenlimit", "serve", "--rules", str(SAMPLES / "rules.json"),
         "--port", str(port), "--clock-offset", "3600", "--stop-after", "60"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        with httpx.Client() as client:
            _wait_healthy(client, url, Path(os.devnull))
            before = time.time()
            assert check(client, url, ["subscriber-7"]).json()["allow"] is True
            after = time.time()
        last = int(run(lambda: redis_call(redis_server.port, "GET",
                                          "subscriber-7_last_fill_time")))
        assert int(before) + 3600 <= last <= int(after) + 3600
        ttl_ms = run(lambda: redis_call(redis_server.port, "PTTL", "subscriber-7"))
        assert 3600_000 + 590_000 < ttl_ms <= 3600_000 + 600_000  # PEXPIREAT from that clock
    finally:
        process.terminate()
        process.wait(10)
