"""The columnar reader gives exactly the per-row reader's trace, or its exact error."""

from __future__ import annotations

import gzip
import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenlimit.errors import TraceError
from tokenlimit.sim.columnar import read_columnar
from tokenlimit.sim.readers import read_trace, read_trace_rows
from tokenlimit.sim.trace_table import Trace

ARRAYS = ("ts", "latency", "prompt_tokens", "completion_tokens", "total_tokens", "key_ptr",
          "key_index", "imputed")


def _outcome(path: Path, key_field: str | None, *, rows: bool = False) -> tuple[object, ...]:
    """Every column of the trace (dtypes included), or the error's one line."""
    read = read_trace_rows if rows else read_trace
    try:
        trace = read(path, key_field=key_field, seed=3)
    except TraceError as exc:
        return ("error", str(exc))
    return _columns(trace)


def _columns(trace: Trace) -> tuple[object, ...]:
    arrays = tuple((name, str(getattr(trace, name).dtype), getattr(trace, name).tobytes())
                   for name in ARRAYS)  # bytes: -0.0 differs from 0.0
    return ("trace", trace.path, trace.key_names, trace.ids, trace.status, arrays)


ODD_NUMBERS = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.sampled_from([-0.0, 2**53, 2**62, 2**64, 10**15, 10**15 + 1, 10**30, -1, 2.0, 1e300]),
    st.sampled_from(["1.5", "x", True, None, [1], {"a": 1}]))
KEYS = st.sampled_from(["a", "b", "é", "k\"q", "\u2028", ""])
ODD_KEYS = st.one_of(st.text(max_size=3), st.sampled_from([5, None, ["a"]]))


def _rare(common: st.SearchStrategy[object], odd: st.SearchStrategy[object],
          ) -> st.SearchStrategy[object]:
    """Mostly ``common``, one time in thirty ``odd`` (so that many files read well)."""
    return st.sampled_from([False] * 29 + [True]).flatmap(lambda o: odd if o else common)


TIMES = _rare(st.one_of(st.integers(0, 10**6), st.floats(0, 1e9)), ODD_NUMBERS)
TOKENS = _rare(st.integers(0, 999), ODD_NUMBERS)
LATENCY = _rare(st.one_of(st.integers(0, 9), st.floats(0, 60), st.just(-0.0)), ODD_NUMBERS)


@st.composite
def _object(draw: st.DrawFn) -> dict[str, object]:
    row: dict[str, object] = {}
    mooncake = draw(st.sampled_from([False] * 9 + [True]))
    row["timestamp" if mooncake else "ts"] = draw(TIMES)
    field = draw(st.sampled_from(["key"] * 20 + ["keys", "keys", "headers", "none"]))
    if draw(st.sampled_from([True] * 19 + [False])):
        row["session_id"] = draw(_rare(KEYS, ODD_KEYS))
    if field == "keys":
        if draw(st.booleans()):
            row["key"] = draw(KEYS)
        row["keys"] = draw(st.lists(_rare(KEYS, ODD_KEYS), max_size=2))
    elif field == "headers":
        row["headers"] = {"x": "y"}
    elif field != "none":
        row[field] = draw(_rare(KEYS, ODD_KEYS))
    names = (("input_length", "output_length") if mooncake else
             ("prompt_tokens", "completion_tokens"))
    for name in (*names, "total_tokens"):
        if draw(st.booleans()):
            row[name] = draw(TOKENS)
    if draw(st.booleans()):
        row["latency"] = draw(LATENCY)
    if draw(st.sampled_from([False, False, False, True])):
        row["id"] = draw(_rare(st.one_of(st.integers(-3, 3), st.text(max_size=2)),
                               st.sampled_from([None, True, 1.5, 2**70])))
    if draw(st.sampled_from([False, False, False, True])):
        row["status"] = draw(_rare(st.one_of(st.integers(100, 599), st.text(max_size=2),
                                             st.none()),
                                   st.sampled_from([True, 1.5, {"a": 1}, 2**70])))
    return row


GOOD_ODD = st.sampled_from(["", " ", "\t", "\x0c", "\u00a0", '{"ts": 1, "key": "a", "ts": 2}',
                            '{"ts": 1, "key": "a"}\r', '  {"ts": 1, "key": "b"}  '])
BAD_ODD = st.sampled_from(["{oops", "[1]", "null", "1", '{"ts": NaN, "key": "a"}',
                           '{"ts": 1, "key": "\\ud800"}', '{"ts": 1}{"ts": 2}',
                           '{"ts": 1, "key": "a"}\rx', '{"ts": 1e999, "key": "a"}',
                           b"\xff".decode("latin-1")])


@st.composite
def _content(draw: st.DrawFn) -> bytes:
    line = st.sampled_from(range(40)).flatmap(
        lambda n: BAD_ODD if n == 39 else GOOD_ODD if n < 5 else _object().map(json.dumps))
    lines = draw(st.lists(line, max_size=12))
    text = "\n".join(lines) + draw(st.sampled_from(["", "\n", "\r\n"]))
    if draw(st.booleans()):
        text = text.replace("\n", "\r\n")
    raw = text.encode("utf-8")
    if "\xff" in text and draw(st.booleans()):
        raw = raw.replace("\xff".encode(), b"\xff")  # not UTF-8
    return (b"\xef\xbb\xbf" if draw(st.sampled_from([False] * 4 + [True])) else b"") + raw


def _compress(content: bytes, compression: str) -> bytes:
    if compression == ".gz":
        return gzip.compress(content)
    if compression == ".zst":
        return zstandard.ZstdCompressor().compress(content)
    return content


@settings(max_examples=300, deadline=None)
@given(_content(), st.sampled_from([None, "session_id"]), st.sampled_from(["", ".gz", ".zst"]))
def test_the_columnar_reader_gives_the_per_row_readers_trace_or_error(
        content: bytes, key_field: str | None, compression: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"t.jsonl{compression}"
        path.write_bytes(_compress(content, compression))
        assert _outcome(path, key_field) == _outcome(path, key_field, rows=True)


def test_the_columnar_reader_takes_the_common_shape_and_declines_to_explain_errors(
        tmp_path: Path) -> None:
    good = (b'{"ts": 2.5, "key": "a", "latency": 0.5, "prompt_tokens": 3, '
            b'"completion_tokens": 4, "extra": {"key": "x"}}\n\n{"ts": 1, "key": "b", '
            b'"total_tokens": 9, "id": "x", "status": 429}\r\n{"ts": 3, "key": "a", '
            b'"latency": -0.0}\n')
    trace = read_columnar("g.jsonl", "jsonl", good.replace(b', "extra": {"key": "x"}', b""),
                          key_field=None, seed=0)
    assert trace is not None
    assert (trace.ts.tolist(), trace.key_names, trace.key_index.tolist()) == (
        [2.5, 1.0, 3.0], ("a", "b"), [0, 1, 0])
    assert trace.prompt_tokens.tolist() == [3, 0, 0]
    assert (trace.completion_tokens.tolist(), trace.total_tokens.tolist()) == (
        [4, 9, 4], [7, 9, 4])  # the last drawn from key a's recorded completions
    assert trace.imputed.tolist() == [False, False, True]
    assert (trace.ids, trace.status) == ((0, "x", 2), (None, "429", None))
    assert str(trace.latency.tolist()) == "[0.5, 0.0, 0.0]"
    mooncake = b'{"timestamp": 1500, "session_id": "s", "input_length": 2, "output_length": 1}'
    moon = read_columnar("m.jsonl", "jsonl", mooncake, key_field="session_id", seed=0)
    assert moon is not None
    assert (moon.ts.tolist(), moon.key_names, moon.total_tokens.tolist()) == (
        [1.5], ("s",), [3])
    ints = read_columnar("i.jsonl", "jsonl", b'{"ts": 1, "key": "a", "id": 12}\n',
                         key_field=None, seed=0)
    assert ints is not None and ints.ids == (12,)
    for declined in (b'{"ts": 1, "key": "a"}\n{oops\n', b'{"ts": 1, "key": 5}\n',
                     b'{"ts": 1, "key": "a", "latency": -1}\n', b'{"ts": 1}\rx\n',
                     b'{"ts": 100000000000000000000000, "key": "a"}\n', b"[1]\n",
                     b'{"ts": 1, "key": "a", "key": "b"}\n',
                     b'{"ts": 1, "key": "a", "id": 1}\n{"ts": 1, "key": "a", "id": "x"}\n'):
        assert read_columnar("d.jsonl", "jsonl", declined, key_field=None, seed=0) is None, (
            declined)
    nested = read_columnar("g.jsonl", "jsonl", good, key_field=None, seed=0)
    assert nested is not None  # a "key" inside another value is not the line's key
    assert nested.key_names == ("a", "b")
    path = tmp_path / "g.jsonl"
    path.write_bytes(good)
    assert read_trace(path).key_names == read_trace_rows(path).key_names == ("a", "b")


def test_multi_key_lines_are_read_in_bulk() -> None:
    lines = [json.dumps({"ts": i, "keys": [f"k{i % 3}"], "completion_tokens": i})
             for i in range(40)]
    lines[25] = json.dumps({"ts": 25, "keys": ["k1", "extra"], "completion_tokens": 25})
    data = ("\n".join(lines) + "\n").encode()
    trace = read_columnar("o.jsonl", "jsonl", data, key_field=None, seed=0)
    assert trace is not None
    assert trace.ts.tolist() == [float(i) for i in range(40)]
    assert trace.key_names == ("k0", "k1", "k2", "extra")
    assert trace.keys_of(25) == ("k1", "extra")
    assert np.array_equal(trace.completion_tokens, np.arange(40))


ROWS = st.lists(st.fixed_dictionaries(
    {"ts": st.one_of(st.integers(0, 10**6), st.floats(0, 1e9).map(lambda v: round(v, 3))),
     "key": st.sampled_from(["a", "b,c", 'q"uote', "é", "12", " s "])},
    optional={"latency": st.floats(0, 60).map(lambda v: round(v, 3)),
              "prompt_tokens": st.integers(0, 999), "completion_tokens": st.integers(0, 999),
              "total_tokens": st.integers(999, 2000), "status": st.sampled_from(["200", "429"]),
              "model": st.sampled_from(["qwen-max", "x,y"])}), min_size=1, max_size=8)


@settings(max_examples=60, deadline=None)
@given(ROWS, st.sampled_from([None, "int", "str"]), st.sampled_from(["", ".gz", ".zst"]))
def test_every_format_gives_the_same_trace_for_the_same_data(
        rows: list[dict[str, object]], ids: str | None, compression: str) -> None:
    import csv
    import io

    import polars as pl

    if ids is not None:
        rows = [{**r, "id": 10 + i if ids == "int" else f"r{i}"} for i, r in enumerate(rows)]
    fields = sorted({f for r in rows for f in r})
    for r in rows:  # one type a column, as Parquet has it
        if "ts" in r:
            r["ts"] = float(r["ts"])  # type: ignore[arg-type]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    with tempfile.TemporaryDirectory() as folder:
        paths = [Path(folder) / f"t.jsonl{compression}", Path(folder) / f"t.csv{compression}",
                 Path(folder) / "t.parquet"]
        jsonl = "".join(json.dumps(r) + "\n" for r in rows).encode()
        paths[0].write_bytes(_compress(jsonl, compression))
        paths[1].write_bytes(_compress(text.getvalue().encode(), compression))
        pl.DataFrame(rows, infer_schema_length=None).write_parquet(paths[2])
        outcomes = [_outcome(p, None)[2:] for p in paths]
        if not compression:  # the columnar reader takes every one of them itself
            for path, fmt in zip(paths, ("jsonl", "csv", "parquet"), strict=True):
                assert read_columnar(str(path), fmt, None, key_field=None, seed=3), fmt
        slow = [_outcome(p, None, rows=True)[2:] for p in paths]
    assert outcomes[0][0] != "error"
    assert outcomes == slow
    assert outcomes[1] == outcomes[0] == outcomes[2]


def test_surrogate_escapes_in_keys_read_as_go_reads_them(tmp_path: Path) -> None:
    # Found by the property above: polars read "\ud800" as NUL, the per-row reader kept a lone
    # surrogate. Go's decoder (the service's) reads an unpaired half as U+FFFD and a pair as
    # the character; both readers now give that.
    path = tmp_path / "t.jsonl"
    path.write_bytes(b'{"ts": 1, "key": "\\ud800"}\n{"ts": 2, "key": "a\\ud83d\\ude00"}\n'
                     b'{"ts": 3, "keys": ["\\udc00x", "b"]}\n')
    trace = read_trace(str(path))
    keys = [tuple(trace.key_names[k] for k in trace.key_index[trace.key_ptr[i]:
                                                              trace.key_ptr[i + 1]])
            for i in range(len(trace))]
    assert keys == [("\ufffd",), ("a\U0001f600",), ("\ufffdx", "b")]
    assert read_columnar(str(path), "jsonl", None, key_field=None, seed=0) is None  # declined


def test_csv_shapes_real_exports_have_are_read_as_columns(tmp_path: Path) -> None:
    """Token counts written as 12.0, ids that are line positions or strings, and a file
    mapped from disk: all read by the columnar reader, with the per-row reader's trace."""
    header = b"id,ts,key,latency,prompt_tokens,completion_tokens,total_tokens,model\n"
    rows = [b"0,1.5,a,0.5,3,4.0,7,m\n", b"1,2.5,b,0,2,,9,m\n", b"2,3,a,1,1,2,,m\n"]
    cases = {
        "floats.csv": header + b"".join(rows),
        "ints.csv": header + b"".join(rows).replace(b"4.0", b"4"),
        "padded.csv": header + b"".join(rows).replace(b"\n1,", b"\n01,"),
        "strings.csv": header + b"".join(rows).replace(b"\n1,", b"\nreq-1,"),
    }
    found = {}
    for name, content in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        fast = read_columnar(str(path), "csv", None, key_field=None, seed=0)
        assert fast is not None, name
        assert _columns(fast)[2:] == _outcome(path, None, rows=True)[2:], name
        found[name] = (fast.ids, fast.completion_tokens.tolist(), fast.total_tokens.tolist())
    assert found["floats.csv"] == found["ints.csv"] == (None, [4, 7, 2], [7, 9, 3])
    assert found["padded.csv"][0] == (0, "01", 2)  # not a plain integer: kept as written
    assert found["strings.csv"][0] == (0, "req-1", 2)


def test_ids_nobody_asked_for_are_not_read_but_a_bad_id_column_is_still_refused(
        tmp_path: Path) -> None:
    """``simulate`` without ``--decisions`` reads a trace with ``ids=False``: a CSV's and a
    Parquet file's ids are skipped (everything else is the same trace), but a Parquet id
    column of a type no id has is still the per-row reader's located error."""
    import polars as pl

    header = b"id,ts,key,latency,prompt_tokens,completion_tokens,total_tokens\n"
    csv = tmp_path / "t.csv"
    csv.write_bytes(header + b"req-7,1.5,a,0.5,3,4,7\n9,2.5,b,0,2,,9\n")
    table = pl.read_csv(csv, schema_overrides={"id": pl.String})
    table.write_parquet(tmp_path / "t.parquet")
    for path in (csv, tmp_path / "t.parquet"):
        wanted, skipped = read_trace(path), read_trace(path, ids=False)
        assert list(wanted.ids or ()) == ["req-7", 9 if path == csv else "9"], path
        assert skipped.ids is None, path
        assert _columns(skipped)[:3] + _columns(skipped)[4:] == (
            _columns(wanted)[:3] + _columns(wanted)[4:]), path
    table.with_columns(pl.Series("id", [1.5, 2.5])).write_parquet(tmp_path / "f.parquet")
    for ids in (True, False):
        try:
            read_trace(tmp_path / "f.parquet", ids=ids)
        except TraceError as exc:
            assert str(exc) == (f"{tmp_path / 'f.parquet'}:1: field 'id': expected a string or "
                                "an integer")
        else:
            raise AssertionError("a float id column was read")


def test_columns_without_gaps_are_the_readers_memory_and_gaps_are_mended(
        tmp_path: Path) -> None:
    """A number column without gaps comes back read-only (polars' memory, no numpy copy),
    and a column with gaps comes back mended: prompt 0, completion from the total, the total
    from the other two, and imputed usage."""
    path = tmp_path / "t.jsonl"
    path.write_text('{"ts": 1, "key": "a", "prompt_tokens": 3, "completion_tokens": 4}\n'
                    '{"ts": 2, "key": "a", "total_tokens": 9, "prompt_tokens": 2}\n'
                    '{"ts": 3, "key": "a", "prompt_tokens": 5}\n')
    trace = read_columnar(str(path), "jsonl", None, key_field=None, seed=3)
    assert trace is not None
    assert not trace.ts.flags.writeable and not trace.prompt_tokens.flags.writeable
    assert _columns(trace) == _outcome(path, None, rows=True)  # seed 3 both
    completion, total = trace.completion_tokens.tolist(), trace.total_tokens.tolist()
    assert completion[:2] == [4, 7] and total[:2] == [7, 9]  # recorded, then derived
    assert completion[2] in (4, 7) and total[2] == 5 + completion[2]  # drawn from a's
    assert trace.imputed.tolist() == [False, False, True]


def test_parquet_timestamps_and_durations_are_seconds_for_both_readers(
        tmp_path: Path) -> None:
    """A warehouse export keeps ``ts`` as a timestamp (with or without a time zone, in any
    unit) and may keep ``latency`` as a duration, tokens as 32-bit integers: the columnar
    and the per-row reader read them as the Unix seconds and seconds a CSV of the same
    requests gives."""
    from datetime import UTC, datetime, timedelta

    import polars as pl

    csv = tmp_path / "t.csv"
    csv.write_bytes(b"ts,key,latency,prompt_tokens,completion_tokens\n"
                    b"1793610000.078,a,1.543,3,4\n1793610001.2,b,0.25,2,\n"
                    b"1793610001.2,a,0,1,2\n")
    starts = [datetime(2026, 11, 2, 9, 0, 0, 78000, tzinfo=UTC),
              datetime(2026, 11, 2, 9, 0, 1, 200000, tzinfo=UTC),
              datetime(2026, 11, 2, 9, 0, 1, 200000, tzinfo=UTC)]
    latencies = [timedelta(seconds=1.543), timedelta(seconds=0.25), timedelta(0)]
    frame = pl.DataFrame({"ts": starts, "key": ["a", "b", "a"], "latency": latencies,
                          "prompt_tokens": pl.Series([3, 2, 1], dtype=pl.Int32),
                          "completion_tokens": pl.Series([4, None, 2], dtype=pl.UInt32)})
    shapes = {
        "aware.parquet": frame,
        "naive.parquet": frame.with_columns(pl.col("ts").dt.replace_time_zone(None)),
        "ms.parquet": frame.with_columns(pl.col("ts").dt.cast_time_unit("ms"),
                                         pl.col("latency").dt.cast_time_unit("ms")),
        "offset.parquet": frame.with_columns(pl.col("ts").dt.convert_time_zone("Asia/Shanghai")),
        "float-latency.parquet": frame.with_columns(pl.Series("latency", [1.543, 0.25, 0.0])),
        # Keys as polars writes categories: an Enum was read row by row, 4x slower.
        "categorical-key.parquet": frame.with_columns(pl.col("key").cast(pl.Categorical)),
        "enum-key.parquet": frame.with_columns(pl.col("key").cast(pl.Enum(["b", "a", "c"]))),
    }
    expected = _columns(read_trace(csv, seed=3))[2:]
    for name, shape in shapes.items():
        path = tmp_path / name
        shape.write_parquet(path)
        assert read_columnar(str(path), "parquet", None, key_field=None, seed=3) is not None
        assert _outcome(path, None)[2:] == expected, name
        assert _outcome(path, None, rows=True)[2:] == expected, name


def test_a_parquet_column_of_a_type_no_trace_field_has_is_a_located_error(
        tmp_path: Path) -> None:
    from datetime import date, datetime, timedelta
    from decimal import Decimal

    import polars as pl

    base = {"ts": [1.5], "key": ["a"], "completion_tokens": [4]}
    cases = [
        ("ts", [date(2026, 11, 2)], "expected a number, got \"2026-11-02\""),
        ("completion_tokens", [[1, 2]], "expected a number, got [1, 2]"),
        ("latency", [{"ms": 5}], "expected a number, got {\"ms\": 5}"),
        # A start time is a timestamp and a latency a duration, not the other way round.
        ("ts", [timedelta(seconds=2)], "expected a number, got \"0:00:02\""),
        ("latency", [datetime(2026, 11, 2, 9)],
         "expected a number, got \"2026-11-02 09:00:00\""),
        # Found by field QA: a DECIMAL(38, 0) column (Snowflake's NUMBER, Spark's DECIMAL)
        # was refused as 'expected a number, got "76"'.
        ("completion_tokens", [Decimal(76)], "expected an integer or a float, got the "
         "decimal 76 (a DECIMAL column: store it as integers or floats)"),
    ]
    for number, (field, values, message) in enumerate(cases):
        path = tmp_path / f"{number}-{field}.parquet"
        pl.DataFrame({**base, field: values}).write_parquet(path)
        assert _outcome(path, None) == ("error", f"{path}:1: field '{field}': {message}")


def test_keys_numbered_on_a_thread_give_the_same_trace_and_errors(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A large frame's keys are numbered on a thread beside the number columns: the same
    trace as in line, and a key column the columnar reader declines (a missing key) still
    ends in the per-row reader's located error."""
    from tokenlimit.sim import columnar

    good = tmp_path / "good.jsonl"
    good.write_text('{"ts": 1, "key": "b", "completion_tokens": 3}\n'
                    '{"ts": 2, "key": "a", "completion_tokens": 4}\n'
                    '{"ts": 3, "key": "b"}\n')
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"ts": 1, "key": "b", "completion_tokens": 3}\n'
                   '{"ts": 2, "completion_tokens": 4}\n')
    in_line = [_outcome(good, None), _outcome(bad, None)]
    monkeypatch.setattr(columnar, "_MEANWHILE", 0)
    assert [_outcome(good, None), _outcome(bad, None)] == in_line
    assert in_line[1] == ("error", f"{bad}:2: field 'key': no rate-limit key: give key, keys, "
                                   "or headers with --key-template")
