"""A hostile user's inputs: each is a usage error (2) or one line naming what is wrong (1),
never a traceback, a hang or a partial file."""

from __future__ import annotations

import json
import re
import shutil
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from typer.testing import CliRunner

from tests.conftest import free_port
from tests.load.test_replay import usage_text
from tokenlimit.cli.main import app

runner = CliRunner()
DEAD = "http://127.0.0.1:1/"


@pytest.mark.parametrize(("args", "message"), [
    (["--rate", "0"], "Invalid value for --rate: must be a finite number > 0, got 0"),
    (["--rate", "-1"], "Invalid value for --rate: must be a finite number > 0, got -1"),
    (["--rate", "nan"], "Invalid value for --rate: must be a finite number > 0, got nan"),
    (["--rate", "inf"], "Invalid value for --rate: must be a finite number > 0, got inf"),
    (["--duration", "0"], "Invalid value for --duration: must be a finite number > 0, got 0"),
    (["--duration", "-2"], "Invalid value for --duration: must be a finite number > 0, got -2"),
    (["--duration", "nan"], "Invalid value for --duration: must be a finite number > 0, got nan"),
    (["--requests", "0"], "Invalid value for --requests: must be > 0"),
    (["--timeout", "nan"], "Invalid value for --timeout: must be a finite number > 0, got nan"),
    (["--tolerance", "nan"],
     "Invalid value for --tolerance: must be a finite number >= 0, got nan"),
    (["--report-window", "-1"],
     "Invalid value for --report-window: must be a finite number >= 0, got -1"),
    (["--workers", "0"], "Invalid value for '--workers' / '-w'"),
    (["--key", "=x:1"], "Invalid value: --key '=x:1': write HEADER=VALUE:WEIGHT with a "
     "weight > 0 (e.g. user-type=regular-user:3)"),
    (["--key", "user-type=x:0"], "--key 'user-type=x:0': write HEADER=VALUE:WEIGHT"),
    (["--key", "user-type=x:-1"], "--key 'user-type=x:-1': write HEADER=VALUE:WEIGHT"),
    (["--key", "user-type=x:nan"], "--key 'user-type=x:nan': write HEADER=VALUE:WEIGHT"),
    (["--key", "user-type=x:inf"], "--key 'user-type=x:inf': write HEADER=VALUE:WEIGHT"),
    (["--key", "user-type="], "--key 'user-type=': write HEADER=VALUE:WEIGHT"),
    (["--key", "bad header=x"], "--key 'bad header=x': 'bad header' is not an HTTP header name"),
    (["--key", "user-type=a\r\nX-Injected: 1"], "the value holds a control character"),
    (["--host-header", "a\r\nX-Injected: 1"],
     "Invalid value for --host-header: give a host name without control characters"),
    (["--mode", "service", "--tokens", "nan"],
     "Invalid value: --tokens 'nan': need finite numbers 0 <= LO <= HI"),
    (["--mode", "service", "--latency", "0-inf"],
     "Invalid value: --latency '0-inf': need finite numbers 0 <= LO <= HI"),
    (["--ramp", "10xnan"],
     "Invalid value: --ramp: '10xnan': rate and seconds must be finite numbers > 0"),
    (["--ramp", ""], "Invalid value: --ramp: '' is not RATExSECONDS (e.g. 50x2)"),
    # each worker ran one user at least: 3 users ran, the report said 2
    (["-c", "2", "-w", "3"], "Invalid value for --workers: 3 workers for --concurrency 2: "
     "each worker runs one user at least; give --concurrency 3 or more, or fewer workers"),
    (["-w", "2"], "Invalid value for --workers: 2 workers for --concurrency 1: each worker "
     "runs one user at least; give --concurrency 2 or more, or fewer workers"),
])
def test_bad_options_are_usage_errors(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["loadtest", DEAD, *args])
    assert result.exit_code == 2, result.output
    assert message in usage_text(result.stderr)
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("target", "message"), [
    ("ftp://127.0.0.1:8443/", "Invalid value: target 'ftp://127.0.0.1:8443/': give an "
     "http:// or https:// URL"),
    ("http:///v1", "Invalid value: target 'http:///v1': give an http:// or https:// URL"),
    ("http://127.0.0.1:99999/", "Invalid value: target 'http://127.0.0.1:99999/': bad port"),
    ("https://127.0.0.1:99999/", "Invalid value: target 'https://127.0.0.1:99999/': bad port"),
    ("127.0.0.1:8080", "Invalid value: target '127.0.0.1:8080': give an http:// or https:// "
     "URL"),
])
def test_a_bad_target_is_a_usage_error(target: str, message: str) -> None:
    result = runner.invoke(app, ["loadtest", target, "-n", "1"])
    assert result.exit_code == 2, result.output
    assert message in usage_text(result.stderr)


@pytest.mark.parametrize(("name", "text", "message"), [
    ("rules.json", None, "rules.json: no such file"),
    ("rules.json", "garbage", "rules.json:1:1: invalid JSON: unexpected 'g'"),
    ("rules.json", "", "rules.json:1:1: invalid JSON: the text is empty"),
])
def test_a_bad_rules_file_is_one_line(tmp_path: Path, name: str, text: str | None,
                                      message: str) -> None:
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    result = runner.invoke(app, ["loadtest", DEAD, "--rules", str(path)])
    assert result.exit_code == 1, result.output
    assert result.stderr == f"error: {tmp_path}/{message}\n"


def test_output_into_a_missing_folder_fails_before_the_run(tmp_path: Path) -> None:
    out = tmp_path / "nowhere" / "r.json"
    result = runner.invoke(app, ["loadtest", DEAD, "-n", "1", "-o", str(out)])
    assert result.exit_code == 1
    assert result.stderr == (f"error: {out}: cannot write: No such directory "
                             f"{str(out.parent)!r}\n")
    assert not out.parent.exists()


def test_output_onto_a_folder_is_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "adir"
    folder.mkdir()
    result = runner.invoke(app, ["loadtest", DEAD, "-n", "1", "-o", str(folder)])
    assert result.exit_code == 1
    assert result.stderr == f"error: {folder}: cannot write: Is a directory\n"
    assert list(tmp_path.iterdir()) == [folder] and list(folder.iterdir()) == []


def test_write_atomic_leaves_no_partial_file_when_the_rename_fails(tmp_path: Path) -> None:
    from tokenlimit.errors import ConfigError
    from tokenlimit.files import write_atomic

    folder = tmp_path / "adir"
    (folder / "inside").mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"adir: cannot write: Is a directory"):
        write_atomic(str(folder), b"{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir"]
    write_atomic(str(tmp_path / "r.json"), b"{}")
    assert (tmp_path / "r.json").stat().st_mode & 0o777 != 0o600  # not mkstemp's mode


def test_a_port_with_nothing_listening_is_exit_1_with_the_report(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    url = f"http://127.0.0.1:{free_port()}"
    result = runner.invoke(app, ["loadtest", url, "-n", "3", "-o", str(out)])
    assert result.exit_code == 1
    assert result.stderr.endswith(f"error: {url}: no request was answered (connection-refused 3)\n")
    assert json.loads(out.read_text())["requests"]["errors"] == 3


@contextmanager
def raw_server(answer: bytes | None) -> Iterator[str]:
    """A loopback server that reads each request and writes ``answer`` (``None``: closes at
    once), for as many requests as a connection sends."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    while answer is not None and conn.recv(65536):
                        conn.sendall(answer)
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


@pytest.mark.parametrize(("answer", "mode", "message"), [
    (None, "gateway", "no request was answered (transport-error 3)"),
    (b"garbage garbage\r\n\r\n", "gateway", "no request was answered (transport-error 3)"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: zz\r\n\r\n", "service",
     "no request was answered (transport-error 3)"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nnot json", "service",
     "every request failed (bad-answer 3)"),
    (b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", "gateway",
     "every request failed (HTTP 404 3)"),
])
def test_a_target_answering_garbage_is_exit_1(answer: bytes | None, mode: str,
                                              message: str) -> None:
    with raw_server(answer) as url:
        result = runner.invoke(app, ["loadtest", url, "--mode", mode, "-n", "3",
                                     "--timeout", "2", "--format", "json"])
    assert result.exit_code == 1, result.output
    assert result.stderr == f"error: {url}: {message}\n"
    assert json.loads(result.stdout)["requests"]["errors"] == 3


def _report(tmp_path: Path) -> dict[str, object]:
    out = tmp_path / "r.json"
    with raw_server(b"HTTP/1.1 200 OK\r\nContent-Length: 15\r\n\r\n{\"allow\": true}") as url:
        result = runner.invoke(app, ["loadtest", url, "--mode", "service", "-n", "2",
                                     "--latency", "0", "-o", str(out)])
    assert result.exit_code == 0, result.output
    data: dict[str, object] = json.loads(out.read_text())
    return data


@pytest.mark.parametrize(("change", "message"), [
    ({"schema": "tokenlimit-loadtest/2"}, "field 'schema': 'tokenlimit-loadtest/2' is not "
     "supported (this tokenlimit reads tokenlimit-loadtest/1); merge reports of one version"),
    ({"schema": None}, "not a tokenlimit loadtest report (schema tokenlimit-loadtest/1)"),
    ({"raw": "x"}, "field 'raw': expected an object of counts and histograms"),
    ({"workers": None, "target": None, "raw": None},
     "field 'raw': expected an object of counts and histograms"),
])
def test_merge_refuses_other_versions_and_broken_reports(
        tmp_path: Path, change: dict[str, object], message: str) -> None:
    data = _report(tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**data, **change}))
    result = runner.invoke(app, ["loadtest", "merge", str(tmp_path / "r.json"), str(bad)])
    assert result.exit_code == 1, result.output
    assert result.stderr == f"error: {bad}: {message}\n"


def test_merge_refuses_non_json_and_a_missing_field(tmp_path: Path) -> None:
    data = _report(tmp_path)
    text = tmp_path / "t.json"
    text.write_text("nope")
    result = runner.invoke(app, ["loadtest", "merge", str(text)])
    assert (result.exit_code, result.stderr) == (
        1, f"error: {text}: not JSON: Expecting value: line 1 column 1 (char 0)\n")
    del data["mode"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    result = runner.invoke(app, ["loadtest", "merge", str(bad)])
    assert (result.exit_code, result.stderr) == (1, f"error: {bad}: field 'mode': missing\n")
    result = runner.invoke(app, ["loadtest", "merge"])
    assert result.exit_code == 2


def test_help_wraps_its_paragraphs_and_keeps_the_example_on_one_line() -> None:
    result = runner.invoke(app, ["loadtest", "--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0
    lines = [line.strip(" │") for line in result.stdout.splitlines()]
    assert "Drive load against a live limiter and check what it let through." in lines
    assert ("Example: tokenlimit loadtest http://127.0.0.1:8080 --mode service -r "
            "samples/rules.json -n 200") in lines



WARNED_RULES = json.dumps([{"rate_limit_key_regex": "^u$", "max_tokens": 100,
                            "tokens_per_fill": 10, "fill_interval_second": 60,
                            "redis_expired_seconds": 30}])


def test_loadtest_says_rule_warnings_on_stderr_as_every_command_does() -> None:
    # loadtest and up dropped the warnings that validate, simulate and render print.
    result = runner.invoke(app, ["loadtest", DEAD, "-n", "1", "--config-json", WARNED_RULES])
    warnings = [line for line in result.stderr.splitlines() if " TL204 " in line]
    assert len(warnings) == 1, result.stderr
    assert warnings[0].startswith("<config-json>:1:")


def test_up_says_rule_warnings_on_stderr(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    from tokenlimit.cli.up import guide_rules

    rules_file = tmp_path / "rules.json"
    rules_file.write_text(WARNED_RULES, encoding="utf-8")
    assert [r.regex for r in guide_rules(str(rules_file)).rules] == ["^u$"]
    warnings = [line for line in capsys.readouterr().err.splitlines() if " TL204 " in line]
    assert len(warnings) == 1
    assert warnings[0].startswith(f"{rules_file}:1:")


class _Http10Handler(BaseHTTPRequestHandler):
    """Python's http.server as a homemade mock LLM or service is often written: HTTP/1.0, no
    Content-Length, so every answer ends when the server closes the connection."""

    def do_GET(self) -> None:  # the service's check
        self._answer(b'{"allow":true,"description":"ok"}')

    def do_POST(self) -> None:  # a chat completion, or the service's usage report
        self.rfile.read(int(self.headers["Content-Length"]))
        if self.path == "/update_ratelimit_record":
            self._answer(b"")
        else:
            self._answer(json.dumps({"choices": [{"message": {"content": "hi"}}], "usage": {
                "prompt_tokens": 3, "completion_tokens": 7, "total_tokens": 10}}).encode())

    def _answer(self, body: bytes) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


@pytest.mark.parametrize(("mode", "tokens"), [("gateway", 21), ("service", 30)])
def test_an_answer_that_ends_when_the_server_closes_is_whole(mode: str, tokens: int) -> None:
    # RFC 9112 6.3: an answer with neither Content-Length nor chunks ends at the close. Such
    # answers were each a transport-error and the run exit 1 ("no request was answered").
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Http10Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        result = runner.invoke(app, ["loadtest", url, "--mode", mode, "-n", "3", "--tokens",
                                     "10", "--latency", "0", "--timeout", "2", "--format",
                                     "json"])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["requests"] == {"sent": 3, "completed": 3, "answered": 3, "allowed": 3,
                                "limited": 0, "errors": 0}
    assert (data["statuses"], data["errors"]) == ({"200": 3}, {})
    assert data["keys"]["regular-user"]["tokens_admitted"] == tokens
    if mode == "service":
        assert data["report_statuses"] == {"200": 3}


@pytest.mark.parametrize("copies", [1, 2])
def test_merging_an_interrupted_run_is_not_itself_interrupted(tmp_path: Path,
                                                              copies: int) -> None:
    # Merging one interrupted report exited 130, as if the merge had been stopped by Ctrl-C
    # (two such reports gave 0): a CI job globbing reports/*.json saw a cancelled step.
    data = _report(tmp_path)
    stopped = tmp_path / "stopped.json"
    stopped.write_text(json.dumps({**data, "interrupted": True}))
    result = runner.invoke(app, ["loadtest", "merge", *[str(stopped)] * copies,
                                 "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["interrupted"] is True
    assert result.stderr == "interrupted: a merged run was stopped early (its part is partial)\n"


class _PathsHandler(BaseHTTPRequestHandler):
    """Records each request target; answers a chat completion (HTTP/1.1, keep-alive)."""

    protocol_version = "HTTP/1.1"
    paths: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.paths.append(self.path)
        body = b'{"usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


def test_a_gateway_url_keeps_its_query() -> None:
    # Azure OpenAI-style gateways need ?api-version=...: the query was dropped, so every
    # request went to the bare path (a 404 or 400 from such a gateway, exit 1).
    _PathsHandler.paths = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _PathsHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = (f"http://127.0.0.1:{server.server_address[1]}/openai/deployments/gpt-4o/chat/"
               "completions?api-version=2024-10-21")
        result = runner.invoke(app, ["loadtest", url, "-n", "2", "--format", "json"])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    assert result.exit_code == 0, result.output
    assert _PathsHandler.paths == ["/openai/deployments/gpt-4o/chat/completions"
                                   "?api-version=2024-10-21"] * 2


def test_a_service_url_with_a_query_is_a_usage_error() -> None:
    result = runner.invoke(app, ["loadtest", "http://127.0.0.1:1/?x=1", "--mode", "service"])
    assert result.exit_code == 2, result.output
    assert "Invalid value for TARGET_URL: the service's base URL takes no query (its paths " \
           "and query are the plug-in's)" in usage_text(result.stderr)


ANCHORED = json.dumps([{"rate_limit_key_regex": "^regular-user$", "max_tokens": 100,
                        "tokens_per_fill": 50, "fill_interval_second": 60,
                        "redis_expired_seconds": 600}])


@pytest.mark.parametrize("replay", [False, True])
def test_unique_keys_under_an_anchored_rule_are_warned_about(tmp_path: Path,
                                                             replay: bool) -> None:
    # 'regular-user-3f9a1c02' matches no '^regular-user$' rule: nothing was ever limited and
    # conformance said 100 % agreement, without a word.
    trace = tmp_path / "t.csv"
    trace.write_text("ts,key\n1,other\n2,regular-user\n")
    shape = ["--replay", str(trace)] if replay else ["-k", "regular-user:1"]
    result = runner.invoke(app, ["loadtest", DEAD, "--mode", "service", "-n", "1",
                                 "--config-json", ANCHORED, "--unique-keys", *shape])
    first = result.stderr.splitlines()[0]
    assert re.fullmatch(
        r"warning: --unique-keys: 'regular-user-[0-9a-f]{8}' matches no rule, where "
        r"'regular-user' matches rule 0 \('\^regular-user\$'\): its requests are never "
        r"limited; run without --unique-keys on keys with no state in the service", first), first
    unanchored = ANCHORED.replace("^regular-user$", "^regular-user")
    result = runner.invoke(app, ["loadtest", DEAD, "--mode", "service", "-n", "1",
                                 "--config-json", unanchored, "--unique-keys", *shape])
    assert "warning" not in result.stderr


def test_merging_the_format_json_summary_says_to_merge_output_files(tmp_path: Path) -> None:
    # `loadtest ... --format json > a.json` then `merge a.json`: the error spoke of counts and
    # histograms, not of which file to give.
    data = _report(tmp_path)
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({k: v for k, v in data.items() if k != "raw"}))
    result = runner.invoke(app, ["loadtest", "merge", str(tmp_path / "r.json"), str(summary)])
    assert (result.exit_code, result.stderr) == (
        1, f"error: {summary}: field 'raw': missing: this is the summary that --format json "
        "prints; merge the reports that --output writes\n")


class _RemovingHandler(_Http10Handler):
    """Answers as the service, removing ``folder`` at the first request it gets."""

    folder: ClassVar[Path]

    def do_GET(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
        super().do_GET()


def test_the_report_is_printed_when_output_cannot_be_written_at_the_end(
        tmp_path: Path) -> None:
    # --output's folder went away during the run: the error came alone, the whole run's
    # results (never printed) were lost.
    _RemovingHandler.folder = tmp_path / "reports"
    _RemovingHandler.folder.mkdir()
    out = _RemovingHandler.folder / "r.json"
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RemovingHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        result = runner.invoke(app, ["loadtest", url, "--mode", "service", "-n", "3",
                                     "--latency", "0", "--format", "json", "-o", str(out)])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    assert result.exit_code == 1, result.output
    assert json.loads(result.stdout)["requests"]["answered"] == 3
    assert result.stderr == f"error: {out}: cannot write: No such file or directory\n"
