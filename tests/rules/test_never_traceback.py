"""No text, bytes or JSON value makes a command that loads rules end in a traceback.

Whatever the input, ``validate`` prints a report (valid UTF-8 for ``--format json``) and exits
0 or 1; the other commands that load rules exit 1 with one error line or run. The same holds
for the library: loading raises only ``RuleError``, the regex compiler only ``ValueError``,
and the key matcher never raises.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from tests.conftest import SAMPLES
from tokenlimit.cli.main import app
from tokenlimit.errors import RuleError
from tokenlimit.rules import Rule, RuleMatcher, load_rules
from tokenlimit.rules.gomatch import go_string
from tokenlimit.rules.gonfa import Program
from tokenlimit.rules.goparse import parse
from tokenlimit.rules.lint import lint
from tokenlimit.rules.regex import compile_go_regex

runner = CliRunner()
FIELDS = ["rate_limit_key_regex", "max_tokens", "tokens_per_fill", "fill_interval_second",
          "redis_expired_seconds"]

# Regex text near the edges: operators, escapes, classes, names, counts, non-ASCII.
regex_text = st.text(alphabet=st.sampled_from(list(
    "ab()[]{}|*+?.^$\\-,:<>=!#PpQEbBdDsSwWzCxX0123456789iUms_éß\u212a\U0002ebf0\ud800")),
    max_size=24)
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                         st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8),
                         regex_text)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.one_of(st.sampled_from(FIELDS),
                                                      st.text(max_size=6)), inner, max_size=5)),
    max_leaves=12)
rule_objects = st.lists(st.dictionaries(st.sampled_from(FIELDS), json_scalars), max_size=4)


def _mangled(value: Any, cut: int, junk: bytes) -> bytes:
    """JSON text, sometimes cut short or with bytes spliced in (BOM, bad UTF-8, deep nests)."""
    data = json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")
    if cut % 3 == 1:
        data = data[:cut % (len(data) + 1)]
    elif cut % 3 == 2:
        at = cut % (len(data) + 1)
        data = data[:at] + junk + data[at:]
    return data


# Inputs that once ended in tracebacks (issue 16), so every run tries them.
HOSTILE = [b"x: " + b"[" * 1500, b"x:\n" + b"".join(b"  " * i + b"- \n" for i in range(1200)),
           b"[" * 10001 + b"]" * 10001, b"[" * 3000, b'[{"rate_limit_key_regex": "\\ud800"}]',
           b'[{"\\ud83d\\ude00": "\\udc00"}]', b"\xef\xbb\xbf[]", b'["\xff"]',
           b'- rate_limit_key_regex: "a\\ud800"\n  "\\udfff": 1\n']

inputs = st.one_of(
    st.sampled_from(HOSTILE),
    st.binary(max_size=200),
    st.text(max_size=120).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.builds(_mangled, st.one_of(json_values, rule_objects), st.integers(0, 500),
              st.sampled_from([b"\xef\xbb\xbf", b"\xff", b"\xc3", b"\xed\xa0\x80", b"[" * 50,
                               b"x: " + b"[" * 1500,
                               b"\\ud800", b'"', b"\x00", b"- a: [", b"{{", b"null"])),
)


def _check_library(data: bytes, tmp_path: Path) -> None:
    for suffix in (".json", ".yaml"):
        path = tmp_path / f"rules{suffix}"
        path.write_bytes(data)
        try:
            loaded = load_rules(path)
        except RuleError:
            continue
        lint(loaded)
        try:
            matcher = RuleMatcher(loaded.rules)
        except ValueError:
            continue  # a regex Go refuses: TL107 says so
        for key in ("", "a", "é\ud800", data.decode("utf-8", "surrogateescape")[:20]):
            matcher.index_for(key)


def _no_traceback(result: Any, codes: tuple[int, ...]) -> None:
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        repr(result.exception)
    assert result.exit_code in codes, result.output
    assert "Traceback" not in result.output


@settings(max_examples=150)
@given(data=inputs)
def test_loading_linting_and_matching_never_raise_anything_else(data: bytes,
                                                               tmp_path_factory: Any) -> None:
    _check_library(data, tmp_path_factory.mktemp("rules"))


@settings(max_examples=60)
@given(data=inputs)
def test_validate_always_reports_and_its_json_is_utf8(data: bytes, tmp_path_factory: Any) -> None:
    path = tmp_path_factory.mktemp("rules") / "rules.json"
    path.write_bytes(data)
    text = data.decode("utf-8", "surrogateescape")
    runs = [["validate", str(path), "--format", "json", "--key", text[:10] or "k"]]
    if "\0" not in text:
        runs.append(["validate", "--config-json", text, "--format", "json"])
    for args in runs:
        result = runner.invoke(app, args)
        _no_traceback(result, (0, 1))
        json.loads(result.stdout_bytes.decode("utf-8"))
    if "\0" not in text:
        result = runner.invoke(app, ["validate", "--from-env"], env={"RATE_LIMIT_CONFIG": text})
        _no_traceback(result, (0, 1))
    result = runner.invoke(app, ["validate", "-"], input=data)
    _no_traceback(result, (0, 1))


@settings(max_examples=25)
@given(data=inputs)
def test_other_commands_that_load_rules_never_traceback(data: bytes,
                                                        tmp_path_factory: Any) -> None:
    folder = tmp_path_factory.mktemp("rules")
    path = folder / "rules.json"
    path.write_bytes(data)
    for args in (["render", "service", "--rules", str(path)],
                 ["render", "check", str(path)],
                 ["simulate", str(SAMPLES / "trace.csv"), "--rules", str(path)],
                 ["diff", str(SAMPLES / "rules.json"), str(path), "--trace",
                  str(SAMPLES / "trace.csv")]):
        _no_traceback(runner.invoke(app, args), (0, 1))


@settings(max_examples=600)
@given(pattern=regex_text, key=st.text(alphabet=st.sampled_from(list("ab_ \né-0\u212a\U0002ebf0")),
                                       max_size=12))
def test_any_regex_compiles_or_is_refused_and_matching_never_raises(pattern: str,
                                                                    key: str) -> None:
    try:
        compiled = compile_go_regex(pattern)
    except ValueError as exc:
        assert str(exc).startswith("error parsing regexp: ")
        return
    found = compiled.matches(key)
    assert (RuleMatcher([Rule(0, pattern, 1, 1, 1, 1)]).index_for(key) == 0) is found
    # RE2 on the written-out tree and the Pike VM on the tree itself agree.
    assert Program(parse(go_string(pattern))).matches(go_string(key)) is found
