"""tokenlimit against Go's own verdicts, written down once (go1.22.10, Unicode 15.0.0).

``go_verdicts.json.gz`` was produced by ``go_oracle/make_cases.py`` with the Go program beside
it (README.md there says how): Go's ``regexp.Compile`` on every regex (Go's regexp test data
and the edge cases of issue 16), ``MatchString`` on every (regex, key) pair, and the service's
start-up (``json.Unmarshal`` into its struct, then compiling every regex) on every
configuration. No Go is needed here.
"""

from __future__ import annotations

import base64
import gzip
import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tokenlimit.bucket.limiter import AsmLimiter
from tokenlimit.cli.main import app
from tokenlimit.errors import RuleError
from tokenlimit.rules import LoadedRules, Rule, RuleMatcher, load_rules
from tokenlimit.rules.goclass import go_versions
from tokenlimit.rules.gonfa import Program
from tokenlimit.rules.goparse import parse
from tokenlimit.rules.lint import lint
from tokenlimit.rules.regex import GO_VERSION, compile_go_regex

VERDICTS = Path(__file__).with_name("go_verdicts.json.gz")
# Findings that mean the service exits at start-up; any other finding leaves it running.
EXITS = {"TL100", "TL102", "TL103", "TL104", "TL105", "TL107"}
runner = CliRunner()


@cache
def _verdicts() -> dict[str, Any]:
    with gzip.open(VERDICTS, "rt", encoding="utf-8") as stream:
        loaded: dict[str, Any] = json.load(stream)
    return loaded


def test_the_corpus_is_go_1_22_with_unicode_15_0_like_the_tables() -> None:
    verdicts = _verdicts()
    assert (verdicts["go"], verdicts["unicode"]) == go_versions() == (GO_VERSION, "15.0.0")
    assert GO_VERSION == "go1.22.10"
    assert len(verdicts["regexes"]) > 2500 and len(verdicts["pairs"]) > 80_000
    assert sum(1 for _, error in verdicts["regexes"] if error) > 250


def test_every_regex_is_accepted_or_refused_with_go_s_own_message() -> None:
    wrong = []
    for regex, go_error in _verdicts()["regexes"]:
        try:
            compile_go_regex(regex)
            ours = ""
        except ValueError as exc:
            ours = str(exc)
        if ours != go_error:
            wrong.append((regex[:60], go_error[:80], ours[:80]))
    assert wrong == []


def test_the_one_key_matcher_matches_every_pair_as_go_does() -> None:
    verdicts = _verdicts()
    regexes = verdicts["regexes"]
    matchers: dict[int, RuleMatcher] = {}
    wrong = []
    for index, key, match in verdicts["pairs"]:
        matcher = matchers.get(index)
        if matcher is None:
            matcher = matchers[index] = RuleMatcher([Rule(0, regexes[index][0], 1, 1, 1, 1)])
        if (matcher.index_for(key) == 0) != bool(match):
            wrong.append((regexes[index][0][:60], key[:30], match))
    assert wrong == []


def test_matching_many_keys_at_once_matches_every_pair_as_go_does() -> None:
    verdicts = _verdicts()
    regexes = verdicts["regexes"]
    keys_of: dict[int, list[tuple[str, bool]]] = {}
    for index, key, match in verdicts["pairs"]:
        keys_of.setdefault(index, []).append((key, bool(match)))
    wrong = []
    for index, pairs in keys_of.items():
        matcher = RuleMatcher([Rule(0, regexes[index][0], 1, 1, 1, 1)])
        found = matcher.indices_for([key for key, _ in pairs])
        wrong += [(regexes[index][0][:60], key[:30], match)
                  for (key, match), f in zip(pairs, found, strict=True) if (f == 0) != match]
    assert wrong == []


def test_the_pike_vm_alone_matches_every_pair_as_go_does() -> None:
    # The matcher's fallback (\\B with non-ASCII keys, patterns beyond RE2's budget), on all.
    verdicts = _verdicts()
    regexes = verdicts["regexes"]
    programs: dict[int, Program] = {}
    wrong = []
    for index, key, match in verdicts["pairs"]:
        program = programs.get(index)
        if program is None:
            program = programs[index] = Program(parse(regexes[index][0]))
        if program.matches(key) != bool(match):
            wrong.append((regexes[index][0][:60], key[:30], match))
    assert wrong == []


@pytest.mark.parametrize("name, regex, key, go_match", [
    ("\\B between non-ASCII characters", r"\B", "aéa", False),
    ("\\B inside ASCII", r"\B", "aa", True),
    ("Unicode 15.1 Han (U+2EBF0) is not Han in Go 1.22", r"\p{Han}", "\U0002ebf0", False),
    ("Kelvin sign folds to k", r"(?i)k", "\u212a", True),
    ("a byte that was not UTF-8 is U+FFFD", r"^\x{fffd}$", "\udcff", True),
])
def test_edge_pairs_named_in_the_issue(name: str, regex: str, key: str, go_match: bool) -> None:
    assert (RuleMatcher([Rule(0, regex, 1, 1, 1, 1)]).index_for(key) == 0) is go_match, name


def _configs() -> list[tuple[bytes, bool, str, list[list[Any]] | None]]:
    return [(base64.b64decode(raw), starts, error, rules)
            for raw, starts, error, rules in _verdicts()["configs"]]


def _as_go(rules: tuple[Rule, ...]) -> list[list[Any]]:
    return [[r.regex, r.max_tokens, r.tokens_per_fill, r.fill_interval_second,
             r.redis_expired_seconds] for r in rules]


def _starts(loaded: LoadedRules) -> bool:
    return not {f.code for f in lint(loaded)} & EXITS


@pytest.mark.parametrize("config, starts, error, rules", _configs(),
                         ids=[f"config{i}" for i in range(len(_configs()))])
def test_every_configuration_starts_or_exits_as_the_service_does(
        config: bytes, starts: bool, error: str, rules: list[list[Any]] | None,
        tmp_path: Path) -> None:
    path = tmp_path / "rules.json"
    path.write_bytes(config)
    try:
        loaded = load_rules(path)
    except RuleError:
        assert not starts, error
        return
    assert _starts(loaded) is starts, (error, [f.code for f in lint(loaded)])
    if starts:
        assert _as_go(loaded.rules) == (rules or [])


@pytest.mark.parametrize("config, starts, error, rules", _configs(),
                         ids=[f"config{i}" for i in range(len(_configs()))])
def test_validate_from_env_agrees_and_always_prints_utf8_json(
        config: bytes, starts: bool, error: str, rules: list[list[Any]] | None) -> None:
    text = config.decode("utf-8", "surrogateescape")
    if "\0" in text:
        pytest.skip("an environment variable cannot hold NUL")
    result = runner.invoke(app, ["validate", "--from-env", "--format", "json"],
                           env={"RATE_LIMIT_CONFIG": text})
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        result.exception
    report = json.loads(result.stdout_bytes.decode("utf-8"))  # strict: valid UTF-8 only
    codes = {finding["code"] for finding in report["findings"]}
    assert bool(codes & EXITS) is not starts, (error, codes)
    assert result.exit_code == (1 if any(f["severity"] == "error"
                                         for f in report["findings"]) else 0)
    if starts:
        assert [[r[k] for k in ("rate_limit_key_regex", "max_tokens", "tokens_per_fill",
                                "fill_interval_second", "redis_expired_seconds")]
                for r in report["rules"]] == (rules or [])


@pytest.mark.parametrize("regex, key, go_match", [
    (r"\B", "aéa", False), (r"\B", "aa", True),
    (r"\p{Han}", "\U0002ebf0", False), (r"\p{Han}", "中", True),
])
def test_the_service_core_limits_exactly_the_keys_go_matches(regex: str, key: str,
                                                             go_match: bool) -> None:
    # tokens_per_fill 0: a key that takes the rule is denied from its first check.
    limiter = AsmLimiter([Rule(0, regex, 0, 0, 60, 600)])
    result = limiter.check([key], now=0.0)
    assert (result.outcome == "allow") is not go_match
    assert (limiter.keyspace.get(key, 0.0) is not None) is go_match
