"""Gateway logs as traces: every preset on its sample, --map, trace convert, located errors."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.conftest import SAMPLES
from tokenlimit.cli.main import app
from tokenlimit.errors import ConfigError, TraceError
from tokenlimit.sim.log_fields import PRESETS, field_map, parse_map
from tokenlimit.sim.log_reader import limited_count
from tokenlimit.sim.readers import read_trace
from tokenlimit.sim.trace_table import Trace

runner = CliRunner()
LOGS = SAMPLES / "logs"
RULES = str(SAMPLES / "rules.json")


def _rows(trace: Trace) -> list[tuple[Any, ...]]:
    """Each request with its usage (``None`` where the log had none: imputed)."""
    return [(trace.id_of(i), round(float(trace.ts[i]), 3), trace.keys_of(i),
             round(float(trace.latency[i]), 3), int(trace.prompt_tokens[i]),
             None if trace.imputed[i] else int(trace.completion_tokens[i]),
             None if trace.imputed[i] else int(trace.total_tokens[i]))
            for i in range(len(trace))]


T0 = 1793610000.0  # 2026-11-02T09:00:00Z
EXPECTED = {
    ("asm-access.jsonl", "asm", "key=user_type"): [
        ("7f1c0a3e-0001", T0 + 0.12, ("subscriber",), 1.84, 412, 230, 642),
        ("7f1c0a3e-0002", T0 + 0.48, ("regular-user",), 0.95, 96, 61, 157),
        ("7f1c0a3e-0003", T0 + 1.01, ("regular-user",), 0.003, 0, None, None),
        ("7f1c0a3e-0004", T0 + 1.73, ("subscriber",), 2.21, 1280, 402, 1682),
        ("7f1c0a3e-0005", T0 + 2.3, ("regular-user",), 0.64, 54, 38, 92)],
    ("higress-ai-statistics.jsonl", "higress", "key=x-mse-consumer"): [
        ("5895f5a9-0001", T0 + 0.078, ("team-a",), 1.543, 21, 17, 38),
        ("5895f5a9-0002", T0 + 0.95, ("team-b",), 2.214, 388, 129, 517),
        ("5895f5a9-0003", T0 + 1.4, ("team-a",), 0.0, 0, None, None),
        ("5895f5a9-0004", T0 + 2.12, ("team-b",), 0.851, 64, 40, 104)],
    ("envoy-ai-gateway.jsonl", "envoy-ai-gateway", None): [
        ("c2a1-0001", T0 + 0.2, ("alice",), 1.21, 150, 88, 238),
        ("c2a1-0002", T0 + 0.9, ("bob",), 2.48, 900, 310, 1210),
        ("c2a1-0003", T0 + 1.3, ("bob",), 0.001, 0, None, None),
        ("c2a1-0004", T0 + 2.05, ("alice",), 0.73, 42, 19, 61)],
    ("litellm-spend-logs.csv", "litellm", "key=user"): [
        ("chatcmpl-0001", T0 + 0.1, ("alice",), 1.8, 200, 110, 310),
        ("chatcmpl-0002", T0 + 0.7, ("bob",), 3.4, 1200, 260, 1460),
        ("chatcmpl-0003", T0 + 2.25, ("alice",), 0.75, 80, 51, 131)],
    ("kong-ai-audit.jsonl", "kong", None): [
        ("9ec9264afbbbad5f0001", T0 + 0.15, ("alice",), 1.42, 28, 20, 48),
        ("9ec9264afbbbad5f0002", T0 + 0.89, ("bob",), 2.91, 89, 56, 145),
        ("9ec9264afbbbad5f0003", T0 + 1.4, ("bob",), 0.001, 0, None, None),
        ("9ec9264afbbbad5f0004", T0 + 2.01, ("alice",), 0.64, 12, 9, 21)],
}


@pytest.mark.parametrize(("log", "preset", "mapping"), list(EXPECTED))
def test_every_preset_reads_its_sample_exactly(log: str, preset: str,
                                               mapping: str | None) -> None:
    trace = read_trace(LOGS / log, fields=field_map(preset, mapping))
    assert _rows(trace) == EXPECTED[(log, preset, mapping)]
    assert limited_count(trace) == (0 if preset == "litellm" else 1)
    assert trace.imputed_count == limited_count(trace)  # 429 lines: demand, usage unknown


def test_the_cli_reports_the_429_lines_and_converts_logs(tmp_path: Path) -> None:
    result = runner.invoke(app, ["simulate", str(LOGS / "asm-access.jsonl"), "-r", RULES,
                                 "--from", "asm", "--map", "key=user_type", "-f", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["recorded_429"], report["imputed"], report["totals"]["requests"]) == (1, 1, 5)
    text = runner.invoke(app, ["simulate", str(LOGS / "asm-access.jsonl"), "-r", RULES,
                               "--from", "istio", "--map", "key=user_type"])
    assert text.exit_code == 0, text.output
    assert ("1 request was answered 429 when recorded: replayed as demand, its usage "
            "imputed") in text.stdout
    for suffix in ("parquet", "jsonl"):
        out = tmp_path / f"kong.{suffix}"
        converted = runner.invoke(app, ["trace", "convert", str(LOGS / "kong-ai-audit.jsonl"),
                                        "--from", "kong", "-o", str(out)])
        assert converted.exit_code == 0, converted.output
        assert converted.stderr == f"wrote 4 requests for 2 keys to {out}\n"
        again = read_trace(out)
        assert _rows(again) == EXPECTED[("kong-ai-audit.jsonl", "kong", None)]
        assert limited_count(again) == 1


def test_a_generic_map_reads_any_log_with_nested_fields_and_compression(
        tmp_path: Path) -> None:
    lines = [{"when": "2026-11-02T09:00:00+08:00", "who": {"team": "t1"}, "ms": 250,
              "usage": {"in": 3, "out": "4"}},
             {"when": "2026-11-02T01:00:01Z", "who": {"team": "t2"}, "ms": "-",
              "usage": {"in": 1, "out": 2}}]
    path = tmp_path / "any.jsonl.gz"
    path.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in lines).encode()))
    fields = parse_map("ts=when,key=who.team,latency=ms:ms,prompt_tokens=usage.in,"
                       "completion_tokens=usage.out")
    trace = read_trace(path, fields=fields)
    assert _rows(trace) == [(0, T0 - 8 * 3600, ("t1",), 0.25, 3, 4, 7),
                            (1, T0 - 8 * 3600 + 1, ("t2",), 0.0, 1, 2, 3)]


@pytest.mark.parametrize(("line", "message"), [
    ('{"start_time": "yesterday", "authority": "a"}',
     "field 'start_time': 'yesterday' is not a time (ISO-8601 or Unix seconds)"),
    ('{"start_time": "2026-11-02T09:00:00Z", "authority": "a", "duration": "soon"}',
     "field 'duration': 'soon' is not a number"),
    ('{"start_time": "2026-11-02T09:00:00Z", "authority": "a", '
     '"request_completion_tokens": 1.5}',
     "field 'request_completion_tokens': token counts are whole numbers from 0 to 10**15"),
    ("{oops", "not valid JSON (Expecting property name enclosed in double quotes at column 2)"),
    # Cut short: json counted from the newline and said "line 2 column 1" of line 3.
    ('{"start_time": "2026-11-02T09:00:03Z", "authority": "a",',
     "not valid JSON (Expecting property name enclosed in double quotes at column 57)"),
])
def test_a_bad_log_line_is_located(tmp_path: Path, line: str, message: str) -> None:
    good = '{"start_time": "2026-11-02T09:00:00Z", "authority": "a", "duration": 5}'
    path = tmp_path / "log.jsonl"
    path.write_text(f"{good}\n\n{line}\n", encoding="utf-8")
    with pytest.raises(TraceError) as caught:
        read_trace(path, fields=PRESETS["asm"])
    assert str(caught.value) == f"{path}:3: {message}"
    result = runner.invoke(app, ["simulate", str(path), "-r", RULES, "--from", "asm"])
    assert result.exit_code == 1
    assert result.stderr == f"error: {path}:3: {message}\n"


@pytest.mark.parametrize(("args", "hint"), [
    (["--from", "nginx"], "--from 'nginx': choose one of asm, envoy-ai-gateway, higress, "
                          "istio, kong, litellm"),
    (["--map", "ts=a"], "--map needs key (or --from PRESET)"),
    (["--map", "when=a,key=b"], "'when' is not one of"),
    (["--map", "ts=a:hours,key=b"], "a unit (s or ms) is for ts and latency"),
    (["--from", "asm", "--key-field", "x"], "not --key-field or --key-template"),
])
def test_bad_log_options_are_usage_errors(args: list[str], hint: str) -> None:
    result = runner.invoke(app, ["simulate", str(LOGS / "asm-access.jsonl"), "-r", RULES,
                                 *args])
    assert result.exit_code == 2
    assert hint in " ".join(result.stderr.replace("│", " ").split())


def test_loadtest_takes_log_options_only_with_replay() -> None:
    result = runner.invoke(app, ["loadtest", "http://127.0.0.1:9", "--from", "kong",
                                 "-n", "1"])
    assert result.exit_code == 2
    assert "only with --replay" in result.stderr


def test_parse_map_refuses_a_part_without_a_field() -> None:
    with pytest.raises(ConfigError, match="expected TRACE_FIELD=LOG_FIELD"):
        parse_map("ts=,key=a")


AUTHORITY_WARNING = (
    "warning: no request has a key that a rule matches (keys such as 'llm.example.com'): the "
    "keys came from the log's 'authority' field; name the field that holds the rate-limit key "
    "with --map key=FIELD\n")


@pytest.mark.parametrize("extra", [[], ["--chunk-rows", "2"]])
def test_a_log_whose_keys_match_no_rule_says_which_field_to_map(extra: list[str]) -> None:
    # The asm preset's default key is the authority; the sample's rate-limit key is user_type.
    args = ["simulate", str(LOGS / "asm-access.jsonl"), "--from", "asm", "-r", RULES,
            "--format", "json", *extra]
    result = runner.invoke(app, args)
    assert (result.exit_code, result.stderr) == (0, AUTHORITY_WARNING)
    assert json.loads(result.stdout)["rules"][-1]["requests"] == 5
    mapped = runner.invoke(app, [*args, "--map", "key=user_type"])
    assert (mapped.exit_code, mapped.stderr) == (0, "")


def test_a_trace_whose_keys_match_no_rule_points_at_validate(tmp_path: Path) -> None:
    trace = tmp_path / "t.csv"
    trace.write_text("ts,key,completion_tokens\n1,tenant-a,5\n2,tenant-b,5\n3,tenant-a,5\n")
    result = runner.invoke(app, ["simulate", str(trace), "-r", RULES])
    assert result.exit_code == 0
    assert result.stderr == (
        "warning: no request has a key that a rule matches (keys such as 'tenant-a', "
        "'tenant-b'): `tokenlimit validate RULES --key KEY` shows which rule a key takes\n")


@pytest.mark.parametrize(("log", "preset", "first"), [
    # ISO-8601 start: the nearest double to the written time (polars' division by 1e6 as a
    # product with the reciprocal gave 1793610000.0779998); latency in ms, divided exactly.
    ("higress-ai-statistics.jsonl", "higress", (T0 + 0.078, 1.543)),
    # end - start from the two ISO-8601 times in microseconds: 1.8 s, not 1.7999999523.
    ("litellm-spend-logs.csv", "litellm", (1793610000.1, 1.8)),
    ("kong-ai-audit.jsonl", "kong", (1793610000.15, 1.42)),
])
def test_converted_times_are_the_written_ones(log: str, preset: str, first: tuple[float, float],
                                              tmp_path: Path) -> None:
    out = tmp_path / "t.jsonl"
    result = runner.invoke(app, ["trace", "convert", str(LOGS / log), "--from", preset,
                                 "-o", str(out)])
    assert result.exit_code == 0, result.output
    line = json.loads(out.read_text().splitlines()[0])
    assert (line["ts"], line["latency"]) == first
    assert repr(line["ts"]) == repr(first[0])


def test_a_trace_export_with_iso_times_reads_with_a_map_of_ts_and_key(tmp_path: Path) -> None:
    # A canonical trace whose ts is ISO-8601 text: the per-row reader's error says how to read
    # it, and --map ts=ts,key=key keeps the latency, usage and ids of the same-named columns.
    trace = tmp_path / "iso.csv"
    trace.write_text("id,ts,key,latency,prompt_tokens,completion_tokens,total_tokens\n"
                     "r1,2026-11-02T09:00:00.100Z,regular-user-1,1.5,100,20,120\n"
                     "r2,2026-11-02T09:00:01.200Z,regular-user-1,0.5,100,,130\n")
    refused = runner.invoke(app, ["simulate", str(trace), "-r", RULES])
    assert refused.exit_code == 1
    assert refused.stderr == (
        f"error: {trace}:2: field 'ts': '2026-11-02T09:00:00.100Z' is not a number (Unix "
        "seconds: a file with ISO-8601 times reads as a log, with --map ts=ts,key=key)\n")
    assert _rows(read_trace(trace, fields=parse_map("ts=ts,key=key"))) == [
        ("r1", T0 + 0.1, ("regular-user-1",), 1.5, 100, 20, 120),
        ("r2", T0 + 1.2, ("regular-user-1",), 0.5, 100, 30, 130)]
    # Named otherwise, a field is read from the column named; with end=, latency is not read.
    ends = parse_map("ts=ts,key=key,end=done,completion_tokens=out")
    assert (ends.latency, ends.end, ends.completion_tokens, ends.prompt_tokens) == (
        None, "done", "out", "prompt_tokens")


def test_a_csv_logs_ids_read_as_a_csv_traces(tmp_path: Path) -> None:
    # An id written as an integer is an integer (in --decisions too), cell by cell, as in a
    # CSV trace; a log read with --map used to turn every id into text.
    log = tmp_path / "log.csv"
    log.write_text("id,ts,key,completion_tokens\n7,2026-11-02T09:00:00Z,a,5\n"
                   "007,2026-11-02T09:00:01Z,b,5\nr-9,2026-11-02T09:00:02Z,a,5\n")
    trace = read_trace(log, fields=parse_map("ts=ts,key=key"))
    assert [trace.id_of(i) for i in range(3)] == [7, "007", "r-9"]
    decisions = tmp_path / "d.jsonl"
    result = runner.invoke(app, ["simulate", str(log), "--map", "ts=ts,key=key", "-r", RULES,
                                 "--decisions", str(decisions), "--format", "json"])
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["id"] for line in decisions.read_text().splitlines()] == [
        7, "007", "r-9"]


@pytest.mark.parametrize(("command", "replayed"), [
    (["diff", RULES, str(SAMPLES / "rules-proposed.json"), "--format", "json"],
     '"requests": 5,'),
    (["tune", "--rules", RULES, "--rule", "0", "--goal", "limited <= 20%", "--format", "json"],
     '"replayed": 60,'),
])
def test_diff_and_tune_read_a_gateway_log_as_simulate_does(command: list[str], replayed: str,
                                                           tmp_path: Path) -> None:
    # The log read through --from/--map gives what its converted trace gives.
    log = str(LOGS / "asm-access.jsonl")
    mapped = ["--from", "asm", "--map", "key=user_type"]
    converted = tmp_path / "asm.parquet"
    assert runner.invoke(app, ["trace", "convert", log, *mapped, "-o",
                               str(converted)]).exit_code == 0
    from_log = runner.invoke(app, [*command, "--trace", log, *mapped])
    from_trace = runner.invoke(app, [*command, "--trace", str(converted)])
    assert (from_log.exit_code, from_trace.exit_code) == (0, 0), from_log.output
    assert from_log.stdout.replace(log, "T") == from_trace.stdout.replace(str(converted), "T")
    assert replayed in from_log.stdout
    both = runner.invoke(app, [*command, "--trace", log, *mapped, "--key-field", "user"])
    assert both.exit_code == 2
    assert "not --key-field or --key-template" in " ".join(both.stderr.replace("│", " ").split())


@pytest.mark.parametrize("suffix", ["jsonl.gz", "jsonl.zst"])
def test_trace_convert_compresses_as_the_name_says(suffix: str, tmp_path: Path) -> None:
    # -o kong.jsonl.gz wrote plain JSON Lines, which simulate then refused: 'cannot read:
    # Not a gzipped file'.
    out = tmp_path / f"kong.{suffix}"
    converted = runner.invoke(app, ["trace", "convert", str(LOGS / "kong-ai-audit.jsonl"),
                                    "--from", "kong", "-o", str(out)])
    assert converted.exit_code == 0, converted.output
    assert out.read_bytes()[:4] == (b"\x1f\x8b\x08\x00" if suffix.endswith("gz")
                                    else b"\x28\xb5\x2f\xfd")
    assert _rows(read_trace(out)) == EXPECTED[("kong-ai-audit.jsonl", "kong", None)]


def test_compressed_decisions_keep_the_format_their_name_says(tmp_path: Path) -> None:
    # --decisions d.csv.gz wrote JSON Lines; d.jsonl.zst wrote plain text.
    args = ["simulate", str(LOGS / "kong-ai-audit.jsonl"), "--from", "kong", "-r", RULES]
    assert runner.invoke(app, [*args, "--decisions", str(tmp_path / "d.csv.gz")]).exit_code == 0
    assert gzip.decompress((tmp_path / "d.csv.gz").read_bytes()).decode().splitlines() == [
        "id,outcome,rule", "9ec9264afbbbad5f0001,allow,", "9ec9264afbbbad5f0002,allow,",
        "9ec9264afbbbad5f0003,allow,", "9ec9264afbbbad5f0004,allow,"]
    assert runner.invoke(app, [*args, "--decisions", str(tmp_path / "d.jsonl.zst")]
                         ).exit_code == 0
    import zstandard

    assert zstandard.ZstdDecompressor().stream_reader(
        (tmp_path / "d.jsonl.zst").read_bytes()).read().decode().splitlines()[0] == (
        '{"id": "9ec9264afbbbad5f0001", "outcome": "allow", "rule": null}')
    refused = runner.invoke(app, [*args, "--decisions", str(tmp_path / "d.parquet.gz")])
    assert (refused.exit_code, refused.stderr) == (
        1, f"error: {tmp_path / 'd.parquet.gz'}: cannot write: Parquet is compressed inside; "
        "name it without the .gz\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.csv.gz", "d.jsonl.zst"]


LITELLM_EXPORT = (  # as psql's \copy writes LiteLLM_SpendLogs: a reply over two lines
    "request_id,api_key,total_tokens,prompt_tokens,completion_tokens,startTime,endTime,"
    "response\r\n"
    "c-1,k1,30,10,20,2026-11-30 05:41:35.123+00,2026-11-30 05:41:36.5+00,\"{\"\"a\"\": 1}\"\r\n"
    "c-2,k2,7,3,4,2026-11-30 05:41:36+00,2026-11-30 05:41:37+00,\"line one,\r\nline two\"\r\n"
    "\r\n"
    "c-3,k1,5,2,3,2026-11-30 05:41:37.5+00,2026-11-30 05:41:38+00,{}\r\n"
    "\r\n")


@pytest.mark.parametrize("chunked", [False, True])
def test_a_csv_log_with_blank_lines_and_line_breaks_in_cells(chunked: bool,
                                                            tmp_path: Path) -> None:
    # The export's last (blank) line was 'error: spend.csv:5: field 'startTime': missing',
    # and a bad value after a cell with a line break was named a line too early.
    path = tmp_path / "spend.csv"
    path.write_bytes(LITELLM_EXPORT.encode())
    extra = ["--chunk-rows", "1"] if chunked else []
    decisions = tmp_path / "d.jsonl"
    result = runner.invoke(app, ["simulate", str(path), "--from", "litellm", "-r", RULES,
                                 "-f", "json", "--decisions", str(decisions), *extra])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["totals"]["requests"] == 3
    assert [json.loads(line)["id"] for line in decisions.read_text().splitlines()] == [
        "c-1", "c-2", "c-3"]
    path.write_bytes(LITELLM_EXPORT.replace(",5,2,3,", ",5,x,3,").encode())
    bad = runner.invoke(app, ["simulate", str(path), "--from", "litellm", "-r", RULES, *extra])
    assert (bad.exit_code, bad.stderr) == (
        1, f"error: {path}:6: field 'prompt_tokens': 'x' is not a number\n")


def test_a_json_lines_log_ending_in_blank_lines_streams_and_an_empty_log_has_no_requests(
        tmp_path: Path) -> None:
    # A block of only blank lines was 'not a readable jsonl log (could not infer data-type)'
    # with --chunk-rows; an empty log was polars' message ('Cannot infer NDJSON types on
    # empty reader ...'), an empty CSV log 'empty.csv:2: field 'start_time': missing ...'.
    path = tmp_path / "access.jsonl"
    path.write_bytes((LOGS / "asm-access.jsonl").read_bytes() + b"\n\r\n\n\n")
    args = ["simulate", str(path), "--from", "asm", "--map", "key=user_type", "-r", RULES,
            "-f", "json"]
    whole, streamed = (runner.invoke(app, args + extra) for extra in
                       ([], ["--chunk-rows", "1"]))
    assert (whole.exit_code, streamed.exit_code) == (0, 0), streamed.output
    assert json.loads(streamed.stdout) == json.loads(whole.stdout)
    assert json.loads(whole.stdout)["totals"]["requests"] == 5
    for name in ("empty.jsonl", "empty.csv"):
        empty = tmp_path / name
        empty.write_bytes(b"\n")
        result = runner.invoke(app, ["simulate", str(empty), "--from", "asm", "-r", RULES])
        assert (result.exit_code, result.stderr) == (
            1, f"error: {empty}: no requests in the trace (empty file, or only a header or "
            "blank lines)\n")


@pytest.mark.parametrize("chunks", [[], ["--chunk-rows", "1"]])
def test_a_json_lines_log_saved_with_a_byte_order_mark_reads_as_without(
        chunks: list[str], tmp_path: Path) -> None:
    # Found feeding an access log saved by PowerShell (UTF-8 with BOM): 'error: access.jsonl:
    # not a readable jsonl log (InternalError(TapeError) at character 0 ('ï'))', no line.
    path = tmp_path / "access.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + (LOGS / "asm-access.jsonl").read_bytes())
    out = tmp_path / "out.jsonl"
    result = runner.invoke(app, ["trace", "convert", str(path), "--from", "asm", "--map",
                                 "key=user_type", "-o", str(out), *chunks])
    assert result.exit_code == 0, result.output
    assert _rows(read_trace(out)) == EXPECTED[("asm-access.jsonl", "asm", "key=user_type")]
    path.write_bytes(b"\xef\xbb\xbf" + b'{"start_time": "soon", "authority": "a"}\n')
    bad = runner.invoke(app, ["trace", "convert", str(path), "--from", "asm", "-o", str(out),
                              *chunks])
    assert (bad.exit_code, bad.stderr) == (
        1, f"error: {path}:1: field 'start_time': 'soon' is not a time (ISO-8601 or Unix "
        "seconds)\n")


HIGRESS_ACCESS = (  # Higress's documented access log: ai-statistics' fields in ai_log's text
    '{"ai_log":"{\\"model\\":\\"qwen-turbo\\",\\"input_token\\":\\"10\\",\\"output_token\\":'
    '\\"69\\",\\"llm_first_token_duration\\":\\"309\\",\\"llm_service_duration\\":\\"1955\\",'
    '\\"consumer\\":\\"team-a\\"}","authority":"dashscope.aliyuncs.com","duration":"1960",'
    '"request_id":"h-1","response_code":"200","start_time":"2026-11-02T09:00:00.078Z"}\n'
    '{"ai_log":"-","authority":"dashscope.aliyuncs.com","duration":"2","request_id":"h-2",'
    '"response_code":"429","start_time":"2026-11-02T09:00:01.400Z"}\n')


def test_higress_reads_ai_statistics_fields_inside_ai_log(tmp_path: Path) -> None:
    # --from higress read only fields of their own: on Higress's own log format every
    # request had latency 0 and imputed usage, and nothing said so.
    path = tmp_path / "access.jsonl"
    path.write_text(HIGRESS_ACCESS)
    trace = read_trace(path, fields=field_map("higress", None))
    assert _rows(trace) == [("h-1", T0 + 0.078, ("dashscope.aliyuncs.com",), 1.955, 10, 69, 79),
                            ("h-2", T0 + 1.4, ("dashscope.aliyuncs.com",), 0.0, 0, None, None)]
    path.write_text(HIGRESS_ACCESS.splitlines(keepends=True)[0])
    consumers = read_trace(path, fields=field_map("higress", "key=ai_log.consumer"))
    assert consumers.keys_of(0) == ("team-a",)
    path.write_text(HIGRESS_ACCESS.replace('"ai_log":"-"', '"ai_log":"{cut"'))
    with pytest.raises(TraceError) as error:
        read_trace(path, fields=field_map("higress", None))
    assert str(error.value) == f"{path}:2: field 'ai_log': '{{cut' is not a JSON object"


def test_a_log_line_without_the_key_field_has_the_empty_key(tmp_path: Path) -> None:
    # Real Kong logs hold lines without a consumer (health checks, unauthenticated routes):
    # they stopped the run ("field 'consumer.username': missing"). The plug-in renders a key
    # whose header is absent as the empty string; so does the log reader, whole or in
    # batches (a batch of such lines has no consumer column at all).
    log = tmp_path / "kong.jsonl"
    lines = [{"started_at": 1793610000150, "consumer": {"username": "alice"},
              "latencies": {"request": 1420}, "response": {"status": 200},
              "ai": {"proxy": {"usage": {"prompt_token": 28, "completion_token": 20}}}},
             {"started_at": 1793610000890, "request": {"uri": "/status"},
              "latencies": {"request": 1}, "response": {"status": 200}},
             {"started_at": 1793610001400, "consumer": {"username": "bob"},
              "latencies": {"request": 1}, "response": {"status": 429}}]
    log.write_text("".join(json.dumps(line) + "\n" for line in lines))
    trace = read_trace(log, fields=field_map("kong", None))
    assert [trace.keys_of(i) for i in range(len(trace))] == [("alice",), ("",), ("bob",)]
    reports = [runner.invoke(app, ["simulate", str(log), "--from", "kong", "-r", RULES,
                                   "--format", "json", *chunks])
               for chunks in ([], ["--chunk-rows", "1"])]
    assert [r.exit_code for r in reports] == [0, 0], reports[1].output
    assert json.loads(reports[0].stdout) == json.loads(reports[1].stdout)
    assert json.loads(reports[0].stdout)["totals"]["requests"] == 3
    everyone = json.dumps([{"rate_limit_key_regex": ".*", "max_tokens": 100,
                            "tokens_per_fill": 10, "fill_interval_second": 60,
                            "redis_expired_seconds": 600}])
    text = runner.invoke(app, ["simulate", str(log), "--from", "kong", "--config-json",
                               everyone])
    keys_table = text.stdout[text.stdout.index("Per key"):text.stdout.index("Totals")]
    rows = [line.split("│")[1].strip() for line in keys_table.splitlines()
            if line.startswith("│")]
    assert sorted(rows) == ['""', "alice", "bob"]  # the empty key, named in the keys table


@pytest.mark.parametrize("chunks", [[], ["--chunk-rows", "1"]])
def test_a_key_header_envoy_printed_as_dash_is_the_empty_key(chunks: list[str],
                                                             tmp_path: Path) -> None:
    # Found feeding an ASM access log whose key is a request header (%REQ(X-USER-ID)%):
    # Envoy prints "-" for a request without it, which was read as the key "-" while "-"
    # in every other field was read as no value.
    path = tmp_path / "access.jsonl"
    lines = [{"start_time": "2026-11-02T09:00:00Z", "x-user-id": "alice", "duration": 5,
              "request_prompt_tokens": 3, "request_completion_tokens": 4},
             {"start_time": "2026-11-02T09:00:01Z", "x-user-id": "-", "duration": "-",
              "request_prompt_tokens": 5, "request_completion_tokens": 6}]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "out.jsonl"
    result = runner.invoke(app, ["trace", "convert", str(path), "--from", "asm", "--map",
                                 "key=x-user-id", "-o", str(out), *chunks])
    assert result.exit_code == 0, result.output
    assert _rows(read_trace(out)) == [(0, T0, ("alice",), 0.005, 3, 4, 7),
                                      (1, T0 + 1, ("",), 0.0, 5, 6, 11)]


@pytest.mark.parametrize("chunks", [[], ["--chunk-rows", "1"]])
def test_kong_reads_usage_under_any_ai_plugins_name(chunks: list[str],
                                                   tmp_path: Path) -> None:
    # Found feeding --from kong a log as Kong 3.6 to 3.9 document it (usage under the
    # plug-in's name, ai-proxy or ai-proxy-advanced): the preset read only ai.proxy, so every
    # request had imputed usage and the report 0 tokens admitted, with no error.
    lines = [{"started_at": 1793610000150, "request": {"id": "k-1"},
              "consumer": {"username": "alice"}, "latencies": {"request": 1420},
              "response": {"status": 200},
              "ai": {"payload": {"request": "{}"},
                     "ai-proxy": {"usage": {"prompt_token": 28, "completion_token": 20,
                                            "total_tokens": 48}}}},
             {"started_at": 1793610000890, "request": {"id": "k-2"},
              "consumer": {"username": "bob"}, "latencies": {"request": 2910},
              "response": {"status": 200},
              "ai": {"ai-proxy-advanced": {"usage": {"prompt_token": 89,
                                                     "completion_token": 56,
                                                     "total_tokens": 145}}}},
             {"started_at": 1793610001400, "request": {"id": "k-3"},
              "consumer": {"username": "bob"}, "latencies": {"request": 1},
              "response": {"status": 429}}]
    path = tmp_path / "kong.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "out.jsonl"
    result = runner.invoke(app, ["trace", "convert", str(path), "--from", "kong", "-o",
                                 str(out), *chunks])
    assert result.exit_code == 0, result.output
    assert _rows(read_trace(out)) == [
        ("k-1", T0 + 0.15, ("alice",), 1.42, 28, 20, 48),
        ("k-2", T0 + 0.89, ("bob",), 2.91, 89, 56, 145),
        ("k-3", T0 + 1.4, ("bob",), 0.001, 0, None, None)]
    lines[1]["ai"]["ai-proxy-advanced"]["usage"]["completion_token"] = "many"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    bad = runner.invoke(app, ["trace", "convert", str(path), "--from", "kong", "-o", str(out),
                              *chunks])
    assert (bad.exit_code, bad.stderr) == (
        1, f"error: {path}:2: field 'ai.*.usage.completion_token': 'many' is not a number\n")


def test_times_in_several_iso_forms_in_one_log_are_each_read(tmp_path: Path) -> None:
    # Found feeding --from litellm a spend-log export whose times were written without an
    # offset, then with one: 'spend.csv:3: field 'startTime': '2026-11-02T17:00:01+08:00' is
    # not a time', as polars reads a column in the form of its first value only.
    path = tmp_path / "spend.csv"
    path.write_text(
        "request_id,api_key,total_tokens,prompt_tokens,completion_tokens,startTime,endTime\n"
        "c-1,k1,30,10,20,2026-11-02 09:00:00.1,2026-11-02 09:00:01.9\n"
        "c-2,k2,7,3,4,2026-11-02T17:00:01+08:00,2026-11-02T09:00:02.25Z\n"
        "c-3,k1,5,2,3,2026-11-02 09:00:03.5+00,2026-11-02 09:00:04\n")
    trace = read_trace(path, fields=field_map("litellm", None))
    assert _rows(trace) == [("c-1", T0 + 0.1, ("k1",), 1.8, 10, 20, 30),
                            ("c-2", T0 + 1, ("k2",), 1.25, 3, 4, 7),
                            ("c-3", T0 + 3.5, ("k1",), 0.5, 2, 3, 5)]
    path.write_text(path.read_text().replace("09:00:03.5+00", "25:00:03.5+00"))
    with pytest.raises(TraceError) as caught:
        read_trace(path, fields=field_map("litellm", None))
    assert str(caught.value) == (f"{path}:4: field 'startTime': '2026-11-02 25:00:03.5+00' "
                                 "is not a time (ISO-8601 or Unix seconds)")


def _inferred(monkeypatch: pytest.MonkeyPatch) -> None:
    """Read JSON Lines logs as before the projected read: every field of every line, each
    typed by polars' inference."""
    import polars as pl

    from tokenlimit.sim import log_reader

    def refuse(data: bytes, fields: Any) -> Any:
        raise pl.exceptions.ComputeError("inferred, for the comparison")

    monkeypatch.setattr(log_reader, "_wanted_fields", refuse)


TRICKY = [  # numbers as text, "-", floats in other forms, objects and JSON text, nulls
    {"start_time": "2026-11-02T09:00:00.120Z", "duration": "1840", "request_id": "a-1",
     "user_type": "subscriber", "request_prompt_tokens": 4.12e2, "response_code": "200",
     "request_completion_tokens": 12.0, "extra": {"deep": [1, {"x": None}]}},
    {"start_time": "2026-11-02T09:00:00.480Z", "duration": 1e-3, "request_id": "a-2",
     "user_type": "regular-user", "request_prompt_tokens": "96", "response_code": 429,
     "request_completion_tokens": "-", "upstream_cluster": None},
    {"start_time": "2026-11-02T09:00:01.010Z", "duration": 0.5, "request_id": "a-3",
     "request_prompt_tokens": 0, "response_code": 200, "request_completion_tokens": 7},
]


@pytest.mark.parametrize(("log", "preset", "mapping"), [
    ("asm-access.jsonl", "asm", "key=user_type"),
    ("higress-ai-statistics.jsonl", "higress", None),
    ("envoy-ai-gateway.jsonl", "envoy-ai-gateway", None),
    ("kong-ai-audit.jsonl", "kong", None),
    ("tricky.jsonl", "asm", "key=user_type"),
    ("int-ids.jsonl", "kong", None),
    ("mixed-ids.jsonl", "kong", None),
    ("top-int-ids.jsonl", "asm", "key=user_type,id=request_id"),
    ("top-late-text-id.jsonl", "asm", "key=user_type,id=request_id"),
])
def test_reading_only_the_wanted_fields_gives_what_reading_every_field_does(
        log: str, preset: str, mapping: str | None, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    path = LOGS / log
    if log == "tricky.jsonl":
        path = tmp_path / log
        path.write_text("".join(json.dumps(line) + "\n" for line in TRICKY))
    elif log.startswith("top-"):  # integer ids at the top; one as text past the first 64 KiB
        lines = [{**TRICKY[n % 3], "request_id": n,
                  "start_time": f"2026-11-02T09:{n // 600:02d}:{n % 600 / 10:04.1f}Z"}
                 for n in range(3000)]
        if log == "top-late-text-id.jsonl":
            lines[2500]["request_id"] = "late"
        path = tmp_path / log
        path.write_text("".join(json.dumps(line) + "\n" for line in lines))
        assert path.stat().st_size > 2 * 2**16
    elif log.endswith("ids.jsonl"):  # Kong's request.id as integers; later as text too
        lines = [json.loads(line) for line in (LOGS / "kong-ai-audit.jsonl").open()]
        for number, line in enumerate(lines):
            line["request"]["id"] = (f"r-{number}" if log == "mixed-ids.jsonl" and number == 3
                                     else 100 + number)
        path = tmp_path / log
        path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    fields = field_map(preset, mapping)
    projected = read_trace(path, fields=fields)
    _inferred(monkeypatch)
    inferred = read_trace(path, fields=fields)
    assert _rows(projected) == _rows(inferred)
    assert projected.status == inferred.status
    assert [projected.id_of(i) for i in range(len(projected))] == [
        inferred.id_of(i) for i in range(len(inferred))]
    if log == "int-ids.jsonl":
        assert [projected.id_of(i) for i in range(len(projected))] == [100, 101, 102, 103]
    if log == "mixed-ids.jsonl":
        assert projected.id_of(3) == "r-3"
    if log.startswith("top-"):
        assert projected.id_of(2499) == (2499 if log == "top-int-ids.jsonl" else "2499")


@pytest.mark.parametrize("extra", [[], ["--chunk-rows", "2"]])
def test_plot_of_a_log_whose_keys_match_no_rule_is_a_note_not_empty_axes(
        tmp_path: Path, extra: list[str]) -> None:
    # The chart drew two empty panels for the authority (llm.example.com, no rule) under
    # "all 1 keys that a rule matches are drawn"; now one line saying there is nothing to draw.
    import struct

    png = tmp_path / "asm.png"
    result = runner.invoke(app, ["simulate", str(LOGS / "asm-access.jsonl"), "-r", RULES,
                                 "--from", "asm", "--plot", str(png), *extra])
    assert result.exit_code == 0, result.output
    width, height = struct.unpack(">II", png.read_bytes()[16:24])
    assert (width, height) == (1320, 220)  # 12 x 2 inches at 110 dpi: the note's figure


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_a_status_written_as_a_whole_decimal_is_that_status(tmp_path: Path, suffix: str) -> None:
    """pandas writes an integer column with gaps as floats: 429.0 in Parquet, "429.0" in CSV
    text. Such a 429 line was not counted, as a trace or as a log read with --map."""
    import polars as pl

    rows = [{"ts": float(i), "key": "regular-user-1", "latency": 0.5, "prompt_tokens": 5,
             "completion_tokens": None if i % 3 == 0 else 10,
             "status": 429.0 if i % 3 == 0 else (200.0 if i % 2 else None)} for i in range(12)]
    path = tmp_path / f"log{suffix}"
    frame = pl.DataFrame(rows)
    if suffix == ".parquet":
        frame.write_parquet(path)
    elif suffix == ".csv":
        frame.write_csv(path)
    else:
        frame.write_ndjson(path)
    for extra in ([], ["--map", "ts=ts,key=key,status=status"]):
        result = runner.invoke(app, ["simulate", str(path), "--rules", str(SAMPLES / "rules.json"),
                                     "--format", "json", *extra])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["recorded_429"] == 4, extra
