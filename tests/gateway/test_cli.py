"""The three commands through the real CLI: in-process (CliRunner) and as a subprocess.

A command under test runs in the main thread (where its Ctrl-C handler lives); a client thread
talks to it over loopback and then interrupts it with SIGINT, as a user's Ctrl-C would.
``--duration`` is only a safety net so that nothing can hang.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from tests.conftest import REPO, SAMPLES, RedisServer, free_port
from tokenlimit.cli.main import app
from tokenlimit.gateway import LOOPBACK, BackgroundServers, Listener, MockLLM, bind
from tokenlimit.rules import load_rules
from tokenlimit.service import running_service

HOST = "dashscope.aliyuncs.com"
BODY = {"messages": [{"role": "user", "content": "Who are you?"}]}
runner = CliRunner()


def wait_listening(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((LOOPBACK, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.02)
    raise AssertionError(f"nothing listens on {port}")


def run_with_client(args: list[str], port: int, client: Callable[[], Any]) -> tuple[Any, Any]:
    """Invoke the CLI in this thread; ``client`` runs in another, then Ctrl-C ends the command."""
    outcome: dict[str, Any] = {}
    finished = threading.Event()

    def work() -> None:
        try:
            wait_listening(port)
            outcome["value"] = client()
        except BaseException as exc:
            outcome["error"] = exc
        finally:
            if not finished.is_set():  # never interrupt pytest itself once the command is over
                os.kill(os.getpid(), signal.SIGINT)

    thread = threading.Thread(target=work)
    thread.start()
    try:
        result = runner.invoke(app, [*args, "--duration", "60"])
    finally:
        finished.set()
    thread.join(30)
    if "error" in outcome:
        raise outcome["error"]
    return result, outcome.get("value")


def test_mock_llm_command_serves_until_ctrl_c() -> None:
    port = free_port()

    def client() -> list[int]:
        return [httpx.post(f"http://{LOOPBACK}:{port}/v1/chat/completions", json=BODY)
                .json()["usage"]["completion_tokens"] for _ in range(2)]

    result, tokens = run_with_client(
        ["mock-llm", "--port", str(port), "--completion-tokens", "5-9", "--seed", "3",
         "--format", "json"], port, client)
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert lines == [{"mock_llm": f"http://{LOOPBACK}:{port}"},
                     {"stopped": True, "requests": 2, "completions": 2, "prompt_tokens": 14,
                      "completion_tokens": sum(tokens)}]
    assert all(5 <= t <= 9 for t in tokens)


def test_gateway_command_with_the_sample_wasmplugin() -> None:
    port = free_port()
    rules = load_rules(str(SAMPLES / "rules.json"))
    mock = BackgroundServers([Listener("mock", MockLLM(), bind(LOOPBACK, 0))]).start()
    try:
        with running_service(rules) as service:
            def client() -> list[tuple[int, str]]:
                answers = []
                for user, host in [("regular-user", "other.example"), ("regular-user", HOST),
                                   ("regular-user", HOST)]:
                    answer = httpx.post(f"http://{LOOPBACK}:{port}/", json=BODY,
                                        headers={"host": host, "user-type": user})
                    answers.append((answer.status_code, answer.text[:34]))
                    deadline = time.monotonic() + 10  # the report is asynchronous
                    while time.monotonic() < deadline and "reports_total 1" not in httpx.get(
                            service.url + "/metrics").text and len(answers) == 2:
                        time.sleep(0.01)
                return answers

            result, answers = run_with_client(
                ["gateway", "--plugin", str(SAMPLES / "wasmplugin.yaml"), "--service",
                 service.url, "--upstream", mock.listeners[0].url, "--port", str(port),
                 "--format", "json", "--show-requests"], port, client)
    finally:
        mock.stop()
    assert result.exit_code == 0, result.output
    first, *events, last = (json.loads(line) for line in result.output.splitlines())
    assert [(e["event"], e["host"], e["keys"], e["status"], e["detail"]) for e in events] == [
        ("unmatched", "other.example", [], 200, ""),
        ("allowed", HOST, ["regular-user"], 200, ""),
        ("reported", HOST, ["regular-user"], 200,
         "60 completion tokens (7 prompt, 67 total)"),
        ("limited", HOST, ["regular-user"], 429, "regular-user is being rate-limited"),
    ]
    assert first == {"gateway": f"http://{LOOPBACK}:{port}", "upstream": mock.listeners[0].url,
                     "service": service.url, "key_templates": ["{{request.headers.user-type}}"],
                     "host_match": [HOST], "fail_open": True}
    assert answers[0][0] == 200 and answers[1][0] == 200
    assert answers[2] == (429, "regular-user is being rate-limited")
    assert last["stats"]["unmatched"] == 1
    assert (last["stats"]["allowed"], last["stats"]["limited"], last["stats"]["reports"]) == (
        1, 1, 1)


@pytest.mark.parametrize(("args", "message"), [
    (["gateway", "--upstream", "ftp://x", "--service", "http://127.0.0.1:1"],
     "error: --upstream 'ftp://x': give a URL starting with http:// or https://"),
    (["gateway", "--upstream", "http://127.0.0.1:1"],
     "error: no rate-limit service: give --service URL"),
    # a path was dropped without a word (the banner even showed it): a DashScope base URL
    # turned every request into a 404 from the upstream
    (["gateway", "--upstream", "https://dashscope.aliyuncs.com/compatible-mode/v1",
      "--service", "http://127.0.0.1:2", "--port", "0", "--duration", "0.5"],
     "error: --upstream 'https://dashscope.aliyuncs.com/compatible-mode/v1': give only the "
     "scheme, host and port (https://dashscope.aliyuncs.com); a path belongs in the client's "
     "base URL: each request's path goes upstream as the client sent it, as through the "
     "sidecar\n"),
    (["gateway", "--upstream", "http://127.0.0.1:1", "--service",
      "http://127.0.0.1:2/ratelimit", "--port", "0", "--duration", "0.5"],
     "error: --service 'http://127.0.0.1:2/ratelimit': give only the scheme, host and port "
     "(http://127.0.0.1:2); the service answers at /ratelimit and /update_ratelimit_record\n"),
    (["gateway", "--upstream", "http://127.0.0.1:1", "--service", "http://127.0.0.1:2",
      "--key-template", "{{request.cookie}}"],
     "error: key template '{{request.cookie}}': unknown attribute 'request.cookie'"),
    (["gateway", "--upstream", "http://127.0.0.1:1", "--plugin", "missing.yaml"],
     "error: missing.yaml: cannot read: No such file or directory"),
    (["mock-llm", "--completion-tokens", "lots"],
     "error: --completion-tokens 'lots': give N, LOW-HIGH or exp:MEAN"),
    (["up", "--rules", "missing-rules.json"], "error: missing-rules.json"),
])
def test_bad_input_is_one_line_and_exit_1(args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert result.output.startswith(message)
    assert len(result.output.strip().splitlines()) == 1


def test_port_in_use_and_bad_format() -> None:
    with socket.socket() as taken:
        taken.bind((LOOPBACK, 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = runner.invoke(app, ["mock-llm", "--port", str(port), "--duration", "0"])
    assert busy.exit_code == 1
    assert busy.output.startswith(f"error: cannot listen on {LOOPBACK}:{port}")
    assert runner.invoke(app, ["mock-llm", "--format", "xml"]).exit_code == 2


def test_up_in_process_prints_the_guide_and_stops_on_ctrl_c() -> None:
    ports = [free_port() for _ in range(3)]

    def client() -> int:
        return httpx.post(f"http://{LOOPBACK}:{ports[0]}/", json=BODY,
                          headers={"host": HOST, "user-type": "subscriber"}).status_code

    result, status = run_with_client(
        ["up", "--gateway-port", str(ports[0]), "--service-port", str(ports[1]),
         "--mock-port", str(ports[2])], ports[0], client)
    assert result.exit_code == 0, result.output
    assert status == 200
    gateway = f"http://{LOOPBACK}:{ports[0]}"
    assert f"  rate-limit service  http://{LOOPBACK}:{ports[1]}  (memory store; 2 rules" in (
        result.output)
    assert f"  mock LLM            http://{LOOPBACK}:{ports[2]}\n" in result.output
    assert (f"curl -s {gateway}/ -H 'Host: {HOST}' -H 'Content-Type: application/json' "
            "-H 'user-type: regular-user' -d '{\"messages\": [{\"role\": \"user\", "
            "\"content\": \"Who are you?\"}]}'\n") in result.output
    assert "-H 'user-type: subscriber'" in result.output
    assert re.search(r"\n\d\d:\d\d:\d\d 200 POST / \[subscriber\]\n", result.output)
    assert re.search(r"\n\d\d:\d\d:\d\d reported \[subscriber\] 60 completion tokens "
                     r"\(7 prompt, 67 total\)\n", result.output)
    assert result.output.endswith(
        "stopped: 1 allowed, 0 limited, 1 usage reports; all three servers shut down\n")


def _read_line(process: subprocess.Popen[str], timeout: float = 20.0) -> str:
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(process.stdout.readline()))  # type: ignore[union-attr]
    reader.start()
    reader.join(timeout)
    assert lines and lines[0], "no start-up line"
    return lines[0]


def test_up_as_a_subprocess_answers_the_guides_requests_and_stops_on_sigterm(
        tmp_path: Path) -> None:
    ports = [free_port() for _ in range(3)]
    process = subprocess.Popen(
        [sys.executable, "-m", "tokenlimit", "up", "--format", "json", "--duration", "120",
         "--gateway-port", str(ports[0]), "--service-port", str(ports[1]),
         "--mock-port", str(ports[2])],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        started = json.loads(_read_line(process))
        assert started["gateway"] == f"http://{LOOPBACK}:{ports[0]}"
        assert started["backend"] == "memory"
        assert [r["rate_limit_key_regex"] for r in started["rules"]] == [
            "regular-user.*", "subscriber.*"]
        codes: dict[str, list[int]] = {}
        reports = 0
        with httpx.Client(timeout=10) as client:
            for user in ("regular-user", "subscriber"):
                for _ in range(3):
                    answer = client.post(started["gateway"] + "/", json=BODY,
                                         headers={"host": HOST, "user-type": user})
                    codes.setdefault(user, []).append(answer.status_code)
                    if answer.status_code == 200:
                        reports += 1  # wait for the asynchronous report before going on
                        deadline = time.monotonic() + 10
                        while f"tokenlimit_reports_total {reports}\n" not in client.get(
                                started["service"] + "/metrics").text:
                            assert time.monotonic() < deadline
                            time.sleep(0.01)
                    else:
                        assert answer.text == f"{user} is being rate-limited"
        assert codes == {"regular-user": [200, 429, 429], "subscriber": [200, 200, 429]}
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=10)
    assert process.returncode == 0, err
    assert json.loads(out.splitlines()[-1]) == {
        "stopped": True,
        "gateway": {"requests": 6, "unmatched": 0, "allowed": 3, "limited": 3,
                    "service_errors": 0, "failed_open": 0, "failed_closed": 0,
                    "upstream_errors": 0, "client_gone": 0, "reports": 3, "report_errors": 0,
                    "no_usage": 0, "estimated": 0, "drained": 0, "too_large": 0,
                    "bad_requests": 0, "reports_spooled": 0, "reports_retried": 0,
                    "reports_dropped": 0},
        "mock_llm": {"requests": 3, "completions": 3, "prompt_tokens": 21,
                     "completion_tokens": 180}}
    for port in ports:  # all three really stopped
        with pytest.raises(OSError):
            socket.create_connection((LOOPBACK, port), timeout=1).close()


@pytest.mark.parametrize("command", ["gateway", "mock-llm", "up"])
def test_help_shows_an_example(command: str) -> None:
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert f"Example: tokenlimit {command}" in result.output


@pytest.mark.redis
def test_up_with_redis_keeps_the_buckets_in_redis(redis_server: RedisServer) -> None:
    import redis

    ports = [free_port() for _ in range(3)]

    def client() -> list[int]:
        codes = []
        for _ in range(2):
            answer = httpx.post(f"http://{LOOPBACK}:{ports[0]}/", json=BODY,
                                headers={"host": HOST, "user-type": "regular-user"})
            codes.append(answer.status_code)
            deadline = time.monotonic() + 10  # wait for the asynchronous usage report
            while answer.status_code == 200 and store.get("regular-user") != b"-10":
                assert time.monotonic() < deadline
                time.sleep(0.01)
        return codes

    store = redis.Redis(host=redis_server.host, port=redis_server.port)
    try:
        result, codes = run_with_client(
            ["up", "--redis-url", redis_server.url, "--gateway-port", str(ports[0]),
             "--service-port", str(ports[1]), "--mock-port", str(ports[2])], ports[0], client)
        assert result.exit_code == 0, result.output
        assert "(redis at 127.0.0.1:" in result.output
        assert codes == [200, 429]
        assert store.get("regular-user") == b"-10"
        assert store.exists("regular-user_last_fill_time") == 1
    finally:
        store.close()


def test_up_with_duration_stops_by_itself() -> None:
    result = runner.invoke(app, ["up", "--duration", "0.3", "--gateway-port", "0",
                                 "--service-port", "0", "--mock-port", "0", "--format", "json"])
    assert result.exit_code == 0, result.output
    first, last = (json.loads(line) for line in result.output.splitlines())
    assert first["host_match"] == [HOST] and first["fail_open"] is True
    assert last["stopped"] is True and last["gateway"]["requests"] == 0


def test_up_without_the_samples_names_its_built_in_rules(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # `pip install .` installs no samples/: up then runs the guide's rules built in, and said
    # they came "from <config-json>", an option the user never gave.
    monkeypatch.setattr("tokenlimit.cli.up.SAMPLE_RULES", tmp_path / "no-samples.json")
    result = runner.invoke(app, ["up", "--duration", "0.2", "--gateway-port", "0",
                                 "--service-port", "0", "--mock-port", "0"])
    assert result.exit_code == 0, result.output
    assert "  (memory store; 2 rules from <built-in: the ASM guide's rules>)\n" in result.output


def test_up_with_a_wasmplugin_uses_its_hosts_keys_and_fail_strategy(tmp_path: Path) -> None:
    manifest = tmp_path / "wasm.yaml"
    manifest.write_text(
        "apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\n"
        "metadata: {name: p}\nspec:\n  failStrategy: FAIL_CLOSE\n  pluginConfig:\n"
        "    matches: [{host: {exact: llm.example}}]\n"
        "    rateLimitKeys: ['{{request.headers.x-tier}}-{{request.url_path}}']\n"
        "    rateLimitService: {service: far.away.example, port: 80}\n")
    result = runner.invoke(app, ["up", "--plugin", str(manifest), "--duration", "0.2",
                                 "--gateway-port", "0", "--service-port", "0", "--mock-port",
                                 "0", "--format", "json"])
    assert result.exit_code == 0, result.output
    first = json.loads(result.output.splitlines()[0])
    assert (first["host_match"], first["key_templates"], first["fail_open"]) == (
        ["llm.example"], ["{{request.headers.x-tier}}-{{request.url_path}}"], False)
    assert first["service"].startswith(f"http://{LOOPBACK}:")  # the local service, not far away
    assert first["curl"][0].split(" -H ")[1] == "'Host: llm.example'"


def test_gateway_logs_one_line_per_outage() -> None:
    port, dead = free_port(), free_port()
    mock = BackgroundServers([Listener("mock", MockLLM(), bind(LOOPBACK, 0))]).start()
    try:
        def client() -> list[int]:
            return [httpx.post(f"http://{LOOPBACK}:{port}/", json=BODY,
                               headers={"user-type": "subscriber"}).status_code
                    for _ in range(3)]

        result, codes = run_with_client(
            ["gateway", "--upstream", mock.listeners[0].url, "--service",
             f"http://{LOOPBACK}:{dead}", "--port", str(port), "--fail-closed"], port, client)
    finally:
        mock.stop()
    assert result.exit_code == 0, result.output
    assert codes == [503, 503, 503]
    outage = [line for line in result.output.splitlines() if "rate-limit service" in line]
    assert len(outage) == 1
    assert outage[0].endswith(
        f"gateway: rate-limit service unreachable at http://{LOOPBACK}:{dead} "
        "(ConnectFailed); answering 503 (fail-closed) until it answers again")


@pytest.mark.parametrize(("fail", "then"), [([], "lets requests through"),
                                             (["--fail-closed"], "answers 503")])
def test_up_says_when_its_redis_does_not_answer(fail: list[str], then: str) -> None:
    # It started without a word; the only sign was the gateway's first fail-open line.
    port = free_port()  # nothing listens there
    result = runner.invoke(app, ["up", "--redis-url", f"redis://127.0.0.1:{port}",
                                 "--duration", "0.2", "--gateway-port", "0", "--service-port",
                                 "0", "--mock-port", "0", "--format", "json", *fail])
    assert result.exit_code == 0, result.output
    assert result.stderr == (f"warning: cannot connect to redis at 127.0.0.1:{port}: "
                             f"Connection refused: every check fails until it answers, and "
                             f"the gateway {then}\n")
