"""simulate --chunk-rows on gateway logs (--from / --map): the streamed replay of a log gives
the whole replay's report and decisions, 429 lines and their imputed usage included."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from tests.conftest import SAMPLES
from tokenlimit.cli.main import app

runner = CliRunner()
RULES = str(SAMPLES / "rules.json")
LOGS = SAMPLES / "logs"
SAMPLE_LOGS = [("asm-access.jsonl", ["--from", "asm", "--map", "key=user_type"]),
               ("higress-ai-statistics.jsonl", ["--from", "higress", "--map",
                                                "key=x-mse-consumer"]),
               ("envoy-ai-gateway.jsonl", ["--from", "envoy-ai-gateway"]),
               ("litellm-spend-logs.csv", ["--from", "litellm", "--map", "key=user"]),
               ("kong-ai-audit.jsonl", ["--from", "kong"])]


def _replay(path: Path | str, tmp_path: Path, name: str, *args: str) -> tuple[Any, list[str]]:
    decisions = tmp_path / f"{name}.jsonl"
    result = runner.invoke(app, ["simulate", str(path), "-r", RULES, "-f", "json",
                                 "--decisions", str(decisions), *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), decisions.read_text().splitlines()


@pytest.mark.parametrize(("log", "options"), SAMPLE_LOGS)
@pytest.mark.parametrize("rows", [1, 2, 3])
def test_each_sample_log_streamed_equals_its_whole_replay(tmp_path: Path, log: str,
                                                          options: list[str], rows: int) -> None:
    whole = _replay(LOGS / log, tmp_path, "whole", *options)
    streamed = _replay(LOGS / log, tmp_path, "streamed", *options, "--chunk-rows", str(rows))
    assert streamed == whole
    report, decisions = whole
    limited_when_recorded = 0 if log.startswith("litellm") else 1
    assert (report["recorded_429"], report["imputed"]) == (limited_when_recorded,) * 2
    assert len(decisions) == report["totals"]["requests"]


def _asm_log(seed: int, n: int) -> pl.DataFrame:
    """An ASM access log in time order, many requests per instant (ties across batch
    boundaries), a tenth answered 429 (usage "-"), and one key only ever answered 429 (its
    imputed usage comes from every recorded request)."""
    rng = np.random.default_rng(seed)
    seconds = np.sort(rng.integers(0, n // 6, n)) * 0.5  # ties: about 3 lines per instant
    users = np.array([f"regular-user-{i}" for i in range(4)] + ["subscriber-0", "subscriber-1"])
    key = users[rng.integers(0, users.size, n)]
    limited = rng.random(n) < 0.1
    key[rng.random(n) < 0.03] = "regular-user-429"
    limited[key == "regular-user-429"] = True
    prompt = rng.integers(1, 400, n)
    completion = rng.integers(1, 150, n)
    start = [datetime.fromtimestamp(1793610000 + s, UTC).isoformat(timespec="milliseconds")
             .replace("+00:00", "Z") for s in seconds.tolist()]
    return pl.DataFrame({
        "start_time": start,
        "response_code": np.where(limited, 429, 200),
        "duration": np.where(limited, 2, rng.integers(0, 4000, n)),
        "authority": ["llm.example.com"] * n,
        "request_id": [f"req-{i:05d}" for i in range(n)],
        "user_type": key,
        "request_prompt_tokens": np.where(limited, "-", prompt.astype(str)),
        "request_completion_tokens": np.where(limited, "-", completion.astype(str)),
    })


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("suffix", ["jsonl", "parquet", "jsonl.gz"])
def test_a_log_with_429_lines_streams_exactly_on_ties(tmp_path: Path, seed: int,
                                                      suffix: str) -> None:
    import gzip

    log = _asm_log(seed, 600)
    path = tmp_path / f"access.{suffix}"
    if suffix == "parquet":
        log.write_parquet(path)
    else:
        text = log.write_ndjson().encode()
        path.write_bytes(gzip.compress(text) if suffix.endswith(".gz") else text)
    options = ["--from", "asm", "--map", "key=user_type", "--seed", str(seed)]
    whole = _replay(path, tmp_path, "whole", *options)
    report = whole[0]
    assert report["recorded_429"] == int((log["response_code"] == 429).sum())
    assert report["imputed"] == report["recorded_429"] > 0
    assert report["totals"]["limited"] > 0
    for rows in (1, 7):
        assert _replay(path, tmp_path, "streamed", *options, "--chunk-rows", str(rows)) == whole


def test_a_folder_of_parquet_logs_reads_as_its_single_file(tmp_path: Path) -> None:
    log = _asm_log(6, 300)
    log.write_parquet(tmp_path / "whole.parquet")
    folder = tmp_path / "logs" / "day=2026-11-02"  # files at any depth, in name order
    folder.mkdir(parents=True)
    for n, start in enumerate(range(0, 300, 100)):
        log[start:start + 100].write_parquet(folder / f"part-{n}.parquet")
    options = ["--from", "asm", "--map", "key=user_type"]
    report, decisions = _replay(tmp_path / "whole.parquet", tmp_path, "whole", *options)
    assert report.pop("trace") == str(tmp_path / "whole.parquet")
    assert report["recorded_429"] > 0
    for chunks in ([], ["--chunk-rows", "40"]):
        again, again_decisions = _replay(tmp_path / "logs", tmp_path, "folder", *options,
                                         *chunks)
        assert again.pop("trace") == str(tmp_path / "logs")
        assert (again, again_decisions) == (report, decisions)


@pytest.mark.parametrize("suffix", ["jsonl", "parquet"])
def test_a_log_written_at_response_end_streams_exactly(tmp_path: Path, suffix: str) -> None:
    """Gateways write a line when the response ends: start times run back across batch
    boundaries by up to the longest request, and the streamed replay is still exact."""
    log = _asm_log(5, 600)
    ends = (pl.col("start_time").str.to_datetime(time_zone="UTC").dt.epoch("ms")
            + pl.col("duration"))
    log = log.with_columns(ends.alias("end")).sort("end", maintain_order=True).drop("end")
    starts = log["start_time"].to_list()
    assert sum(b < a for a, b in itertools.pairwise(starts)) > 100  # out of order
    path = tmp_path / f"access.{suffix}"
    if suffix == "parquet":
        log.write_parquet(path)
    else:
        path.write_text(log.write_ndjson())
    options = ["--from", "asm", "--map", "key=user_type"]
    whole = _replay(path, tmp_path, "whole", *options)
    assert whole[0]["imputed"] > 0 and whole[0]["totals"]["limited"] > 0
    # Batches of 50 lines span more time than the longest request (4 s): each line's
    # disorder stays within a batch.
    for rows in (50, 120):
        assert _replay(path, tmp_path, "streamed", *options, "--chunk-rows", str(rows)) == whole


def test_a_bad_value_in_a_later_block_of_a_log_names_its_line(tmp_path: Path) -> None:
    log = _asm_log(3, 80).with_columns(
        pl.when(pl.int_range(pl.len()) == 61).then(pl.lit("many"))
        .otherwise(pl.col("request_prompt_tokens")).alias("request_prompt_tokens"))
    path = tmp_path / "access.jsonl"
    path.write_text(log.write_ndjson())
    result = runner.invoke(app, ["simulate", str(path), "-r", RULES, "--from", "asm", "--map",
                                 "key=user_type", "--chunk-rows", "5"])
    assert result.exit_code == 1
    assert result.stderr == (f"error: {path}:62: field 'request_prompt_tokens': 'many' is "
                             "not a number\n")
    parquet = tmp_path / "access.parquet"
    log.write_parquet(parquet)
    result = runner.invoke(app, ["simulate", str(parquet), "-r", RULES, "--from", "asm",
                                 "--map", "key=user_type", "--chunk-rows", "5"])
    assert result.exit_code == 1
    assert result.stderr == (f"error: {parquet}:62: field 'request_prompt_tokens': 'many' is "
                             "not a number\n")


def test_key_templates_with_chunk_rows_are_refused_saying_why() -> None:
    result = runner.invoke(app, ["simulate", str(LOGS / "kong-ai-audit.jsonl"), "-r", RULES,
                                 "--chunk-rows", "2", "--key-template",
                                 "{{request.headers.user-type}}"])
    assert result.exit_code == 2
    assert ("--chunk-rows reads keys from a key field or a log's --map key=FIELD, not from "
            "templates") in " ".join(result.stderr.replace("│", " ").split())


@pytest.mark.parametrize("args", [["--jobs", "2"], ["--executor", "dask"]])
def test_partitions_with_chunk_rows_are_refused_saying_why(args: list[str]) -> None:
    result = runner.invoke(app, ["simulate", str(SAMPLES / "trace.csv"), "-r", RULES,
                                 "--chunk-rows", "100", *args])
    assert result.exit_code == 2
    assert ("--chunk-rows replays on one process: every key's state goes from batch to batch"
            in " ".join(result.stderr.replace("│", " ").split()))


@pytest.mark.parametrize(("source", "options"), [
    (str(SAMPLES / "trace.jsonl"), ["--speed", "7"]),
    (str(SAMPLES / "trace.csv"), ["--top", "2", "--charge", "total"]),
    ("asm-log", ["--from", "asm", "--map", "key=user_type"]),
])
@pytest.mark.parametrize("rows", ["1", "100"])
def test_a_streamed_chart_and_speed_are_the_whole_replays_byte_for_byte(
        tmp_path: Path, source: str, options: list[str], rows: str) -> None:
    if source == "asm-log":  # 429 lines: the chart's pass fills their usage too
        source = str(tmp_path / "access.jsonl")
        Path(source).write_text(_asm_log(4, 400).write_ndjson())
    whole = _replay(source, tmp_path, "whole", *options, "--plot", str(tmp_path / "w.png"))
    streamed = _replay(source, tmp_path, "streamed", *options, "--chunk-rows", rows,
                       "--plot", str(tmp_path / "s.png"))
    assert streamed == whole
    assert (tmp_path / "s.png").read_bytes() == (tmp_path / "w.png").read_bytes()
    assert (tmp_path / "s.png").read_bytes().startswith(b"\x89PNG")
