"""The bulk JSON Lines reader gives exactly the per-line reader's trace, or its exact error."""

from __future__ import annotations

import gzip
import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenlimit.errors import TraceError
from tokenlimit.sim import jsonlfast, readers
from tokenlimit.sim.jsonlfast import read_jsonl_fast
from tokenlimit.sim.readers import read_trace
from tokenlimit.sim.trace_table import Trace

ARRAYS = ("ts", "latency", "prompt_tokens", "completion_tokens", "total_tokens", "key_ptr",
          "key_index", "imputed")


@contextmanager
def _per_line_only() -> Iterator[None]:
    saved = readers._read_jsonl_fast
    readers._read_jsonl_fast = lambda name, seed, key_field: None  # type: ignore[assignment]
    try:
        yield
    finally:
        readers._read_jsonl_fast = saved  # type: ignore[assignment]


@contextmanager
def _blocks(size: int) -> Iterator[None]:
    saved = jsonlfast.BLOCK
    jsonlfast.BLOCK = size
    try:
        yield
    finally:
        jsonlfast.BLOCK = saved


def _outcome(path: Path, key_field: str | None) -> tuple[object, ...]:
    """Every column of the trace (dtypes included), or the error's one line."""
    try:
        trace = read_trace(path, key_field=key_field, seed=3)
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


@settings(max_examples=400, deadline=None)
@given(_content(), st.sampled_from([None, "session_id"]), st.sampled_from([1, 7, 64, 1 << 20]),
       st.booleans())
def test_the_bulk_reader_gives_the_per_line_readers_trace_or_error(
        content: bytes, key_field: str | None, block: int, compressed: bool) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / ("t.jsonl.gz" if compressed else "t.jsonl")
        path.write_bytes(gzip.compress(content) if compressed else content)
        with _per_line_only():
            expected = _outcome(path, key_field)
        with _blocks(block):
            assert _outcome(path, key_field) == expected


def test_the_bulk_reader_takes_the_common_shape_and_declines_to_explain_errors() -> None:
    good = (b'{"ts": 2.5, "key": "a", "latency": 0.5, "prompt_tokens": 3, '
            b'"completion_tokens": 4}\n\n{"ts": 1, "key": "b", "total_tokens": 9, "id": "x", '
            b'"status": 429}\r\n{"ts": 3, "key": "a", "latency": -0.0}\n')
    trace = read_jsonl_fast(good, "g.jsonl", 0, None)
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
    moon = read_jsonl_fast(mooncake, "m.jsonl", 0, "session_id")
    assert moon is not None
    assert (moon.ts.tolist(), moon.key_names, moon.total_tokens.tolist()) == (
        [1.5], ("s",), [3])
    for declined in (b'{"ts": 1, "key": "a"}\n{oops\n', b'{"ts": 1, "key": 5}\n',
                     b'{"ts": 1, "key": "a", "latency": -1}\n', b'{"ts": 1}\rx\n',
                     b'{"ts": 100000000000000000000000, "key": "a"}\n', b"[1]\n"):
        assert read_jsonl_fast(declined, "d.jsonl", 0, None) is None, declined


def test_other_shapes_in_a_block_take_the_per_line_code_and_the_rest_stays_bulk() -> None:
    lines = [json.dumps({"ts": i, "key": f"k{i % 3}", "completion_tokens": i})
             for i in range(40)]
    lines[25] = json.dumps({"ts": "25", "keys": ["k1", "extra"], "completion_tokens": "25"})
    data = ("\n".join(lines) + "\n").encode()
    with _blocks(64):
        trace = read_jsonl_fast(data, "o.jsonl", 0, None)
    assert trace is not None
    assert trace.ts.tolist() == [float(i) for i in range(40)]
    assert trace.key_names == ("k0", "k1", "k2", "extra")
    assert trace.keys_of(25) == ("k1", "extra")
    assert np.array_equal(trace.completion_tokens, np.arange(40))
