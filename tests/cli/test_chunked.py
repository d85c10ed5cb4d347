"""simulate --chunk-rows: a Parquet trace streamed in batches gives the whole replay's report
and decisions, exactly."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from tests.conftest import SAMPLES
from tokenlimit.cli.main import app
from tokenlimit.errors import TraceError
from tokenlimit.sim.generate import Tier, TraceSpec, generate_trace
from tokenlimit.sim.readers import read_trace
from tokenlimit.sim.writers import trace_frame

runner = CliRunner()
RULES = str(SAMPLES / "rules.json")


def _run(*args: str) -> Any:
    return runner.invoke(app, list(args))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated trace as a folder of three Parquet files, in time order, with ids."""
    trace = generate_trace(TraceSpec(duration=600.0, seed=3, tiers=(
        Tier("regular-user", users=40, rate=20.0), Tier("subscriber", users=10, rate=5.0))))
    frame = trace_frame(trace).with_columns(pl.Series("id", np.arange(len(trace)) * 7))
    folder = tmp_path_factory.mktemp("dataset")
    third = frame.height // 3
    for n, part in enumerate((frame[:third], frame[third:2 * third], frame[2 * third:])):
        part.write_parquet(folder / f"part-{n}.parquet")
    frame.write_parquet(folder.parent / "whole.parquet")
    return folder


@pytest.mark.parametrize("rows", [1, 997, 4096, 1_000_000])
def test_streamed_report_and_decisions_equal_the_whole_replay(dataset: Path, tmp_path: Path,
                                                              rows: int) -> None:
    whole = dataset.parent / "whole.parquet"
    expected = _run("simulate", str(whole), "-r", RULES, "-f", "json", "--decisions",
                    str(tmp_path / "whole.jsonl"))
    assert expected.exit_code == 0, expected.output
    streamed = _run("simulate", str(dataset), "-r", RULES, "-f", "json", "--chunk-rows",
                    str(rows), "--decisions", str(tmp_path / "streamed.jsonl"))
    assert streamed.exit_code == 0, streamed.output
    report, again = json.loads(expected.stdout), json.loads(streamed.stdout)
    assert again.pop("trace") == str(dataset)
    report.pop("trace")
    assert again == report
    assert report["totals"]["limited"] > 0
    lines = (tmp_path / "streamed.jsonl").read_text().splitlines()
    assert lines == (tmp_path / "whole.jsonl").read_text().splitlines()
    assert json.loads(lines[3])["id"] == 21


def test_a_trace_out_of_order_by_more_than_a_batch_is_refused_naming_the_request(
        tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    pl.DataFrame({"ts": [1.0, 3.0, 5.0, 6.0, 2.0, 7.0], "key": ["a"] * 6}).write_parquet(path)
    result = _run("simulate", str(path), "-r", RULES, "--chunk-rows", "2",
                  "--decisions", str(tmp_path / "d.jsonl"))
    assert result.exit_code == 1
    # Requests 1 and 2 were replayed once the second batch was read (they are no later than
    # its first instant); request 5 comes after them but is earlier than request 2.
    assert result.stderr == (f"error: {path}: not in time order: request 5 (ts 2.0) is "
                             "earlier than request 2 (ts 3.0) of a previous batch; "
                             "--chunk-rows needs a trace sorted by ts (sort it, or replay it "
                             "whole)\n")
    assert not (tmp_path / "d.jsonl").exists()


@pytest.mark.parametrize("suffix", ["jsonl", "csv.gz"])
def test_a_text_trace_out_of_order_by_more_than_a_batch_is_refused_naming_the_request(
        tmp_path: Path, suffix: str) -> None:
    import gzip
    import re

    ts = [float(i) for i in range(300)]
    ts[249] = 5.0  # request 250: earlier than requests replayed batches before
    frame = pl.DataFrame({"ts": ts, "key": ["a"] * 300})
    text = (frame.write_csv() if suffix.startswith("csv") else frame.write_ndjson()).encode()
    path = tmp_path / f"t.{suffix}"
    path.write_bytes(gzip.compress(text) if suffix.endswith(".gz") else text)
    result = _run("simulate", str(path), "-r", RULES, "--chunk-rows", "10")
    assert result.exit_code == 1
    found = re.fullmatch(rf"error: {re.escape(str(path))}: not in time order: request 250 "
                         r"\(ts 5\.0\) is earlier than request (\d+) \(ts (\d+\.0)\) of a "
                         r"previous batch; --chunk-rows needs a trace sorted by ts \(sort it, "
                         r"or replay it whole\)\n", result.stderr)
    assert found, result.stderr
    named = int(found.group(1))  # the latest request replayed before
    assert 200 < named < 250 and ts[named - 1] == float(found.group(2))


@pytest.mark.parametrize("kind", ["jsonl", "parquet"])
def test_dataset_files_out_of_order_are_named_with_their_own_request_numbers(
        tmp_path: Path, kind: str) -> None:
    """A folder streamed with --chunk-rows: the error names the file of the early request
    and its request number there, and the file of the later one read before it (it named
    the folder, with numbers counted across the files)."""
    def write(name: str, ts: list[float]) -> None:
        frame = pl.DataFrame({"ts": ts, "key": ["a"] * len(ts)})
        if kind == "parquet":
            frame.write_parquet(tmp_path / f"{name}.parquet")
        else:
            frame.write_ndjson(tmp_path / f"{name}.jsonl")

    write("day1", [float(i) for i in range(100, 130)])
    write("day2", [float(i) for i in range(0, 30)])  # the day before day1's
    result = _run("simulate", str(tmp_path), "-r", RULES, "--chunk-rows", "10")
    assert result.exit_code == 1
    # The latest request replayed before (text batches are about 10 lines: which one varies).
    found = re.fullmatch(
        rf"error: {re.escape(str(tmp_path / f'day2.{kind}'))}: not in time order: request 1 "
        rf"\(ts 0\.0\) is earlier than request (\d+) \(ts (\d+)\.0\) of "
        rf"{re.escape(str(tmp_path / f'day1.{kind}'))}; --chunk-rows needs a trace sorted by "
        r"ts \(sort it, or replay it whole\)\n", result.stderr)
    assert found, result.stderr
    assert 10 < int(found.group(1)) <= 30 and int(found.group(2)) == int(found.group(1)) + 99
    write("day2", [float(i) for i in range(200, 230)])
    write("day3", [float(i) for i in range(300, 330)])
    write("day4", [*(float(i) for i in range(400, 499)), 5.0])  # its last: out of order
    result = _run("simulate", str(tmp_path), "-r", RULES, "--chunk-rows", "10")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {tmp_path / f'day4.{kind}'}: not in time order: "
                                    "request 100 (ts 5.0) is earlier than request ")
    assert result.stderr.endswith(" of a previous batch; --chunk-rows needs a trace sorted by "
                                  "ts (sort it, or replay it whole)\n")


def test_a_bad_row_in_a_later_batch_is_located(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    pl.DataFrame({"ts": [1.0, 2.0, 3.0], "key": ["a", "b", "a"],
                  "latency": [0.0, 0.0, -1.0]}).write_parquet(path)
    result = _run("simulate", str(path), "-r", RULES, "--chunk-rows", "2")
    assert result.exit_code == 1
    assert result.stderr == f"error: {path}:3: field 'latency': must be >= 0 seconds\n"


@pytest.mark.parametrize(("args", "hint"), [
    (["--semantics", "gcra"], "streams the asm semantics only"),
    (["--set", "rules[0].max_tokens=1,2"], "a sweep replays the trace whole"),
    (["--decisions", "d.parquet"], "streamed decisions are written as plain JSON Lines"),
])
def test_what_streaming_does_not_do_is_a_usage_error(dataset: Path, args: list[str],
                                                     hint: str) -> None:
    result = _run("simulate", str(dataset), "-r", RULES, "--chunk-rows", "10", *args)
    assert result.exit_code == 2
    assert hint in " ".join(result.stderr.replace("│", " ").split())


@pytest.mark.parametrize("suffix", ["csv", "jsonl", "jsonl.gz", "csv.zst"])
def test_csv_and_json_lines_stream_like_the_whole_replay(dataset: Path, tmp_path: Path,
                                                         suffix: str) -> None:
    import gzip

    import zstandard

    frame = pl.read_parquet(dataset.parent / "whole.parquet")
    plain = tmp_path / f"t.{suffix.split('.')[0]}"
    if suffix.startswith("csv"):
        text = frame.with_columns(pl.col("key").map_elements(
            lambda k: f"{k},x" if k.endswith("7") else k, return_dtype=pl.String)).write_csv()
    else:
        text = frame.write_ndjson()
    plain.write_text(text)  # some CSV keys hold a comma: quoted
    path = tmp_path / f"t.{suffix}"
    if suffix.endswith(".gz"):
        path.write_bytes(gzip.compress(plain.read_bytes()))
    elif suffix.endswith(".zst"):
        path.write_bytes(zstandard.ZstdCompressor().compress(plain.read_bytes()))
    whole = _run("simulate", str(plain), "-r", RULES, "-f", "json", "--decisions",
                 str(tmp_path / "whole.jsonl"))
    assert whole.exit_code == 0, whole.output
    streamed = _run("simulate", str(path), "-r", RULES, "-f", "json", "--chunk-rows", "1000",
                    "--decisions", str(tmp_path / "streamed.jsonl"))
    assert streamed.exit_code == 0, streamed.output
    report, again = json.loads(whole.stdout), json.loads(streamed.stdout)
    report.pop("trace"), again.pop("trace")
    assert again == report
    assert ((tmp_path / "streamed.jsonl").read_text()
            == (tmp_path / "whole.jsonl").read_text())


def test_a_bad_line_in_a_later_block_names_its_line_in_the_file(tmp_path: Path) -> None:
    lines = [json.dumps({"ts": i, "key": "a", "completion_tokens": 1}) for i in range(50)]
    lines[37] = json.dumps({"ts": 37, "key": "a", "latency": "slow"})
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(lines) + "\n")
    result = _run("simulate", str(path), "-r", RULES, "--chunk-rows", "5")
    assert result.exit_code == 1
    assert result.stderr == f"error: {path}:38: field 'latency': 'slow' is not a number\n"
    rows = ["ts,key,latency"] + [f"{i},a,0" for i in range(30)]
    rows[21] = '20,"a\nb",x'
    csv = tmp_path / "t.csv"
    csv.write_text("\n".join(rows) + "\n")
    result = _run("simulate", str(csv), "-r", RULES, "--chunk-rows", "4")
    assert result.exit_code == 1
    # The record spans lines 22 and 23; the whole-file reader names its last line too.
    assert result.stderr == f"error: {csv}:23: field 'latency': 'x' is not a number\n"
    with pytest.raises(TraceError, match=r"t\.csv:23: field 'latency'"):
        read_trace(csv)


@pytest.mark.parametrize("suffix", ["jsonl.gz", "csv.gz", "jsonl.zst", "csv.zst"])
@pytest.mark.parametrize("chunked", [False, True])
def test_a_cut_short_compressed_trace_says_so(suffix: str, chunked: bool,
                                              tmp_path: Path) -> None:
    # An interrupted download: half the compressed bytes. zstandard's reader stopped quietly
    # (the trace read as empty), and a stream cut short ended the chunked replay with
    # click's "Aborted."; both are now the file's one-line error.
    import gzip

    import zstandard

    plain = (SAMPLES / f"trace.{suffix.split('.')[0]}").read_bytes()
    packed = (gzip.compress(plain) if suffix.endswith(".gz")
              else zstandard.ZstdCompressor().compress(plain))
    path = tmp_path / f"cut.{suffix}"
    path.write_bytes(packed[:len(packed) // 2])
    args = ["simulate", str(path), "-r", str(SAMPLES / "rules.json")]
    result = runner.invoke(app, [*args, "--chunk-rows", "100"] if chunked else args)
    reason = ("Compressed file ended before the end-of-stream marker was reached"
              if suffix.endswith(".gz") else
              "the zstd stream ends inside a frame (the file was cut short)")
    kind = ("gzip" if suffix.endswith(".gz") else "zstd") if chunked else "text, gzip or zstd"
    assert (result.exit_code, result.stderr) == (
        1, f"error: {path}: not a readable {kind} file ({reason})\n")


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize("pattern", ["", "*.parquet"])
def test_a_dataset_whose_files_differ_in_types_reads_as_one_trace(
        chunked: bool, pattern: str, tmp_path: Path) -> None:
    # Files written on different days: one stores prompt_tokens as Int32 and has an extra
    # column. One scan of them all refused the glob (a traceback with --chunk-rows).
    whole = pl.read_csv(SAMPLES / "trace.csv")
    folder = tmp_path / "days"
    folder.mkdir()
    whole[:900].write_parquet(folder / "day-1.parquet")
    whole[900:].with_columns(pl.col("prompt_tokens").cast(pl.Int32),
                             pl.lit("qwen-max").alias("model")).write_parquet(
        folder / "day-2.parquet")
    extra = ["--chunk-rows", "500"] if chunked else []
    report = runner.invoke(app, ["simulate", str(folder / pattern), "-r", RULES, "--format",
                                 "json", *extra])
    single = runner.invoke(app, ["simulate", str(SAMPLES / "trace.csv"), "-r", RULES,
                                 "--format", "json"])
    assert report.exit_code == 0, report.output
    assert ({k: v for k, v in json.loads(report.stdout).items() if k != "trace"}
            == {k: v for k, v in json.loads(single.stdout).items() if k != "trace"})


def _report_of(*args: str) -> dict[str, Any]:
    result = runner.invoke(app, ["simulate", *args, "-r", RULES, "--format", "json"])
    assert result.exit_code == 0, result.output
    report: dict[str, Any] = json.loads(result.stdout)
    report.pop("trace")
    return report


@pytest.mark.parametrize("chunks", [[], ["--chunk-rows", "500"]])
@pytest.mark.parametrize("pattern", ["", "**/*.parquet", "date=*/*.parquet"])
def test_a_dataset_as_spark_leaves_it_reads_only_its_data_files(
        chunks: list[str], pattern: str, tmp_path: Path) -> None:
    # polars' own glob read _temporary/ (a write's attempts) and hidden files as data.
    whole = pl.read_csv(SAMPLES / "trace.csv")
    folder = tmp_path / "export"
    for day in ("date=2026-11-01", "date=2026-11-02", "_temporary/0", "date=2026-11-02/.x"):
        (folder / day).mkdir(parents=True)
    whole[:900].write_parquet(folder / "date=2026-11-01" / "part-0.parquet")
    whole[900:].write_parquet(folder / "date=2026-11-02" / "part-1.parquet")
    whole[:100].write_parquet(folder / "_temporary" / "0" / "part-0.parquet")
    whole[:100].write_parquet(folder / "date=2026-11-02" / ".part-0.parquet")
    whole[:100].write_parquet(folder / "date=2026-11-02" / ".x" / "part-2.parquet")
    (folder / "_SUCCESS").write_bytes(b"")
    expected = _report_of(str(SAMPLES / "trace.csv"))
    assert _report_of(str(folder / pattern), *chunks) == expected
    assert expected["totals"]["requests"] == whole.height


@pytest.mark.parametrize("chunks", [[], ["--chunk-rows", "2"]])
@pytest.mark.parametrize("pattern", ["", "*.parquet"])
def test_a_gateway_log_in_parquet_files_reads_as_one_log(chunks: list[str], pattern: str,
                                                         tmp_path: Path) -> None:
    # A glob of Parquet logs with --from was read as one file named '*.parquet'.
    log = pl.read_csv(SAMPLES / "logs" / "litellm-spend-logs.csv")
    folder = tmp_path / "spend"
    folder.mkdir()
    log[:1].write_parquet(folder / "day-1.parquet")
    log[1:].write_parquet(folder / "day-2.parquet")
    log.write_parquet(tmp_path / "whole.parquet")
    args = ["--from", "litellm", "--map", "key=user"]
    expected = _report_of(str(tmp_path / "whole.parquet"), *args)
    assert _report_of(str(folder / pattern), *args, *chunks) == expected
    assert expected["totals"]["requests"] == log.height


@pytest.mark.parametrize("chunks", [[], ["--chunk-rows", "2"]])
def test_a_bad_row_of_a_parquet_log_dataset_names_its_file_and_row(chunks: list[str],
                                                                  tmp_path: Path) -> None:
    """Read whole, a bad value in a later file of a Parquet log dataset was named by the
    folder and its row in the whole dataset."""
    log = pl.read_csv(SAMPLES / "logs" / "litellm-spend-logs.csv", infer_schema=False)
    log[:1].write_parquet(tmp_path / "day-1.parquet")
    log[1:].with_columns(pl.when(pl.int_range(pl.len()) == 1).then(pl.lit("soon"))
                         .otherwise(pl.col("startTime")).alias("startTime")
                         ).write_parquet(tmp_path / "day-2.parquet")
    result = _run("simulate", str(tmp_path), "-r", RULES, "--from", "litellm", "--map",
                  "key=user", *chunks)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {tmp_path / 'day-2.parquet'}:2: field "
                                    "'startTime': 'soon' is not a time"), result.stderr


def _decided(*args: str, decisions: Path) -> tuple[dict[str, Any], str]:
    report = _report_of(*args, "--decisions", str(decisions))
    return report, decisions.read_text()


@pytest.mark.parametrize("chunks", [[], ["--chunk-rows", "300"]])
@pytest.mark.parametrize("pattern", ["", "day-*"])
@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_a_folder_or_glob_of_text_files_reads_as_the_file_they_join_into(
        chunks: list[str], pattern: str, fmt: str, tmp_path: Path) -> None:
    # A gateway's logs come a file a day, some compressed: they were one error line.
    lines = (SAMPLES / f"trace.{fmt}").read_bytes().splitlines(keepends=True)
    header, body = (lines[:1], lines[1:]) if fmt == "csv" else ([], lines)
    folder = tmp_path / "days"
    folder.mkdir()
    cut = len(body) // 3
    (folder / f"day-1.{fmt}").write_bytes(b"".join(header + body[:cut]))
    (folder / f"day-2.{fmt}.gz").write_bytes(gzip.compress(b"".join(header + body[cut:2 * cut])))
    (folder / f"day-3.{fmt}").write_bytes(b"".join(header + body[2 * cut:]).rstrip(b"\n"))
    (folder / "README.md").write_text("not a trace\n")  # a folder's other files: not read
    (folder / f"day-0.{fmt}").write_bytes(b"")  # a day with nothing in it, not even a header
    expected = _decided(str(SAMPLES / f"trace.{fmt}"), decisions=tmp_path / "one.jsonl")
    assert _decided(str(folder / pattern), *chunks, decisions=tmp_path / "days.jsonl") == expected


@pytest.mark.parametrize("chunks", [[], ["--chunk-rows", "2"]])
def test_rotated_gateway_logs_read_as_one_log(chunks: list[str], tmp_path: Path) -> None:
    lines = (SAMPLES / "logs" / "asm-access.jsonl").read_bytes().splitlines(keepends=True)
    folder = tmp_path / "istio-proxy"
    folder.mkdir()
    (folder / "access.log.1.gz").write_bytes(gzip.compress(b"".join(lines[:2])))  # older
    (folder / "access.log").write_bytes(b"".join(lines[2:]))  # logrotate's live file: newest
    args = ["--from", "asm", "--map", "key=user_type"]
    expected = _report_of(str(SAMPLES / "logs" / "asm-access.jsonl"), *args)
    assert _report_of(str(folder), *args, *chunks) == expected
    assert expected["recorded_429"] == 1


@pytest.mark.parametrize("chunks", [[], ["--chunk-rows", "100"]])
def test_logrotate_numbered_files_join_oldest_first(chunks: list[str], tmp_path: Path) -> None:
    # logrotate renames access.log to access.log.1 and .1 to .2: the highest number is the
    # oldest. Read in name order, access.log (newest) came first: streamed, 'not in time
    # order'; whole, the decisions of the files in reverse order. And .10 sorted before .2.
    lines = (SAMPLES / "trace.jsonl").read_bytes().splitlines(keepends=True)
    parts = [b"".join(lines[a:a + 150]) for a in range(0, len(lines), 150)]  # oldest first
    folder = tmp_path / "nginx"
    folder.mkdir()
    for number, part in enumerate(reversed(parts)):  # 0: the newest
        if number == 0:
            (folder / "access.log").write_bytes(part)
        elif number == 1:
            (folder / "access.log.1").write_bytes(part)  # logrotate's delaycompress
        else:
            (folder / f"access.log.{number}.gz").write_bytes(gzip.compress(part))
    expected = _decided(str(SAMPLES / "trace.jsonl"), decisions=tmp_path / "one.jsonl")
    assert _decided(str(folder), *chunks, decisions=tmp_path / "rotated.jsonl") == expected
    assert _decided(str(folder / "access.log*"), *chunks,
                    decisions=tmp_path / "glob.jsonl") == expected


@pytest.mark.parametrize("chunks", [[], ["--chunk-rows", "100"]])
def test_logrotate_dateext_files_are_read_oldest_first(chunks: list[str],
                                                       tmp_path: Path) -> None:
    # logrotate's dateext (the default on RHEL, Fedora, Amazon Linux) names the rotated files
    # access.log-20261101(.gz): a folder read only the live access.log, the rest left out
    # without a word; a glob read the live (newest) file first.
    lines = (SAMPLES / "trace.jsonl").read_bytes().splitlines(keepends=True)
    folder = tmp_path / "nginx"
    folder.mkdir()
    (folder / "access.log-20261101").write_bytes(b"".join(lines[:600]))
    (folder / "access.log-20261102.gz").write_bytes(gzip.compress(b"".join(lines[600:1200])))
    (folder / "access.log").write_bytes(b"".join(lines[1200:]))
    expected = _decided(str(SAMPLES / "trace.jsonl"), decisions=tmp_path / "one.jsonl")
    assert _decided(str(folder), *chunks, decisions=tmp_path / "rotated.jsonl") == expected
    assert _decided(str(folder / "access.log*"), *chunks,
                    decisions=tmp_path / "glob.jsonl") == expected


@pytest.mark.parametrize("chunks", [[], ["--chunk-rows", "100"]])
def test_a_bad_line_in_a_later_file_names_that_file_and_its_line(chunks: list[str],
                                                                 tmp_path: Path) -> None:
    lines = (SAMPLES / "trace.jsonl").read_bytes().splitlines(keepends=True)
    (tmp_path / "a.jsonl").write_bytes(b"".join(lines[:500]))
    (tmp_path / "b.jsonl").write_bytes(b"".join(lines[500:506]) + b'{"ts": "soon"}\n')
    result = runner.invoke(app, ["simulate", str(tmp_path), "-r", RULES, *chunks])
    assert (result.exit_code, result.stderr) == (
        1, f"error: {tmp_path / 'b.jsonl'}:7: field 'ts': 'soon' is not a number\n")


@pytest.mark.parametrize("chunks", [[], ["--chunk-rows", "100"], ["--chunk-rows", "3"]])
@pytest.mark.parametrize("pattern", ["", "*.parquet"])
def test_a_bad_row_in_a_later_parquet_file_names_that_file_and_its_row(
        chunks: list[str], pattern: str, tmp_path: Path) -> None:
    """Read whole, a dataset whose values the columnar reader declines is read row by row
    file by file (it tried to open the folder as one file: "cannot read: Is a directory");
    streamed, the error named the folder and the row in the whole dataset."""
    frame = read_trace(SAMPLES / "trace.jsonl").requests()
    rows = pl.DataFrame([{"ts": r.ts, "key": r.keys[0], "latency": r.latency,
                          "prompt_tokens": r.prompt_tokens,
                          "completion_tokens": r.completion_tokens} for r in frame[:20]])
    rows[:10].write_parquet(tmp_path / "a.parquet")
    rows[10:].with_columns(pl.when(pl.int_range(pl.len()) == 5).then(-3)
                           .otherwise(pl.col("prompt_tokens")).alias("prompt_tokens")
                           ).write_parquet(tmp_path / "b.parquet")
    result = runner.invoke(app, ["simulate", str(tmp_path / pattern), "-r", RULES, *chunks])
    assert (result.exit_code, result.stderr) == (
        1, f"error: {tmp_path / 'b.parquet'}:6: field 'prompt_tokens': token counts are whole "
        "numbers from 0 to 10**15, got -3\n")


@pytest.mark.parametrize("chunks", [[], ["--chunk-rows", "100"]])
def test_an_unreadable_parquet_file_in_a_dataset_is_named(chunks: list[str],
                                                          tmp_path: Path) -> None:
    rows = pl.DataFrame({"ts": [1.0, 2.0], "key": ["u", "u"]})
    rows.write_parquet(tmp_path / "a.parquet")
    (tmp_path / "b.parquet").write_bytes(b"PAR1 cut short")
    result = runner.invoke(app, ["simulate", str(tmp_path), "-r", RULES, *chunks])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {tmp_path / 'b.parquet'}: not a readable Parquet ")


def test_a_quote_left_open_at_a_csv_files_end_names_that_file_not_the_next(
        tmp_path: Path) -> None:
    # The joined text carried a.csv's open quote into b.csv, and the error named b.csv's last
    # line ('b.csv:201: 2 columns where the header has 6'); streamed, a.csv:101.
    lines = (SAMPLES / "trace.csv").read_text().splitlines(keepends=True)
    (tmp_path / "a.csv").write_text("".join(lines[:100]) + '1700000500.0,"regular-user,1,2\n')
    (tmp_path / "b.csv").write_text("".join(lines[:1] + lines[100:300]))
    result = runner.invoke(app, ["simulate", str(tmp_path), "-r", RULES])
    assert (result.exit_code, result.stderr) == (1, (
        f"error: {tmp_path / 'a.csv'}:101: a quoted value is not closed by the end of the file "
        "(the files of a folder or glob are read as one file)\n"))
    streamed = runner.invoke(app, ["simulate", str(tmp_path), "-r", RULES, "--chunk-rows", "50"])
    assert (streamed.exit_code, streamed.stderr) == (
        1, f"error: {tmp_path / 'a.csv'}:101: 2 columns where the header has 6\n")


@pytest.mark.parametrize("chunks", [[], ["--chunk-rows", "100"]])
def test_text_files_that_do_not_join_are_one_line_naming_the_file(chunks: list[str],
                                                                  tmp_path: Path) -> None:
    csv = (SAMPLES / "trace.csv").read_text()
    (tmp_path / "a.csv").write_text(csv)
    (tmp_path / "b.csv").write_text(csv.replace("ts,", "timestamp,", 1))
    result = runner.invoke(app, ["simulate", str(tmp_path), "-r", RULES, *chunks])
    assert (result.exit_code, result.stderr) == (1, (
        f"error: {tmp_path / 'b.csv'}:1: its CSV header differs from {tmp_path / 'a.csv'}'s: "
        "the files of a folder or glob are read as one file\n"))
    (tmp_path / "b.csv").unlink()
    (tmp_path / "b.jsonl").write_bytes((SAMPLES / "trace.jsonl").read_bytes())
    result = runner.invoke(app, ["simulate", str(tmp_path), "-r", RULES, *chunks])
    assert (result.exit_code, result.stderr) == (1, (
        f"error: {tmp_path / 'b.jsonl'}: a JSON Lines file among CSV files: a folder or glob "
        "holds one format\n"))


@pytest.mark.parametrize("chunks", [[], ["--chunk-rows", "100"]])
def test_a_glob_of_parquet_and_json_lines_files_is_one_line_naming_the_text_file(
        chunks: list[str], tmp_path: Path) -> None:
    # 'days/*' matched day-1.parquet and day-2.jsonl: day-2's requests were left out without
    # a word (a report of day 1 alone), though a glob reads every file it matches.
    result = runner.invoke(app, ["trace", "convert", str(SAMPLES / "trace.jsonl"), "-o",
                                 str(tmp_path / "day-1.parquet")])
    assert result.exit_code == 0, result.output
    (tmp_path / "day-2.jsonl").write_bytes((SAMPLES / "trace.jsonl").read_bytes())
    result = runner.invoke(app, ["simulate", str(tmp_path / "day-*"), "-r", RULES, *chunks])
    assert (result.exit_code, result.stdout, result.stderr) == (1, "", (
        f"error: {tmp_path / 'day-2.jsonl'}: a JSON Lines file among Parquet files: a glob "
        "reads every file it matches, and a trace is one format\n"))
    # A folder that holds Parquet files is a Parquet dataset: its other files are not read.
    assert _report_of(str(tmp_path), *chunks)["totals"]["requests"] == 1823


def test_a_folder_without_trace_files_says_what_it_looks_for(tmp_path: Path) -> None:
    (tmp_path / "notes.md").write_text("no trace\n")
    result = runner.invoke(app, ["simulate", str(tmp_path), "-r", RULES])
    assert (result.exit_code, result.stderr) == (1, (
        f"error: {tmp_path}: no trace files here (Parquet, or CSV and JSON Lines: .csv, "
        ".jsonl, .ndjson, .json or .log, plain, .gz or .zst)\n"))


@pytest.mark.parametrize("column", [
    pl.col("id").cast(pl.Categorical),  # pyarrow's dictionary-encoded strings
    pl.col("key").cast(pl.Enum(["a", "b"])),
    pl.col("status").cast(pl.Float64),  # pandas' integers with a gap
])
def test_a_batch_the_columnar_reader_declines_streams_as_the_whole_file_reads(
        column: pl.Expr, tmp_path: Path) -> None:
    # Each was 'error: t.parquet:1: could not be read as a trace' with --chunk-rows, while
    # the whole file was read (by the per-row reader).
    path = tmp_path / "t.parquet"
    pl.DataFrame({"id": ["r1", "r2", "r3"], "ts": [1.0, 2.0, 3.0], "key": ["a", "b", "a"],
                  "completion_tokens": [30, 20, 10], "status": [200, 200, 200]}).with_columns(
        column).write_parquet(path)
    whole = _run("simulate", str(path), "-r", RULES, "-f", "json", "--decisions",
                 str(tmp_path / "whole.jsonl"))
    streamed = _run("simulate", str(path), "-r", RULES, "-f", "json", "--chunk-rows", "2",
                    "--decisions", str(tmp_path / "streamed.jsonl"))
    assert (whole.exit_code, streamed.exit_code) == (0, 0), streamed.output
    assert json.loads(streamed.stdout) == json.loads(whole.stdout)
    assert (tmp_path / "streamed.jsonl").read_text() == (
        tmp_path / "whole.jsonl").read_text() == "".join(
        f'{{"id": "r{n}", "outcome": "allow", "rule": null}}\n' for n in (1, 2, 3))
