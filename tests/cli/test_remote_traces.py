"""Traces at URLs (fsspec): a real HTTP server on 127.0.0.1 serving sample files and a Parquet
dataset, ``file://`` globs, ``memory://``; whole, streamed (--chunk-rows) and on a Dask
cluster, each equal to the replay of the same local file."""

from __future__ import annotations

import functools
import gzip
import http.server
import json
import shutil
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from tests.conftest import SAMPLES
from tokenlimit.cli.main import app
from tokenlimit.sim.generate import Tier, TraceSpec, generate_trace
from tokenlimit.sim.writers import trace_frame

runner = CliRunner()
RULES = str(SAMPLES / "rules.json")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """A folder of traces, logs and a three-file Parquet dataset, served over HTTP on
    127.0.0.1 (directory listings included, as fsspec's HTTP file system reads them)."""
    root = tmp_path_factory.mktemp("served")
    shutil.copy(SAMPLES / "trace.csv", root / "trace.csv")
    shutil.copy(SAMPLES / "trace.jsonl", root / "trace.jsonl")
    (root / "trace.jsonl.gz").write_bytes(gzip.compress((SAMPLES / "trace.jsonl").read_bytes()))
    shutil.copy(SAMPLES / "logs" / "kong-ai-audit.jsonl", root / "kong.jsonl")
    trace = generate_trace(TraceSpec(duration=300.0, seed=5, tiers=(
        Tier("regular-user", users=30, rate=15.0), Tier("subscriber", users=8, rate=4.0))))
    frame = trace_frame(trace).with_columns(pl.Series("id", np.arange(len(trace)) * 3))
    frame.write_parquet(root / "whole.parquet")
    dataset = root / "dataset"
    dataset.mkdir()
    third = frame.height // 3
    for n, part in enumerate((frame[:third], frame[third:2 * third], frame[2 * third:])):
        part.write_parquet(dataset / f"part-{n}.parquet")
    # As Spark leaves a dataset: a write's attempts under _temporary/, checksums, _SUCCESS;
    # none of them is data.
    (dataset / "_temporary" / "0").mkdir(parents=True)
    frame[:third].write_parquet(dataset / "_temporary" / "0" / "part-0.parquet")
    frame[:third].write_parquet(dataset / ".part-0.parquet")
    (dataset / ".part-0.parquet.crc").write_bytes(b"crc")
    (dataset / "_SUCCESS").write_bytes(b"")
    (root / "empty").mkdir()  # a folder without Parquet files
    (root / "empty" / "notes.txt").write_text("not a trace\n")
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def _replay(source: str, tmp_path: Path, name: str, *args: str) -> tuple[Any, str]:
    decisions = tmp_path / f"{name}.jsonl"
    result = runner.invoke(app, ["simulate", source, "-r", RULES, "-f", "json",
                                 "--decisions", str(decisions), *args])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report.pop("trace") == source
    return report, decisions.read_text()


@pytest.mark.parametrize(("name", "args"), [
    ("trace.csv", []), ("trace.jsonl", []), ("trace.jsonl.gz", []), ("whole.parquet", []),
    ("kong.jsonl", ["--from", "kong"]),
])
@pytest.mark.parametrize("chunks", [[], ["--chunk-rows", "250"]])
def test_a_trace_over_http_replays_like_the_local_file(served: tuple[Path, str],
                                                       tmp_path: Path, name: str,
                                                       args: list[str],
                                                       chunks: list[str]) -> None:
    root, url = served
    local = _replay(str(root / name), tmp_path, "local", *args)
    remote = _replay(f"{url}/{name}", tmp_path, "remote", *args, *chunks)
    assert remote == local
    assert local[0]["totals"]["requests"] == len(local[1].splitlines()) > 0


@pytest.mark.parametrize("chunks", [[], ["--chunk-rows", "250"]])
def test_a_presigned_url_with_a_query_is_a_file_of_its_suffix(served: tuple[Path, str],
                                                              tmp_path: Path,
                                                              chunks: list[str]) -> None:
    root, url = served
    local = _replay(str(root / "trace.jsonl.gz"), tmp_path, "local")
    source = f"{url}/trace.jsonl.gz?X-Amz-Expires=3600&X-Amz-Signature=0f3a*"
    assert _replay(source, tmp_path, "presigned", *chunks) == local


@pytest.mark.parametrize("form", ["http-folder", "file-glob", "file-folder", "local-folder"])
@pytest.mark.parametrize("chunks", [[], ["--chunk-rows", "333"]])
def test_a_parquet_dataset_at_a_url_replays_like_its_single_file(
        served: tuple[Path, str], tmp_path: Path, form: str, chunks: list[str]) -> None:
    root, url = served
    source = {"http-folder": f"{url}/dataset/",
              "file-glob": f"file://{root}/dataset/part-*.parquet",
              "file-folder": f"file://{root}/dataset",
              "local-folder": str(root / "dataset")}[form]
    whole = _replay(str(root / "whole.parquet"), tmp_path, "whole")
    assert _replay(source, tmp_path, "dataset", *chunks) == whole
    assert json.loads(whole[1].splitlines()[5])["id"] == 15  # ids kept across files


def test_memory_urls_and_trace_convert_read_through_fsspec(tmp_path: Path) -> None:
    import fsspec

    memory = fsspec.filesystem("memory")
    memory.pipe("/traces/trace.csv", (SAMPLES / "trace.csv").read_bytes())
    try:
        local = _replay(str(SAMPLES / "trace.csv"), tmp_path, "local")
        assert _replay("memory://traces/trace.csv", tmp_path, "memory") == local
        converted = tmp_path / "t.parquet"
        result = runner.invoke(app, ["trace", "convert", "memory://traces/trace.csv", "-o",
                                     str(converted)])
        assert result.exit_code == 0, result.output
        assert result.stderr == f"wrote 1,823 requests for 25 keys to {converted}\n"
        assert _replay(str(converted), tmp_path, "converted") == local
    finally:
        memory.rm("/traces", recursive=True)


def test_trace_convert_reads_a_log_and_a_dataset_over_http(served: tuple[Path, str],
                                                           tmp_path: Path) -> None:
    root, url = served
    whole = pl.read_parquet(root / "whole.parquet")
    for source, args, expected in ((f"{url}/kong.jsonl", ["--from", "kong"], (4, 2)),
                                   (f"{url}/dataset/", [],
                                    (whole.height, whole["key"].n_unique()))):
        out = tmp_path / "out.jsonl"
        result = runner.invoke(app, ["trace", "convert", source, "-o", str(out), *args])
        assert result.exit_code == 0, result.output
        assert result.stderr == (f"wrote {expected[0]:,} requests for {expected[1]:,} keys "
                                 f"to {out}\n")
        assert len(out.read_text().splitlines()) == expected[0]


@pytest.mark.parametrize("chunks", [[], ["--chunk-rows", "100"]])
def test_a_missing_remote_file_or_protocol_is_one_located_line(served: tuple[Path, str],
                                                               chunks: list[str]) -> None:
    _, url = served
    for source, message in ((f"{url}/absent.csv", "cannot read: No such file or directory"),
                            (f"{url}/empty/", "no trace files here (Parquet, or CSV and JSON "
                             "Lines: .csv, .jsonl, .ndjson, .json or .log, plain, .gz or "
                             ".zst)")):
        result = runner.invoke(app, ["simulate", source, "-r", RULES, *chunks])
        assert result.exit_code == 1, result.output
        assert result.stderr == f"error: {source}: {message}\n"
    result = runner.invoke(app, ["simulate", "nosuchprotocol://x/t.csv", "-r", RULES, *chunks])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: nosuchprotocol://x/t.csv: not a readable URL (")
    assert result.stderr.count("\n") == 1


def test_without_fsspec_a_url_names_the_extra_to_install(monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "fsspec", None)  # as if it were not installed
    result = runner.invoke(app, ["simulate", "s3://bucket/trace.parquet", "-r", RULES])
    assert result.exit_code == 1
    assert result.stderr == ("error: s3://bucket/trace.parquet: reading a URL needs fsspec: "
                             "pip install 'tokenlimit[remote]'\n")
    local = runner.invoke(app, ["simulate", str(SAMPLES / "trace.csv"), "-r", RULES])
    assert local.exit_code == 0, local.output  # a local trace never needs it


def test_dask_replays_a_dataset_at_a_url_like_one_process(served: tuple[Path, str],
                                                          tmp_path: Path,
                                                          dask_scheduler: str) -> None:
    root, url = served
    whole = _replay(str(root / "whole.parquet"), tmp_path, "whole")
    for source in (f"{url}/dataset/", f"file://{root}/dataset/*.parquet"):
        assert _replay(source, tmp_path, "dask", "--executor", "dask", "--jobs", "2",
                       "--scheduler", dask_scheduler) == whole


def test_dask_workers_read_a_dataset_themselves(served: tuple[Path, str], tmp_path: Path,
                                                dask_scheduler: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --decisions or --plot, each worker reads the files (over HTTP, through a
    ``file://`` glob, or a local folder) and the client only adds up figures: the report is
    the one-process replay's, and the client never reads a request."""
    root, url = served
    whole = runner.invoke(app, ["simulate", str(root / "whole.parquet"), "-r", RULES, "-f",
                                "json"])
    assert whole.exit_code == 0, whole.output
    expected = json.loads(whole.stdout)
    expected.pop("trace")

    def no_reading_here(*args: object, **kwargs: object) -> None:
        raise AssertionError("the client read the trace")

    monkeypatch.setattr("tokenlimit.cli.simulate.read_trace", no_reading_here)
    for source in (f"{url}/dataset/", f"file://{root}/dataset/*.parquet",
                   str(root / "dataset")):
        result = runner.invoke(app, ["simulate", source, "-r", RULES, "-f", "json",
                                     "--executor", "dask", "--jobs", "3",
                                     "--scheduler", dask_scheduler])
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        assert report.pop("trace") == source
        assert report == expected
    assert expected["totals"]["limited"] > 0
