"""Reading traces: every shape, exact columns, located errors, seeded imputation."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO
from tokenlimit.bucket.key_templates import (
    ATTRIBUTES,
    KeyTemplate,
    header_values,
    parse_key_templates,
    render_keys,
)
from tokenlimit.errors import ConfigError, TraceError
from tokenlimit.sim.readers import TRACE_FIELDS, TraceKeys, read_trace
from tokenlimit.sim.trace_table import Trace

CANONICAL = [
    {"ts": 10.5, "key": "u1", "latency": 1.25, "prompt_tokens": 5, "completion_tokens": 7,
     "total_tokens": 12, "id": "r-a", "status": 200},
    {"ts": 9.0, "keys": ["u2", "tier"], "completion_tokens": 3},
    {"ts": 11, "key": "u1", "total_tokens": 20, "prompt_tokens": 4},
]


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def _columns(trace: Trace) -> list[tuple[object, ...]]:
    return [(trace.id_of(i), float(trace.ts[i]), trace.keys_of(i), float(trace.latency[i]),
             int(trace.prompt_tokens[i]), int(trace.completion_tokens[i]),
             int(trace.total_tokens[i])) for i in range(len(trace))]


def test_canonical_jsonl_fields_defaults_and_derived_counts(tmp_path: Path) -> None:
    trace = read_trace(_write(tmp_path / "t.jsonl", [json.dumps(r) for r in CANONICAL]))
    assert _columns(trace) == [
        ("r-a", 10.5, ("u1",), 1.25, 5, 7, 12),
        (1, 9.0, ("u2", "tier"), 0.0, 0, 3, 3),
        (2, 11.0, ("u1",), 0.0, 4, 16, 20),
    ]
    assert trace.status == ("200", None, None)
    assert trace.imputed_count == 0


def test_gzip_csv_and_jsonl_give_the_same_columns(tmp_path: Path) -> None:
    rows = ["ts,key,latency,prompt_tokens,completion_tokens,total_tokens",
            "1.5,alpha,0.25,10,20,30", "0.75,beta,0,1,2,3"]
    plain = read_trace(_write(tmp_path / "t.csv", rows))
    packed = tmp_path / "t.csv.gz"
    packed.write_bytes(gzip.compress("\n".join(rows).encode()))
    assert _columns(read_trace(packed)) == _columns(plain) == [
        (0, 1.5, ("alpha",), 0.25, 10, 20, 30), (1, 0.75, ("beta",), 0.0, 1, 2, 3)]


def test_fast_csv_path_equals_the_general_reader(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    lines = ["total_tokens,key,ts,completion_tokens,latency"]
    for i in range(2000):
        ts = f"{1_700_000_000 + rng.uniform(0, 1e5):.3f}"
        lines.append(f"{i * 3},k{rng.integers(0, 70000)},{ts},{i},{rng.uniform(0, 9):.6f}")
    fast = read_trace(_write(tmp_path / "fast.csv", lines))
    # A quoted key forces the general csv-module reader on otherwise identical content.
    slow = read_trace(_write(tmp_path / "slow.csv", [*lines, '1,"k1",1.0,1,0']))
    assert _columns(fast) == _columns(slow)[:-1]
    assert fast.ts.tolist() == [float(line.split(",")[2]) for line in lines[1:]]


def test_mooncake_lines_with_a_key_field(tmp_path: Path) -> None:
    lines = [json.dumps({"timestamp": 1500, "input_length": 100, "output_length": 20,
                         "session_id": "s-1"})]
    trace = read_trace(_write(tmp_path / "m.jsonl", lines), key_field="session_id")
    assert _columns(trace) == [(0, 1.5, ("s-1",), 0.0, 100, 20, 120)]


def test_headers_with_key_templates_are_case_insensitive(tmp_path: Path) -> None:
    lines = [json.dumps({"ts": 1, "headers": {"User-Type": "gold", "X-Team": "ml"},
                         "completion_tokens": 1})]
    templates = parse_key_templates(["{{request.headers.user-type}}",
                                     "team-{{ request.headers.x-team }}-{{request.headers.nope}}"])
    trace = read_trace(_write(tmp_path / "h.jsonl", lines), key_templates=templates)
    assert trace.keys_of(0) == ("gold", "team-ml-")


def test_missing_usage_is_imputed_from_the_key_with_a_seed(tmp_path: Path) -> None:
    lines = [json.dumps({"ts": i, "key": "a", "completion_tokens": c})
             for i, c in enumerate([10, 20, 30])]
    lines += [json.dumps({"ts": 10 + i, "key": "a", "status": 429}) for i in range(20)]
    lines += [json.dumps({"ts": 40, "key": "b", "prompt_tokens": 7})]
    path = _write(tmp_path / "i.jsonl", lines)
    first, again = read_trace(path, seed=1), read_trace(path, seed=1)
    assert first.imputed_count == 21
    drawn = first.completion_tokens[3:23].tolist()
    assert set(drawn) <= {10, 20, 30} and len(set(drawn)) > 1
    assert drawn == again.completion_tokens[3:23].tolist()
    assert int(first.completion_tokens[23]) in {10, 20, 30}  # "b" has none: all recorded
    assert int(first.total_tokens[23]) == 7 + int(first.completion_tokens[23])


@pytest.mark.parametrize(("line", "message"), [
    ('{"ts": "soon", "key": "a"}', "t.jsonl:2: field 'ts': 'soon' is not a number"),
    ('{"ts": 1, "key": 5}', "t.jsonl:2: field 'key': expected a string"),
    ('{"ts": 1, "key": "a", "latency": -1}', "t.jsonl:2: field 'latency': must be >= 0 seconds"),
    ('{"ts": 1, "key": "a", "completion_tokens": 1.5}',
     "t.jsonl:2: field 'completion_tokens': token counts are whole numbers from 0 to 10**15, "
     "got 1.5"),
    ('{"ts": 1, "key": "a", "total_tokens": 1e300}',
     "t.jsonl:2: field 'total_tokens': token counts are whole numbers from 0 to 10**15, "
     "got 1e+300"),
    ('{"ts": 1e999, "key": "a"}', "t.jsonl:2: field 'ts': must be a finite number"),
    ('{"ts": 100000000000000000000000, "key": "a"}', "t.jsonl:2: field 'ts': is out of range"),
    ('{"ts": true, "key": "a"}', "t.jsonl:2: field 'ts': expected a number, got true"),
    ('{"key": "a"}', "t.jsonl:2: field 'ts': missing (or 'timestamp' in milliseconds)"),
    ('{"ts": 1}', "t.jsonl:2: field 'key': no rate-limit key: give key, keys, or headers "
                  "with --key-template"),
    ("{oops", "t.jsonl:2: not valid JSON (Expecting property name enclosed in double quotes "
              "at column 2)"),
    # json's own message ends in "at": no "starting at at column". A line cut short is read
    # without its newline: the string is unterminated (it said "Invalid control character").
    ('{"ts": 1, "key": "a', "t.jsonl:2: not valid JSON (Unterminated string starting at "
                            "column 18)"),
    ('{"ts": 1, "key": "a",', "t.jsonl:2: not valid JSON (Expecting property name enclosed "
                              "in double quotes at column 22)"),
])
def test_a_bad_line_names_file_line_and_field(tmp_path: Path, line: str, message: str) -> None:
    path = _write(tmp_path / "t.jsonl", ['{"ts": 0, "key": "ok"}', line])
    with pytest.raises(TraceError) as caught:
        read_trace(path)
    assert str(caught.value) == f"{tmp_path}/{message}"


def test_a_bad_csv_cell_names_its_line_and_column(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.csv", ["ts,key,completion_tokens", "1,a,3", "2,b,x"])
    with pytest.raises(TraceError) as caught:
        read_trace(path)
    assert str(caught.value) == f"{path}:3: field 'completion_tokens': 'x' is not a number"


def test_missing_file_is_a_trace_error(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="cannot read: No such file or directory"):
        read_trace(tmp_path / "nope.jsonl")


def test_key_template_rendering_and_refusal() -> None:
    template = KeyTemplate.parse("{{request.headers.user-type}}")
    assert template.header_names == ("user-type",)
    assert render_keys([template], header_values({"USER-TYPE": "subscriber"})) == ("subscriber",)
    with pytest.raises(ConfigError, match="unbalanced"):
        KeyTemplate.parse("{{request.headers.a")
    with pytest.raises(ConfigError, match=r"unknown attribute 'request\.pth'"):
        KeyTemplate.parse("{{request.pth}}")


def test_templates_read_path_host_and_method_fields(tmp_path: Path) -> None:
    lines = [json.dumps({"ts": 1, "path": "/v1/chat?model=a", "host": "api", "method": "POST",
                         "headers": {"X-Tag": ["a", "b"], "x-request-id": "r1", "x-tag": "c"},
                         "completion_tokens": 1}),
             "ts,path,host,method,headers.x-tag,headers.x-request-id,completion_tokens"]
    templates = parse_key_templates(["{{request.method}} {{request.host}}{{request.url_path}}",
                                     "{{request.query}}|{{request.headers['x-tag']}}|"
                                     "{{request.id}}"])
    trace = read_trace(_write(tmp_path / "p.jsonl", lines[:1]), key_templates=templates)
    assert trace.keys_of(0) == ("POST api/v1/chat", "model=a|a,b,c|r1")
    rows = [lines[1], "1,/x,h,GET,t,,1"]
    trace = read_trace(_write(tmp_path / "p.csv", rows), key_templates=templates)
    assert trace.keys_of(0) == ("GET h/x", "|t|")


def test_templates_need_what_the_trace_carries(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        TraceKeys(parse_key_templates(["{{request.headers.a}}", "x-{{request.scheme}}"]))
    assert str(refused.value) == (
        "key template 'x-{{request.scheme}}': a trace does not carry request.scheme "
        "(a trace line carries headers, path, host and method)")
    path = _write(tmp_path / "m.jsonl", [json.dumps({"ts": 1, "headers": {}}),
                                         json.dumps({"ts": 2, "headers": {"a": "1"}}),
                                         json.dumps({"ts": 3, "path": 7})])
    with pytest.raises(TraceError) as missing:
        read_trace(path, key_templates=parse_key_templates(["{{request.query}}"]))
    assert str(missing.value) == (
        f"{path}:1: field 'path': missing (key template '{{{{request.query}}}}' reads "
        "request.path)")
    with pytest.raises(TraceError) as wrong:
        read_trace(path, key_templates=parse_key_templates(["{{request.headers.a}}"]))
    assert str(wrong.value) == (f"{path}:3: field 'headers': expected an object of request "
                                "headers (for --key-template)")


def test_csv_with_an_id_quotes_and_extra_columns_keeps_integer_ids(tmp_path: Path) -> None:
    rows = ["id,ts,key,latency,model,prompt_tokens,completion_tokens,note",
            '7,1.25,k1,0.5,qwen-max,3,4,"a, ""quoted"" note"', "8,2,k2,0,qwen-plus,1,2,",
            "9,3,k1,0,,0,5,x"]
    trace = read_trace(_write(tmp_path / "t.csv", rows))
    assert _columns(trace) == [(7, 1.25, ("k1",), 0.5, 3, 4, 7), (8, 2.0, ("k2",), 0.0, 1, 2, 3),
                               (9, 3.0, ("k1",), 0.0, 0, 5, 5)]
    text = read_trace(_write(tmp_path / "s.csv", [rows[0], rows[1].replace("7", "r7", 1)]))
    assert text.ids == ("r7",)
    padded = read_trace(_write(tmp_path / "p.csv", ["id,ts,key", "007,1,a"]))
    assert padded.ids == ("007",)  # not a plain integer: kept as written


def test_the_readme_table_names_every_attribute_and_what_traces_carry() -> None:
    readme = (REPO / "docs" / "gateway.md").read_text(encoding="utf-8")
    table = readme[readme.index('<a id="key-template-attributes">'):].split("\n\n")[1]
    rows = {line.split(" | ")[0].strip("| "): line.rsplit(" | ", 2)[-1].strip(" |")
            for line in table.splitlines()[2:]}
    named = {name.strip("`") for cell in rows for name in cell.split(", also")[0].split(" / ")}
    assert named == set(ATTRIBUTES)
    carried = {name.strip("`"): field.strip("`") for cell, field in rows.items()
               for name in cell.split(", also")[0].split(" / ") if field != "-"}
    for attribute, field in carried.items():
        base = KeyTemplate.parse("{{" + attribute.replace("NAME", "n") + "}}").attributes[0]
        assert TRACE_FIELDS.get(base, "headers") == field, attribute
        TraceKeys([KeyTemplate.parse("{{" + attribute.replace("NAME", "n") + "}}")])
    for attribute in set(ATTRIBUTES) - carried.keys():
        with pytest.raises(ConfigError, match="a trace does not carry"):
            TraceKeys([KeyTemplate.parse("{{" + attribute + "}}")])


def test_parquet_and_zstd_traces_read_and_locate_a_bad_row(tmp_path: Path) -> None:
    import polars as pl
    import zstandard

    frame = pl.DataFrame({"id": [5, 6, 7], "ts": [1.0, 2.0, 3.0], "key": ["a", "b", "a"],
                          "latency": [0.5, 0.0, -1.0], "completion_tokens": [1, 2, 3],
                          "model": ["m", "m", "n"]})
    frame.head(2).write_parquet(tmp_path / "good.parquet")
    assert _columns(read_trace(tmp_path / "good.parquet")) == [
        (5, 1.0, ("a",), 0.5, 0, 1, 1), (6, 2.0, ("b",), 0.0, 0, 2, 2)]
    frame.write_parquet(tmp_path / "bad.parquet")
    with pytest.raises(TraceError) as caught:
        read_trace(tmp_path / "bad.parquet")
    assert str(caught.value) == f"{tmp_path}/bad.parquet:3: field 'latency': must be >= 0 seconds"
    packed = tmp_path / "t.csv.zst"
    packed.write_bytes(zstandard.ZstdCompressor().compress(b"ts,key\n1,a\n2,x,y\n"))
    with pytest.raises(TraceError) as ragged:
        read_trace(packed)
    assert str(ragged.value) == f"{packed}:3: 3 columns where the header has 2"
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(TraceError, match=r"junk\.parquet: not a readable Parquet file"):
        read_trace(tmp_path / "junk.parquet")


def test_a_parquet_dataset_whose_files_type_a_column_differently_reads_as_each_file(
        tmp_path: Path) -> None:
    """Found by field QA: one file of a folder or glob kept ``ts`` as a timestamp and
    ``latency`` as a duration, another as numbers, and polars' relaxed join made the
    timestamp and the duration their counts of milliseconds (read as seconds: exit 0, a
    wrong report), and integer ids beside string ids text. Such files are read one by one,
    as ``--chunk-rows`` reads them; a gateway log of such files is refused, naming them."""
    from datetime import UTC, datetime, timedelta

    import polars as pl

    from tokenlimit.sim.log_fields import parse_map

    folder = tmp_path / "parts"
    folder.mkdir()
    pl.DataFrame({"id": [5], "ts": [datetime(2026, 11, 2, 9, 0, 1, tzinfo=UTC)], "key": ["a"],
                  "latency": [timedelta(milliseconds=1500)], "completion_tokens": [3]}
                 ).write_parquet(folder / "0.parquet")
    pl.DataFrame({"id": ["r-6"], "ts": [1793610002.0], "key": ["b"], "latency": [0.25],
                  "completion_tokens": [4]}).write_parquet(folder / "1.parquet")
    expected = [(5, 1793610001.0, ("a",), 1.5, 0, 3, 3),
                ("r-6", 1793610002.0, ("b",), 0.25, 0, 4, 4)]
    assert _columns(read_trace(folder)) == expected
    assert _columns(read_trace(f"{folder}/*.parquet")) == expected
    with pytest.raises(TraceError) as caught:
        read_trace(folder, fields=parse_map("ts=ts,key=key"))
    assert str(caught.value) == (
        f"{folder}: the dataset's files do not fit together (column 'id' is Int64 in "
        f"{folder}/0.parquet and String in {folder}/1.parquet)")
