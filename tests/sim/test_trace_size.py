"""Whether a trace will fit in memory (``tokenlimit.sim.trace_size``), with files of its own."""

from __future__ import annotations

import gzip
from pathlib import Path

import polars as pl

from tokenlimit.sim.trace_size import (
    BYTES_PER_REQUEST,
    Size,
    available_memory,
    estimated_size,
    memory_shortfall,
)


def estimated_requests(path: str) -> int | None:
    size = estimated_size(path)
    return None if size is None else size.requests


LINE = b'{"ts": 1.5, "key": "tenant-1", "completion_tokens": 12}\n'


def test_a_parquet_file_counts_its_rows_from_the_footer(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    pl.DataFrame({"ts": [1.0, 2.0, 3.0], "key": ["a", "b", "a"]}).write_parquet(path)
    assert estimated_requests(str(path)) == 3


def test_a_parquet_dataset_sums_its_files_rows(tmp_path: Path) -> None:
    folder = tmp_path / "day"
    (folder / "hour=01").mkdir(parents=True)
    pl.DataFrame({"ts": [1.0, 2.0], "key": ["a", "b"]}).write_parquet(folder / "00.parquet")
    pl.DataFrame({"ts": [3.0] * 5, "key": ["c"] * 5}).write_parquet(
        folder / "hour=01" / "01.parquet")
    assert estimated_requests(str(folder)) == 7
    assert estimated_requests(str(folder / "*.parquet")) == 2
    assert estimated_requests(str(tmp_path / "none" / "*.parquet")) is None


def test_a_text_file_is_estimated_from_its_first_mebibyte(tmp_path: Path) -> None:
    small = tmp_path / "small.jsonl"
    small.write_bytes(LINE * 7)
    assert estimated_requests(str(small)) == 7
    line = b'{"ts": 1.5, "key": "tenant-1", "completion_tokens": 1234567890}\n'
    assert len(line) == 64  # a mebibyte holds whole lines: its mean line length is exact
    big = tmp_path / "big.jsonl"
    big.write_bytes(line * 40_000)  # 2.4 MiB
    assert estimated_requests(str(big)) == 40_000


def test_a_folder_of_text_files_sums_them_all_held_in_memory(tmp_path: Path) -> None:
    # The files are joined in memory to be read: their text counts as a compressed file's.
    (tmp_path / "access.log").write_bytes(LINE * 7)
    (tmp_path / "access.log.1.gz").write_bytes(gzip.compress(LINE * 5))
    (tmp_path / "notes.md").write_bytes(b"not a trace\n" * 100)
    assert estimated_size(str(tmp_path)) == Size(12, len(LINE) * 12, compressed=True)


def test_what_cannot_be_told_cheaply_is_none(tmp_path: Path) -> None:
    packed = tmp_path / "t.jsonl.gz"
    packed.write_bytes(gzip.compress(LINE)[:-9])  # cut short
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 not really")
    assert [estimated_requests(p) for p in (str(broken), str(tmp_path),
                                            str(tmp_path / "missing.csv"),
                                            "s3://bucket/day.parquet")] == [None] * 4
    # tmp_path: a folder whose one Parquet file cannot be read
    assert estimated_requests(str(packed)) in (0, 1, None)  # what decompresses: no crash


LINE64 = b'{"ts": 1.5, "key": "tenant-1", "completion_tokens": 1234567890}\n'


def test_a_compressed_file_is_estimated_from_how_its_start_expands(tmp_path: Path) -> None:
    import zstandard

    assert len(LINE64) == 64
    small = tmp_path / "small.jsonl.gz"
    small.write_bytes(gzip.compress(LINE64 * 10))
    assert estimated_size(str(small)) == Size(10, 640, True)  # decompressed whole
    lines = [b'{"ts": %d, "key": "tenant-%04d", "completion_tokens": %09d}\n'
             % (n % 10, n % 9973, n * 7919 % 10**9) for n in range(200_000)]
    assert {len(line) for line in lines} == {64}
    text = b"".join(lines)  # 12.2 MiB that compress about as well all the way through
    for name, packed in (("big.jsonl.gz", gzip.compress(text)),
                         ("big.jsonl.zst", zstandard.ZstdCompressor().compress(text))):
        (tmp_path / name).write_bytes(packed)
        size = estimated_size(str(tmp_path / name))
        assert size is not None and size.compressed
        assert abs(size.text - len(text)) < len(text) * 0.2, (name, size)
        assert size.requests == size.text // 64


def _machine(root: Path, meminfo_kb: int | None, v2: tuple[str, str] | None = None,
             v1: tuple[str, str] | None = None) -> str:
    """A folder laid out as /proc and /sys are."""
    (root / "proc").mkdir(parents=True)
    if meminfo_kb is not None:
        (root / "proc/meminfo").write_text(
            f"MemTotal:       16000000 kB\nMemFree:          100000 kB\n"
            f"MemAvailable:   {meminfo_kb} kB\n")
    for folder, files in (("sys/fs/cgroup", v2), ("sys/fs/cgroup/memory", v1)):
        if files is not None:
            (root / folder).mkdir(parents=True, exist_ok=True)
            names = (("memory.max", "memory.current") if folder.endswith("cgroup")
                     else ("memory.limit_in_bytes", "memory.usage_in_bytes"))
            for name, value in zip(names, files, strict=True):
                (root / folder / name).write_text(value + "\n")
    return str(root)


def test_available_memory_is_the_lower_of_the_system_and_the_cgroup(tmp_path: Path) -> None:
    assert available_memory(_machine(tmp_path / "a", 8_000_000)) == 8_000_000 * 1024
    assert available_memory(_machine(tmp_path / "b", 8_000_000, v2=("max", "5000"))) == (
        8_000_000 * 1024)
    assert available_memory(_machine(tmp_path / "c", 8_000_000,
                                     v2=("1073741824", "73741824"))) == 1_000_000_000
    assert available_memory(_machine(tmp_path / "d", 8_000_000,
                                     v1=("9223372036854771712", "1"))) == 8_000_000 * 1024
    assert available_memory(_machine(tmp_path / "e", 8_000_000, v1=("3000", "5000"))) == 0
    assert available_memory(_machine(tmp_path / "f", None)) is None


def test_a_shortfall_names_requests_need_and_what_is_left(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    trace.write_bytes(LINE * 100)
    need = 100 * BYTES_PER_REQUEST
    tight = _machine(tmp_path / "tight", 1, v2=(str(need), "1"))  # 1 kB available
    assert memory_shortfall(str(trace), tight) == (100, need, 1024)
    roomy = _machine(tmp_path / "roomy", 8_000_000)
    assert memory_shortfall(str(trace), roomy) is None
    assert memory_shortfall(str(trace), _machine(tmp_path / "unknown", None)) is None
    # A text gateway log is also read into memory whole, and parsed: twice its size more.
    log_need = need + 2 * trace.stat().st_size
    assert memory_shortfall(str(trace), _machine(tmp_path / "log", 8_000_000,
                                                 v2=(str(need), "0")),
                            log=True) == (100, log_need, need)
