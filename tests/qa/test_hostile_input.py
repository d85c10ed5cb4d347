"""Regression tests for hostile and sloppy input found in QA: exact messages and exit codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.conftest import SAMPLES
from tokenlimit.cli.main import app

runner = CliRunner()
RULES = str(SAMPLES / "rules.json")
TRACE = str(SAMPLES / "trace.jsonl")


def _run(*args: str) -> Any:
    return runner.invoke(app, list(args))


def _error(result: Any) -> str:
    """The one stderr line of a tokenlimit error (exit 1), with no traceback."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return str(lines[0])


@pytest.mark.parametrize(("args", "message"), [
    (("--duration", "nan"), "error: duration must be a finite number of seconds > 0, got nan"),
    (("--duration", "inf"), "error: duration must be a finite number of seconds > 0, got inf"),
    (("--duration", "1e12"), "error: the spec asks for about 1,000,000,000,000 requests; at "
     "most 100,000,000 are generated (shorten the duration or lower the rates)"),
    (("--start", "nan"), "error: start must be a Unix time from 0 to 10000000000 seconds, "
     "got nan"),
    (("--seed", "-1"), "error: seed must be a whole number from 0 to 2**64-1, got -1"),
    (("--tier", "a:1:nan"), "error: tier 'a': field 'rate': must be a finite number, got nan"),
    (("--tier", "a:1000000000:1"), "error: tier 'a': field 'users': a whole number from 1 to "
     "10,000,000, got 1000000000"),
])
def test_trace_generate_rejects_numbers_numpy_cannot_draw(
        tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    # These raised numpy tracebacks (NaN, inf, negative seed) or ran out of memory / hung.
    out = tmp_path / "g.jsonl"
    base = ("--tier", "a:1:1") if "--tier" not in args else ()
    result = _run("trace", "generate", "-o", str(out), *base, *args)
    assert _error(result) == message
    assert not out.exists()


@pytest.mark.parametrize(("text", "message"), [
    (b"\xff\xfe\x00", "not UTF-8 text (byte 0)"),
    (b"duration: abc\n", "field 'duration': expected a number, got 'abc'"),
    (b"seed: 1.5\n", "field 'seed': expected a whole number, got 1.5"),
    (b"tiers: 5\n", "field 'tiers': expected a list of tiers"),
    (b"tiers:\n - 5\n", "tiers[0]: expected a mapping with name, users, rate, ..."),
    (b"tiers:\n - name: a\n   users: x\n",
     "tiers[0]: tier 'a': field 'users': expected a number, got 'x'"),
    (b"tiers:\n - name: a\n   rate: .nan\n",
     "tiers[0]: tier 'a': field 'rate': must be a finite number, got nan"),
])
def test_trace_generate_spec_errors_name_the_file_and_field(
        tmp_path: Path, text: bytes, message: str) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_bytes(text)
    out = tmp_path / "g.jsonl"
    out.write_text("keep\n")
    result = _run("trace", "generate", "-o", str(out), "--spec", str(spec))
    assert _error(result) == f"error: {spec}: {message}"
    assert out.read_text() == "keep\n"


@pytest.mark.parametrize(("args", "hint", "message"), [
    (("--top", "-1"), "--top", "must be >= 0"),
    (("--price", "-1"), "--price", "must be a finite number >= 0"),
    (("--price", "nan"), "--price", "must be a finite number >= 0"),
    (("--price", "inf"), "--price", "must be a finite number >= 0"),
    (("--set", "rules[0].max_tokens=abc"), "--set", "values must be whole numbers"),
    (("--key-template", "{{bad"), "--key-template", "unbalanced"),
])
def test_simulate_usage_errors_name_the_one_option_at_fault(
        args: tuple[str, ...], hint: str, message: str) -> None:
    # The hints read "--top/--price" and "--key-template/--set"; NaN and inf prices passed.
    result = _run("simulate", TRACE, "--rules", RULES, *args)
    assert result.exit_code == 2, result.output
    text = " ".join(result.stderr.replace("│", " ").split())
    assert f"Invalid value for {hint}:" in text
    assert message in text


@pytest.mark.parametrize(("args", "hint", "message"), [
    (("--redis-timeout", "nan"), "--redis-timeout", "must be a finite number of seconds > 0"),
    (("--redis-timeout", "0"), "--redis-timeout", "must be a finite number of seconds > 0"),
    (("--max-body-bytes", "-1"), "--max-body-bytes", "must not be negative"),
    (("--clock-offset", "nan"), "--clock-offset", "must be a finite number of seconds"),
    (("--backend", "foo"), "--backend", "choose one of memory, redis, redis-cluster"),
    (("--estimate", "5"), "--estimate", "estimates are used only with --mode reserve"),
])
def test_serve_refuses_options_it_cannot_use(
        args: tuple[str, ...], hint: str, message: str) -> None:
    # NaN timeouts and offsets, negative body limits and --estimate without reserve mode
    # started a service silently; an unknown --backend exited 1 instead of 2.
    result = _run("serve", "--rules", RULES, "--port", "1", *args)
    assert result.exit_code == 2, result.output
    text = " ".join(result.stderr.replace("│", " ").split())
    assert f"Invalid value for {hint}: {message}" in text



@pytest.mark.parametrize(("url", "message"), [
    ("http://[::1", "not a valid URL (Invalid IPv6 URL)"),
    ("http://127.0.0.1:99999", "not a valid URL (Port out of range 0-65535)"),
    ("http://:80", "the URL has no host"),
    ("http://127.0.0.1:0", "port 0 is not a port to connect to"),
])
def test_gateway_refuses_malformed_upstream_urls_at_start(url: str, message: str) -> None:
    # These started a gateway whose every request then failed.
    result = _run("gateway", "-u", url, "-s", "http://127.0.0.1:1", "--port", "0",
                  "--duration", "0")
    assert _error(result) == f"error: --upstream {url!r}: {message}"


@pytest.mark.parametrize("command", [["gateway", "-u", "http://127.0.0.1:1", "-s",
                                      "http://127.0.0.1:1", "--port", "0"],
                                     ["up", "--gateway-port", "0", "--service-port", "0",
                                      "--mock-port", "0"]])
def test_a_non_utf8_plugin_is_one_line_not_a_traceback(
        tmp_path: Path, command: list[str]) -> None:
    plugin = tmp_path / "plugin.yaml"
    plugin.write_bytes(b"kind: \xff\xfe\n")
    result = _run(*command, "--plugin", str(plugin), "--duration", "0")
    assert _error(result) == f"error: {plugin}: not UTF-8 text (byte 6)"


@pytest.mark.parametrize("spec", ["99999999999999999999999", "1-2000000", "exp:2000000"])
def test_mock_llm_refuses_answers_too_long_to_build(spec: str) -> None:
    # A huge count started the mock, whose first answer then hung building its text.
    result = _run("mock-llm", "--port", "0", "--completion-tokens", spec, "--duration", "0")
    assert _error(result) == (
        f"error: --completion-tokens {spec!r}: at most 1,000,000 tokens per answer")


def _leaf_commands() -> list[tuple[str, Any]]:
    import typer.main

    group = typer.main.get_command(app)
    found: list[tuple[str, Any]] = []

    def walk(prefix: str, command: Any) -> None:
        subcommands = getattr(command, "commands", None)
        if subcommands:
            for name, sub in subcommands.items():
                walk(f"{prefix} {name}".strip(), sub)
        else:
            found.append((prefix, command))

    walk("", group)
    return found


@pytest.mark.parametrize(("name", "command"), _leaf_commands())
def test_every_command_has_a_one_line_summary_and_an_example(name: str, command: Any) -> None:
    # gateway, mock-llm and up broke their first paragraph mid-sentence; gateway's example
    # was split over two lines; render check ran "Also: ..." and its example together.
    paragraphs = (command.help or "").strip().split("\n\n")
    assert "\n" not in paragraphs[0], paragraphs[0]
    examples = [p for p in paragraphs if p.strip().startswith("Example: ")]
    assert len(examples) == 1 and "\n" not in examples[0].strip(), paragraphs
    assert f"tokenlimit {name}" in examples[0]


@pytest.mark.parametrize("option", ["--decisions", "--plot"])
def test_simulate_refuses_an_unwritable_output_before_replaying(
        tmp_path: Path, option: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The path was only tried after the whole replay: minutes lost on a big trace.
    import tokenlimit.cli.simulate as command

    def must_not_run(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("the trace was read before the output path was checked")

    monkeypatch.setattr(command, "read_trace", must_not_run)
    missing = tmp_path / "nodir" / "out"
    result = _run("simulate", TRACE, "--rules", RULES, option, str(missing))
    assert _error(result) == (f"error: {missing}: cannot write: No such directory "
                              f"{str(missing.parent)!r}")
    result = _run("simulate", TRACE, "--rules", RULES, option, str(tmp_path))
    assert _error(result) == f"error: {tmp_path}: cannot write: Is a directory"


@pytest.mark.parametrize(("name", "text"), [("empty.jsonl", ""), ("blank.jsonl", "\n\n"),
                                            ("header.csv", "ts,key,prompt_tokens\n")])
def test_simulate_an_empty_trace_is_an_error_not_a_report_of_zeros(
        tmp_path: Path, name: str, text: str) -> None:
    trace = tmp_path / name
    trace.write_text(text)
    result = _run("simulate", str(trace), "--rules", RULES)
    assert _error(result) == (f"error: {trace}: no requests in the trace (empty file, or only "
                              "a header or blank lines)")
    assert result.stdout == ""


def test_numba_without_a_writable_cache_compiles_in_memory(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Run by a user who cannot write the install's __pycache__ (nor has a home), every
    # simulate and CSV trace raised "RuntimeError: cannot cache function ...: no locator".
    import numba

    from tokenlimit.sim.jit import njit

    real = numba.njit

    def no_locator(*args: Any, **options: Any) -> Any:
        if options.get("cache"):
            raise RuntimeError("cannot cache function 'f': no locator available for file 'x'")
        return real(*args, **options)

    monkeypatch.setattr(numba, "njit", no_locator)

    def double(x: int) -> int:
        return 2 * x

    compiled = njit(double, error_model="numpy")
    assert compiled(21) == 42
    assert compiled.py_func is double


@pytest.mark.parametrize(("args", "message"), [
    (("-",), "Invalid value for TRACE: a trace is read from a file, not stdin: save it to a "
     "file first"),
    ((TRACE, "--key-field", "key", "--key-template", "{{request.headers.x}}"),
     "Invalid value for --key-field: give --key-field or --key-template, not both"),
])
def test_simulate_conflicting_or_unsupported_inputs_are_usage_errors(
        args: tuple[str, ...], message: str) -> None:
    # "-" said "-: cannot read: No such file or directory"; both key options were accepted
    # and one was silently ignored.
    result = _run("simulate", *args, "--rules", RULES)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.stderr.replace("│", " ").split())


def test_up_with_one_port_twice_is_a_usage_error_not_address_in_use() -> None:
    # The second server failed with "Address already in use", blaming some other program.
    result = _run("up", "--gateway-port", "18123", "--service-port", "18123", "--mock-port",
                  "0", "--duration", "0")
    assert result.exit_code == 2, result.output
    assert ("Invalid value for --gateway-port: --gateway-port, --service-port and --mock-port "
            "must differ (or be 0)") in " ".join(result.stderr.replace("│", " ").split())


@pytest.mark.parametrize(("value", "kind"), [("[\"a\"]", "an array"), ("{}", "an object"),
                                             ("true", "a bool")])
def test_wrong_type_findings_use_the_right_article(value: str, kind: str) -> None:
    # "rate_limit_key_regex is a array".
    result = _run("validate", "--config-json", f'[{{"rate_limit_key_regex": {value}}}]')
    assert result.exit_code == 1
    assert f"rate_limit_key_regex is {kind}, not a string" in result.stdout


@pytest.mark.parametrize(("text", "message"), [
    ("ts;key;prompt_tokens\n1;a;1\n", "1: field 'ts': the header has no 'ts' (or 'timestamp') "
     "column; it reads 'ts;key;prompt_tokens' (columns are separated by commas)"),
    ("ts,key,key,prompt_tokens\n1,a,b,1\n", "1: field 'key': the header names this column "
     "twice"),
])
def test_csv_header_mistakes_are_reported_at_the_header(
        tmp_path: Path, text: str, message: str) -> None:
    # A semicolon-separated file blamed line 2 for a missing 'ts'; a duplicated column was
    # silently read from one of its two copies.
    trace = tmp_path / "t.csv"
    trace.write_text(text)
    result = _run("simulate", str(trace), "--rules", RULES)
    assert _error(result) == f"error: {trace}:{message}"


@pytest.mark.parametrize("option", ["--ttft", "--tokens-per-second"])
def test_mock_llm_refuses_infinite_delays(option: str) -> None:
    # --ttft inf made every answer wait forever (and the mock's stop wait for it).
    result = _run("mock-llm", "--port", "0", option, "inf", "--duration", "0")
    assert result.exit_code == 2, result.output
    text = " ".join(result.stderr.replace("│", " ").split())
    assert f"Invalid value for {option}: must be a finite number" in text


def test_a_second_ctrl_c_stops_a_server_with_answers_in_flight_at_once(tmp_path: Path) -> None:
    # The first Ctrl-C waits for answers in flight (here a 60 s first token); the second one
    # did nothing, so the user waited for the server's 10 s graceful timeout.
    import signal
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "tokenlimit", "mock-llm", "--port", str(port), "--ttft", "60",
         "--duration", "30"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    client = None
    try:
        assert server.stdout is not None
        assert "listening" in server.stdout.readline()
        client = socket.create_connection(("127.0.0.1", port), timeout=5)
        body = b'{"messages": [{"role": "user", "content": "hi"}]}'
        client.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: "
                       + str(len(body)).encode() + b"\r\n\r\n" + body)
        _wait_for_requests(port, 1)
        server.send_signal(signal.SIGINT)
        time.sleep(0.3)  # the first signal must be handled before the second arrives
        server.send_signal(signal.SIGINT)
        server.wait(timeout=8)  # TimeoutExpired: the second Ctrl-C was ignored
        assert server.returncode == 0
    finally:
        if client is not None:
            client.close()
        if server.poll() is None:
            server.kill()
        server.communicate(timeout=5)


def _wait_for_requests(port: int, count: int) -> None:
    """Poll the mock's /__stats (bounded) until it has seen ``count`` requests."""
    import http.client
    import json
    import time

    for _ in range(100):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            connection.request("GET", "/__stats")
            if json.loads(connection.getresponse().read())["requests"] >= count:
                return
        finally:
            connection.close()
        time.sleep(0.05)
    raise AssertionError("the mock never saw the request")


def test_gateway_refuses_an_infinite_service_timeout() -> None:
    # inf was accepted: a hung rate-limit service then held every request forever.
    result = _run("gateway", "-u", "http://127.0.0.1:1", "-s", "http://127.0.0.1:1",
                  "--service-timeout", "inf", "--port", "0", "--duration", "0")
    assert result.exit_code == 2, result.output
    text = " ".join(result.stderr.replace("│", " ").split())
    assert "Invalid value for '--service-timeout': Input should be less than or equal to 3600" \
        in text


@pytest.mark.parametrize("rules", [(), ("--rules", RULES, "--config-json", "[]")])
def test_simulate_without_exactly_one_rules_source_names_its_own_options(
        rules: tuple[str, ...]) -> None:
    # It said "<rules>: give exactly one rules source: a file (or -), ..." (validate's
    # wording: simulate has no rules file argument) and exited 1.
    result = _run("simulate", TRACE, *rules)
    assert result.exit_code == 2, result.output
    text = " ".join(result.stderr.replace("│", " ").split())
    assert "Invalid value for --rules: give exactly one of --rules SOURCE, --config-json or " \
        "--from-env" in text


def test_simulate_negative_seed_is_a_usage_error(tmp_path: Path) -> None:
    # With a line lacking completion_tokens (imputed), --seed -1 was a numpy traceback.
    trace = tmp_path / "t.jsonl"
    trace.write_text('{"ts": 1, "key": "regular-user-1", "prompt_tokens": 1}\n')
    result = _run("simulate", str(trace), "--rules", RULES, "--seed", "-1")
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    text = " ".join(result.stderr.replace("│", " ").split())
    assert "Invalid value for '--seed': Input should be greater than or equal to 0" in text


def test_imputing_with_a_negative_seed_is_a_config_error() -> None:
    from tokenlimit.errors import ConfigError
    from tokenlimit.sim.imputation import MISSING, impute_completion

    completion = np.array([MISSING], dtype=np.int64)
    with pytest.raises(ConfigError, match=r"^seed must be a whole number >= 0, got -1$"):
        impute_completion(completion, np.array([0, 1]), np.array([0]), -1)


def test_trace_generate_dash_writes_json_lines_to_stdout(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # "-o -" wrote a file named "-" in the current directory.
    monkeypatch.chdir(tmp_path)
    result = _run("trace", "generate", "-o", "-", "--tier", "a:1:0.01", "--duration", "300",
                  "--seed", "3")
    assert result.exit_code == 0, result.output
    assert result.stdout == ('{"ts": 1700000240.382, "key": "a-00000", "latency": 3.1, '
                             '"prompt_tokens": 228, "completion_tokens": 168, '
                             '"total_tokens": 396}\n')
    assert result.stderr == "wrote 1 request for 1 key to stdout\n"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("option", ["--decisions", "--plot"])
def test_simulate_outputs_to_stdout_are_usage_errors(
        tmp_path: Path, option: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # "--decisions -" wrote a file named "-".
    monkeypatch.chdir(tmp_path)
    result = _run("simulate", TRACE, "--rules", RULES, option, "-")
    assert result.exit_code == 2, result.output
    text = " ".join(result.stderr.replace("│", " ").split())
    assert f"Invalid value for {option}: stdout carries the report: give a file" in text
    assert list(tmp_path.iterdir()) == []


def test_render_output_dir_dash_is_stdout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # "-o -" created a directory named "-".
    monkeypatch.chdir(tmp_path)
    result = _run("render", "all", "--rules", RULES, "-o", "-")
    assert result.exit_code == 0, result.output
    assert result.stdout == _run("render", "all", "--rules", RULES).stdout
    assert result.stdout.startswith("---\n")
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_while_the_command_loads_is_quiet_then_an_interrupt_again() -> None:
    # Ctrl-C in the first second of a run printed a traceback from inside an import.
    import subprocess
    import sys

    code = ("import signal, sys; sys.argv[0] = 'tokenlimit'; import tokenlimit.cli.main as m; "
            "print(signal.getsignal(signal.SIGINT) is signal.SIG_DFL); "
            "signal.signal = lambda *a: print(a[1] is signal.default_int_handler); "
            "m.app = lambda: None; m.run()")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.split() == ["True", "True"]


def test_simulate_sweep_values_beyond_int64_are_a_usage_error() -> None:
    # "OverflowError: Python int too large to convert to C long" from the engine.
    result = _run("simulate", TRACE, "--rules", RULES, "--set",
                  "rules[0].max_tokens=99999999999999999999999")
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    text = " ".join(result.stderr.replace("│", " ").split())
    assert "values must fit a 64-bit int (-9223372036854775808 to 9223372036854775807)" in text


@pytest.mark.parametrize("host", ["", "http://foo.com", "foo.com/v1"])
def test_gateway_refuses_host_matches_that_are_not_host_names(host: str) -> None:
    # '' was announced as "limits every host" and a URL matched no request: both silently
    # limited nothing.
    result = _run("gateway", "-u", "http://127.0.0.1:1", "-s", "http://127.0.0.1:1",
                  "--host-match", host, "--port", "0", "--duration", "0")
    assert _error(result) == (f"error: --host-match {host!r}: give a host name such as "
                              "dashscope.aliyuncs.com (no scheme, path or spaces)")


def test_trace_generate_counts_the_keys_that_have_requests(tmp_path: Path) -> None:
    # Five seconds of the default tiers: a few requests; it said "for 25 keys" (every user).
    out = tmp_path / "t.jsonl"
    result = _run("trace", "generate", "-o", str(out), "--duration", "5")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    keys = {line["key"] for line in lines}
    assert 0 < len(keys) < 25
    assert result.stderr == (f"wrote {len(lines)} request{'s' if len(lines) > 1 else ''} for "
                             f"{len(keys)} key{'s' if len(keys) > 1 else ''} to {out}\n")


def test_trace_generate_writes_parquet_for_a_parquet_name(tmp_path: Path) -> None:
    # -o t.parquet wrote JSON Lines under that name, which simulate then refused ("not a
    # readable Parquet file").
    import polars as pl

    out, text = tmp_path / "t.parquet", tmp_path / "t.jsonl"
    for path in (out, text):
        result = _run("trace", "generate", "-o", str(path), "--duration", "60", "--seed", "4")
        assert result.exit_code == 0, result.output
    frame = pl.read_parquet(out)
    lines = [json.loads(line) for line in text.read_text().splitlines()]
    assert frame.columns == ["ts", "key", "latency", "prompt_tokens", "completion_tokens",
                             "total_tokens"]
    assert frame.to_dicts() == lines
    bad = _run("trace", "generate", "-o", str(tmp_path / "t.parquet.gz"))
    assert bad.exit_code == 1 and "Parquet is compressed inside" in bad.stderr
