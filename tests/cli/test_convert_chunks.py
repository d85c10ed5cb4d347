"""`trace convert --chunk-rows N`: a log larger than memory streamed into one canonical trace,
the same as the whole conversion (the real CLI, in process)."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import polars as pl
import pytest
import zstandard
from typer.testing import CliRunner

from tests.conftest import SAMPLES
from tokenlimit.cli.main import app

runner = CliRunner()
LOGS = SAMPLES / "logs"
RULES = str(SAMPLES / "rules.json")


def _text(path: Path) -> bytes:
    """A written JSON Lines file's bytes, decompressed as its name says."""
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        return gzip.decompress(data)
    if path.name.endswith(".zst"):
        return zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()
    return data


def _convert(source: Path, out: Path, *args: str) -> str:
    result = runner.invoke(app, ["trace", "convert", str(source), "-o", str(out), *args])
    assert result.exit_code == 0, result.output
    return result.stderr


@pytest.mark.parametrize(("source", "args"), [
    (SAMPLES / "trace.jsonl", []),
    (SAMPLES / "trace.csv", []),
    (LOGS / "asm-access.jsonl", ["--from", "asm", "--map", "key=user_type"]),
    (LOGS / "higress-ai-statistics.jsonl", ["--from", "higress"]),
    (LOGS / "envoy-ai-gateway.jsonl", ["--from", "envoy-ai-gateway"]),
    (LOGS / "litellm-spend-logs.csv", ["--from", "litellm"]),
    (LOGS / "kong-ai-audit.jsonl", ["--from", "kong"]),
])
@pytest.mark.parametrize("suffix", [".parquet", ".jsonl", ".jsonl.gz", ".jsonl.zst"])
def test_streamed_conversion_writes_what_the_whole_one_does(
        source: Path, args: list[str], suffix: str, tmp_path: Path) -> None:
    whole, streamed = tmp_path / f"whole{suffix}", tmp_path / f"streamed{suffix}"
    said = _convert(source, whole, *args)
    assert _convert(source, streamed, *args, "--chunk-rows", "2") == said.replace(
        str(whole), str(streamed))
    if suffix == ".parquet":
        assert pl.read_parquet(streamed).equals(pl.read_parquet(whole))
    else:
        assert _text(streamed) == _text(whole)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([whole.name, streamed.name])


def test_batches_that_differ_in_ids_and_keys_join_into_one_trace(tmp_path: Path) -> None:
    # The first batch's ids are its positions (no id column), the second's are text; the
    # third has a request with two keys: every request's keys become a list.
    lines = [{"ts": 1.0, "key": "regular-user-1", "completion_tokens": 30},
             {"id": 1, "ts": 2.0, "key": "regular-user-2", "completion_tokens": 30},
             {"id": "r-2", "ts": 3.0, "key": "regular-user-1"},
             {"id": "r-3", "ts": 4.0, "key": "regular-user-2", "completion_tokens": 9},
             {"ts": 5.0, "keys": ["regular-user-1", "subscriber-1"], "completion_tokens": 5}]
    source = tmp_path / "t.jsonl"
    source.write_text("".join(json.dumps(line) + "\n" for line in lines))
    whole, streamed = tmp_path / "whole.parquet", tmp_path / "streamed.parquet"
    _convert(source, whole)
    _convert(source, streamed, "--chunk-rows", "2")
    assert pl.read_parquet(streamed).equals(pl.read_parquet(whole))
    assert pl.read_parquet(streamed).to_dicts() == [
        {"id": "0", "ts": 1.0, "keys": ["regular-user-1"], "latency": 0.0, "prompt_tokens": 0,
         "completion_tokens": 30, "total_tokens": 30},
        {"id": "1", "ts": 2.0, "keys": ["regular-user-2"], "latency": 0.0, "prompt_tokens": 0,
         "completion_tokens": 30, "total_tokens": 30},
        {"id": "r-2", "ts": 3.0, "keys": ["regular-user-1"], "latency": 0.0,
         "prompt_tokens": 0, "completion_tokens": None, "total_tokens": None},
        {"id": "r-3", "ts": 4.0, "keys": ["regular-user-2"], "latency": 0.0,
         "prompt_tokens": 0, "completion_tokens": 9, "total_tokens": 9},
        {"id": "4", "ts": 5.0, "keys": ["regular-user-1", "subscriber-1"], "latency": 0.0,
         "prompt_tokens": 0, "completion_tokens": 5, "total_tokens": 5}]
    reports = [runner.invoke(app, ["simulate", str(path), "-r", RULES, "--format", "json",
                                   "--decisions", str(tmp_path / f"{path.stem}.csv")])
               for path in (source, whole, streamed)]
    assert [r.exit_code for r in reports] == [0, 0, 0]
    assert reports[1].stdout.replace(str(whole), "T") == reports[0].stdout.replace(
        str(source), "T") == reports[2].stdout.replace(str(streamed), "T")
    decided = [(tmp_path / f"{name}.csv").read_text() for name in ("t", "whole", "streamed")]
    assert decided[0] == decided[1] == decided[2]


def test_a_bad_line_in_a_later_batch_leaves_nothing_behind(tmp_path: Path) -> None:
    source = tmp_path / "t.jsonl"
    source.write_text('{"ts": 1, "key": "a"}\n{"ts": 2, "key": "b"}\n'
                      '{"ts": 3, "key": "a"}\n{"ts": "soon", "key": "b"}\n')
    out = tmp_path / "out.parquet"
    result = runner.invoke(app, ["trace", "convert", str(source), "-o", str(out),
                                 "--chunk-rows", "2"])
    assert result.exit_code == 1
    assert result.stderr == f"error: {source}:4: field 'ts': 'soon' is not a number\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.jsonl"]


@pytest.mark.parametrize("chunks", [[], ["--chunk-rows", "100"]])
def test_a_compressed_parquet_name_is_refused_before_the_work(tmp_path: Path,
                                                              chunks: list[str]) -> None:
    out = tmp_path / "t.parquet.gz"
    result = runner.invoke(app, ["trace", "convert", str(SAMPLES / "trace.jsonl"), "-o",
                                 str(out), *chunks])
    assert (result.exit_code, result.stderr) == (
        1, f"error: {out}: cannot write: Parquet is compressed inside; name it without the "
           ".gz\n")
    assert list(tmp_path.iterdir()) == []
