"""``--replay`` through the real CLI: every trace format ``simulate`` reads, exact counts."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.load.servers import AdmitAllHandler, AsmServiceHandler, serve
from tokenlimit.cli.main import app
from tokenlimit.rules.model import Rule

RULES = [Rule(0, "regular-user.*", 300, 100, 1, 300)]
runner = CliRunner()


def usage_text(stderr: str) -> str:
    """A usage error's message without the box drawn around it, on one line."""
    return " ".join(stderr.translate({ord(c): " " for c in "│╭╮╰╯─"}).split())


def _replay(url: str, trace: Path, *extra: str) -> dict[str, Any]:
    result = runner.invoke(app, ["loadtest", url, "--mode", "service", "--replay", str(trace),
                                 "--speed", "10", "--format", "json", *extra])
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def test_a_csv_trace_is_replayed_request_by_request(tmp_path: Path) -> None:
    trace = tmp_path / "t.csv"
    rows = [f"{100 + i * 0.05},{'regular-user' if i % 2 else 'subscriber'},7,0.001"
            for i in range(12)]
    trace.write_text("ts,key,completion_tokens,latency\n" + "\n".join(rows) + "\n")
    with serve(AdmitAllHandler, RULES) as (url, calls):
        data = _replay(url, trace)
    assert calls.count("check") == 12 and calls.count("report") == 12
    assert data["requests"] == {"sent": 12, "completed": 12, "answered": 12, "allowed": 12,
                                "limited": 0, "errors": 0}
    keys = data["keys"]
    assert isinstance(keys, dict)
    assert {k: (v["requests"], v["tokens_admitted"]) for k, v in keys.items()} == {
        "regular-user": (6, 42), "subscriber": (6, 42)}


def test_a_gzip_jsonl_trace_is_replayed_with_conformance(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl.gz"
    with gzip.open(trace, "wt") as handle:
        for i in range(8):  # out of order in the file: replayed by time
            handle.write(json.dumps({"ts": 200 + (7 - i) * 0.05, "key": "regular-user",
                                     "completion_tokens": 60, "latency": 0}) + "\n")
    with serve(AsmServiceHandler, RULES) as (url, calls):
        data = _replay(url, trace, "--config-json", json.dumps([
            {"rate_limit_key_regex": "regular-user.*", "max_tokens": 300,
             "tokens_per_fill": 100, "fill_interval_second": 1,
             "redis_expired_seconds": 300}]))
    assert calls.count("check") == 8
    requests = data["requests"]
    assert isinstance(requests, dict) and (requests["sent"], requests["completed"]) == (8, 8)
    conformance = data["conformance"]
    assert isinstance(conformance, dict) and conformance["over_admitted"] == 0


def test_headers_with_a_key_template_and_mooncake_with_a_key_field(tmp_path: Path) -> None:
    csv_trace = tmp_path / "h.csv"
    csv_trace.write_text("ts,headers.X-Tier,completion_tokens\n1,gold,3\n2,tin,4\n3,gold,5\n")
    moon = tmp_path / "m.jsonl"
    moon.write_text("".join(json.dumps({"timestamp": 1000 * i, "input_length": 9,
                                        "output_length": 2, "hash_ids": [i], "user": f"u{i % 2}"})
                            + "\n" for i in range(5)))
    with serve(AdmitAllHandler, RULES) as (url, calls):
        headers = _replay(url, csv_trace, "--key-template", "tier-{{request.headers.x-tier}}")
        mooncake = _replay(url, moon, "--key-field", "user")
        fresh = _replay(url, moon, "--key-field", "user", "--unique-keys")
    assert calls.count("check") == 13
    assert {k: v["requests"] for k, v in headers["keys"].items()} == {
        "tier-gold": 2, "tier-tin": 1}
    assert {k: v["tokens_admitted"]
            for k, v in mooncake["keys"].items()} == {"u0": 6, "u1": 4}
    suffixed = sorted(fresh["keys"])
    assert [k[:3] for k in suffixed] == ["u0-", "u1-"] and len({k[2:] for k in suffixed}) == 1


@pytest.mark.parametrize(("name", "text", "extra", "message"), [
    ("t.jsonl", '{"ts": 1, "key": "a"}\n{"ts": 2, "keys": ["a", "b"]}\n', [],
     ":2: field 'keys': has 2 keys; a load test sends one key per request "
     "(give one key, or one --key-template)"),
    ("t.jsonl", '{"ts": 1, "key": "a"}\n{"ts": "soon", "key": "a"}\n', [],
     ":2: field 'ts': 'soon' is not a number"),
    ("t.csv", "ts,key\n1,a\n2\n", [], ":3: 1 columns where the header has 2"),
    ("t.jsonl", '{"ts": 1, "headers": {"x": "1"}}\n', [],
     ":1: field 'headers': the line has headers but no --key-template was given"),
    ("t.jsonl", "", [], ": no requests in the trace"),
    ("t.jsonl.gz", "not gzip", [], ": cannot read: Not a gzipped file (b'no')"),
])
def test_a_bad_trace_is_one_line_naming_file_line_field(
        tmp_path: Path, name: str, text: str, extra: list[str], message: str) -> None:
    trace = tmp_path / name
    trace.write_text(text)
    result = runner.invoke(app, ["loadtest", "http://127.0.0.1:1/", "--replay", str(trace),
                                 *extra])
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith(f"error: {trace}{message}")
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("compression", ["", ".gz", ".zst"])
@pytest.mark.parametrize(("name", "text", "message"), [
    ("t.jsonl", '{"ts": 1, "key": "a"}\n\n{"ts": 2, "keys": ["a", "b"]}\n',
     ":3: field 'keys': has 2 keys; a load test sends one key per request "
     "(give one key, or one --key-template)"),
    ("t.csv", 'ts,key\r\n1,a\r\n\r\n2,"b\x01"\r\n',
     ":4: field 'key': 'b\\x01' holds a control character (it goes in a header)"),
])
def test_a_compressed_trace_names_the_line_too(tmp_path: Path, compression: str, name: str,
                                               text: str, message: str) -> None:
    # A .zst trace's bad line was named by file only ('t.jsonl.zst: field ...'), and a
    # .csv.zst was counted as JSON Lines.
    import gzip

    import zstandard

    compress = {"": bytes, ".gz": gzip.compress, ".zst": zstandard.ZstdCompressor().compress}
    trace = tmp_path / (name + compression)
    trace.write_bytes(compress[compression](text.encode()))
    result = runner.invoke(app, ["loadtest", "http://127.0.0.1:1/", "--replay", str(trace)])
    assert (result.exit_code, result.stderr) == (1, f"error: {trace}{message}\n")


@pytest.mark.parametrize("glob", [False, True])
def test_a_bad_line_in_a_folder_of_files_names_its_file_and_line(tmp_path: Path,
                                                                 glob: bool) -> None:
    # The error named the folder alone ('logs: field 'key': ...'), not the file and line.
    import gzip

    folder = tmp_path / "logs"
    folder.mkdir()
    (folder / "a.csv").write_text("ts,key\n1,a\n")
    (folder / "b.csv.gz").write_bytes(gzip.compress(b'ts,key\n\n2,b\n3,"c\x01"\n'))
    (folder / "c.csv").write_text("ts,key\n4,d\n")
    given = str(folder / "*.csv*") if glob else str(folder)
    result = runner.invoke(app, ["loadtest", "http://127.0.0.1:1/", "--replay", given])
    assert (result.exit_code, result.stderr) == (
        1, f"error: {folder / 'b.csv.gz'}:4: field 'key': 'c\\x01' holds a control character "
        "(it goes in a header)\n")


@pytest.mark.parametrize(("args", "message"), [
    (["--key-template", "{{request.scheme}}"], "a trace does not carry request.scheme"),
    (["--key-template", "{{nope}}"], "unknown attribute 'nope'"),
    (["--speed", "0"], "Invalid value for --speed: must be a finite number > 0, got 0"),
    (["--speed", "nan"], "Invalid value for --speed: must be a finite number > 0, got nan"),
])
def test_bad_replay_options_are_usage_errors(tmp_path: Path, args: list[str],
                                             message: str) -> None:
    trace = tmp_path / "t.jsonl"
    trace.write_text('{"ts": 1, "key": "a"}\n')
    result = runner.invoke(app, ["loadtest", "http://127.0.0.1:1/", "--replay", str(trace),
                                 *args])
    assert result.exit_code == 2, result.output
    assert message in usage_text(result.stderr)


def test_key_template_without_replay_is_a_usage_error() -> None:
    result = runner.invoke(app, ["loadtest", "http://127.0.0.1:1/", "--key-field", "user"])
    assert result.exit_code == 2
    assert "Invalid value for --key-template/--key-field: only with --replay" in usage_text(
        result.stderr)


def test_a_gateway_log_and_a_parquet_trace_are_replayed(tmp_path: Path) -> None:
    from tests.conftest import SAMPLES

    log = SAMPLES / "logs" / "kong-ai-audit.jsonl"
    with serve(AdmitAllHandler, RULES) as (url, calls):
        data = _replay(url, log, "--from", "kong")
    # Four lines, one answered 429 when recorded: still sent, as demand.
    assert calls.count("check") == 4
    assert data["requests"] == {"sent": 4, "completed": 4, "answered": 4, "allowed": 4,
                                "limited": 0, "errors": 0}
    assert {k: v["requests"] for k, v in data["keys"].items()} == {"alice": 2, "bob": 2}
    import polars as pl

    parquet = tmp_path / "t.parquet"
    pl.DataFrame({"ts": [1.0, 1.1, 1.2], "key": ["regular-user"] * 3,
                  "completion_tokens": [5, 6, 7], "model": ["m"] * 3}).write_parquet(parquet)
    with serve(AdmitAllHandler, RULES) as (url, calls):
        data = _replay(url, parquet)
    assert calls.count("check") == 3 and calls.count("report") == 3
    assert data["keys"]["regular-user"]["tokens_admitted"] == 18


def test_an_empty_replay_path_is_an_error_not_a_closed_loop(tmp_path: Path) -> None:
    # `--replay "$TRACE"` with TRACE unset ran the default closed loop against the target
    # (found by hand: 11,243 requests as 'regular-user'); it is now the trace's read error.
    with serve(AdmitAllHandler, RULES) as (url, calls):
        result = runner.invoke(app, ["loadtest", url, "--mode", "service", "--replay", "",
                                     "-n", "3"])
    assert result.exit_code == 1, result.output
    assert result.stderr == "error: '': cannot read: No such file or directory\n"
    assert calls == []


def test_speed_without_replay_is_a_usage_error() -> None:
    # --speed without --replay was ignored: the run went ahead at the default shape.
    result = runner.invoke(app, ["loadtest", "http://127.0.0.1:1/", "--speed", "5"])
    assert result.exit_code == 2
    assert "Invalid value for --speed: only with --replay" in usage_text(result.stderr)


def test_a_log_whose_keys_match_no_rule_is_warned_about_as_simulate_does() -> None:
    # `loadtest --replay samples/logs/asm-access.jsonl --from asm -r rules.json` sent every
    # request under the authority (no rule: all admitted, 100% conformance) and said nothing;
    # simulate warns on the same log and rules.
    from tests.conftest import SAMPLES

    log, rules = str(SAMPLES / "logs" / "asm-access.jsonl"), str(SAMPLES / "rules.json")
    with serve(AdmitAllHandler, RULES) as (url, _calls):
        warned = runner.invoke(app, ["loadtest", url, "--mode", "service", "--replay", log,
                                     "--from", "asm", "-r", rules, "--speed", "10",
                                     "--format", "json"])
        mapped = runner.invoke(app, ["loadtest", url, "--mode", "service", "--replay", log,
                                     "--from", "asm", "--map", "key=user_type", "-r", rules,
                                     "--speed", "10", "--format", "json"])
    simulated = runner.invoke(app, ["simulate", log, "--from", "asm", "-r", rules,
                                    "--format", "json"])
    assert (warned.exit_code, mapped.exit_code) == (0, 0), warned.output + mapped.output
    assert warned.stderr == (
        "warning: no request has a key that a rule matches (keys such as 'llm.example.com'): "
        "the keys came from the log's 'authority' field; name the field that holds the "
        "rate-limit key with --map key=FIELD\n")
    assert warned.stderr == simulated.stderr
    assert mapped.stderr == ""
    assert json.loads(warned.stdout)["requests"]["sent"] == 5
