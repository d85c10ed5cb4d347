"""`tokenlimit diff`: exact changes on a trace built for them, the CI gate, REV:PATH in git."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.conftest import SAMPLES
from tokenlimit.cli.main import app

runner = CliRunner()

OLD = [
    {"rate_limit_key_regex": "reg", "max_tokens": 200, "tokens_per_fill": 200,
     "fill_interval_second": 60, "redis_expired_seconds": 600},
    {"rate_limit_key_regex": "sub", "max_tokens": 1000, "tokens_per_fill": 1000,
     "fill_interval_second": 60, "redis_expired_seconds": 600},
    {"rate_limit_key_regex": "gone", "max_tokens": 5, "tokens_per_fill": 5,
     "fill_interval_second": 60, "redis_expired_seconds": 600},
]
NEW = [
    {**OLD[0], "max_tokens": 100, "tokens_per_fill": 100},
    OLD[1],
    {"rate_limit_key_regex": "free", "max_tokens": 10, "tokens_per_fill": 10,
     "fill_interval_second": 60, "redis_expired_seconds": 600},
]


def _line(ts: float, key: str, completion: int) -> str:
    return json.dumps({"ts": ts, "key": key, "latency": 0, "prompt_tokens": 1,
                       "completion_tokens": completion, "total_tokens": completion + 1})


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    # reg-1: five requests of 40 tokens, one a second. Old: the bucket starts at 200 and every
    # check sees > 0. New: it starts at 100, so the checks see 100, 60, 20, -20, -20: the
    # requests at t=3 and t=4 are newly limited (80 tokens). sub-1: the same rule, no change.
    # free-1: no rule before; the added rule starts it at 10, the 20-token request at t=0
    # takes it to -10 and the request at t=1 is newly limited.
    lines = [_line(t, "reg-1", 40) for t in range(5)]
    lines += [_line(0, "sub-1", 10), _line(1, "sub-1", 10), _line(0, "free-1", 20),
              _line(1, "free-1", 20)]
    trace = tmp_path / "trace.jsonl"
    trace.write_text("\n".join(lines) + "\n")
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text(json.dumps(OLD))
    new.write_text(json.dumps(NEW))
    return {"trace": str(trace), "old": str(old), "new": str(new)}


def _diff(*args: str) -> Any:
    return runner.invoke(app, ["diff", *args])


def test_json_gives_the_changes_built_into_the_trace(files: dict[str, str]) -> None:
    result = _diff(files["old"], files["new"], "--trace", files["trace"], "--class", "reg",
                   "--class", "-1$", "--format", "json")
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert [(r["change"], r["regex"], r["fields"]) for r in body["rules"]] == [
        ("changed", "reg", ["max_tokens", "tokens_per_fill"]), ("same", "sub", []),
        ("added", "free", []), ("removed", "gone", [])]
    assert body["rules"][0]["old"]["figures"]["start_tokens"] == 200
    assert body["rules"][0]["new"]["figures"]["start_tokens"] == 100
    by_rule = {g["label"]: g for g in body["by_rule"]}
    assert list(by_rule) == ["reg", "sub", "free", "gone"]
    reg = by_rule["reg"]
    assert (reg["requests"], reg["old_limited"], reg["new_limited"], reg["newly_limited"],
            reg["newly_admitted"], reg["newly_limited_tokens"], reg["first_newly_limited"]) == (
        5, 0, 2, 2, 0, 80, 3.0)
    assert (by_rule["sub"]["requests"], by_rule["sub"]["newly_limited"]) == (2, 0)
    free = by_rule["free"]
    assert (free["requests"], free["newly_limited"], free["newly_limited_tokens"],
            free["first_newly_limited"]) == (2, 1, 20, 1.0)
    assert by_rule["gone"]["requests"] == 0
    classes = {g["label"]: g for g in body["by_class"]}
    assert (classes["reg"]["requests"], classes["reg"]["newly_limited"]) == (5, 2)
    assert (classes["-1$"]["requests"], classes["-1$"]["newly_limited"]) == (9, 3)
    totals = body["totals"]
    assert (totals["requests"], totals["newly_limited"], totals["old_tokens_admitted"],
            totals["new_tokens_admitted"], totals["first_newly_limited"]) == (9, 3, 260, 160, 1.0)
    assert [(k["key"], k["newly_limited"]) for k in body["keys"]] == [("reg-1", 2),
                                                                     ("free-1", 1)]
    assert body["fail_if"] == []


@pytest.mark.parametrize(("threshold", "code"), [
    ("reg: newly_limited > 30%", 1),      # 2 of 5 = 40 %
    ("reg: newly_limited > 40%", 0),      # not more than 40 %
    ("reg: newly_limited >= 40%", 1),
    ("newly_limited >= 3", 1),            # the total
    ("newly_limited > 3", 0),
    ("sub: newly_limited > 0", 0),
    ("newly_limited_tokens > 30%", 1),    # reg: 80 of the 200 tokens the old rules admitted
    ("newly_admitted > 0", 0),
])
def test_the_gate_exits_1_exactly_when_a_threshold_is_crossed(
        files: dict[str, str], threshold: str, code: int) -> None:
    result = _diff(files["old"], files["new"], "--trace", files["trace"], "--fail-if",
                   threshold)
    assert result.exit_code == code, result.output
    assert ("threshold crossed: " in result.stderr) == (code == 1)


def test_a_crossed_threshold_names_the_group_and_value(files: dict[str, str]) -> None:
    result = _diff(files["old"], files["new"], "--trace", files["trace"], "--fail-if",
                   "reg: newly_limited > 30%")
    assert result.stderr == ("threshold crossed: reg: newly_limited > 30% (measured 40% on "
                             "reg)\n")


@pytest.mark.parametrize("threshold", ["newly_limited 3", "nope > 1", "limited > 1 %%",
                                       "(: limited > 1"])
def test_a_bad_threshold_is_a_usage_error(files: dict[str, str], threshold: str) -> None:
    result = _diff(files["old"], files["new"], "--trace", files["trace"], "--fail-if",
                   threshold)
    assert result.exit_code == 2
    assert "--fail-if" in result.stderr


def test_markdown_for_a_pull_request(files: dict[str, str]) -> None:
    result = _diff(files["old"], files["new"], "--trace", files["trace"], "--format",
                   "markdown")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"### Rate-limit rules: `{files['old']}` → `{files['new']}`"
    assert "| `reg` | changed (max_tokens, tokens_per_fill) | 200 → 100 | 200 → 100 | 60 | 600 " \
           "| 200 → 100 |" in lines
    assert ("| `reg` | 5 | 0 (0.0%) | 2 (40.0%) | 2 | 0 | 80 | 0 | 1970-01-01 00:00:03 |"
            in lines)
    assert "| `reg-1` | 5 | 0 (0.0%) | 2 (40.0%) | 2 | 0 |" in lines
    assert ("| rule | requests | limited before | limited after | newly limited | newly admitted "
            "| tokens newly limited | tokens newly admitted | first newly limited (UTC) |" in lines)


def test_markdown_shows_regexes_and_keys_as_written(files: dict[str, str]) -> None:
    # As plain cell text, markdown read the class r.*g.* as r.<em>g.</em> and \\.?-1$ as .?-1$
    # (a backslash escapes punctuation): the reviewer read other regexes.
    result = _diff(files["old"], files["new"], "--trace", files["trace"], "--format",
                   "markdown", "--class", "r.*g.*", "--class", r"\.?-1$")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "| `reg` | 5 | 0 (0.0%) | 2 (40.0%) | 2 | 0 | 80 | 0 | 1970-01-01 00:00:03 |" in lines
    assert "| `r.*g.*` | 5 | 0 (0.0%) | 2 (40.0%) | 2 | 0 | 80 | 0 | 1970-01-01 00:00:03 |" \
        in lines
    assert "| `\\.?-1$` | 9 | 0 (0.0%) | 3 (33.3%) | 3 | 0 | 100 | 0 | 1970-01-01 00:00:01 |" \
        in lines
    assert "| (all requests) | 9 | 0 (0.0%) | 3 (33.3%) | 3 | 0 | 100 | 0 " \
           "| 1970-01-01 00:00:01 |" in lines


def test_text_report(files: dict[str, str]) -> None:
    result = _diff(files["old"], files["new"], "--trace", files["trace"])
    assert result.exit_code == 0, result.output
    for expected in ("Rules", "By rule", "Totals", "Keys that change most (top 2)",
                     "200 → 100", "9 requests of"):
        assert expected in result.stdout


def test_text_report_shows_regexes_classes_and_keys_as_written(tmp_path: Path) -> None:
    # Read as Rich markup, the class [a-z]+-1 showed as +-1, and the key user[/] ended the
    # run in a MarkupError traceback.
    trace = tmp_path / "trace.jsonl"
    trace.write_text("".join(_line(t, key, 40) + "\n" for t in range(3)
                             for key in ("user[/]", "reg-1")))
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text(json.dumps([{**OLD[0], "rate_limit_key_regex": "[a-z]+"}]))
    new.write_text(json.dumps([{**NEW[0], "rate_limit_key_regex": "[a-z]+",
                                "max_tokens": 50, "tokens_per_fill": 50}]))
    result = runner.invoke(app, ["diff", str(old), str(new), "--trace", str(trace),
                                 "--class", "[a-z]+-1"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "│ [a-z]+-1 " in result.stdout and "│ [a-z]+ " in result.stdout
    assert "│ user[/] " in result.stdout


def _decisions(tmp_path: Path, rules: str, name: str) -> list[dict[str, Any]]:
    out = tmp_path / name
    trace = str(SAMPLES / "trace.jsonl")
    result = runner.invoke(app, ["simulate", trace, "--rules", rules, "--decisions", str(out)])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_agrees_with_two_simulate_runs(tmp_path: Path) -> None:
    old = str(SAMPLES / "rules.json")
    rules = json.loads(Path(old).read_text())
    rules[0]["tokens_per_fill"] = 25
    rules[1]["max_tokens"] = 5000
    new = tmp_path / "new.json"
    new.write_text(json.dumps(rules))
    before = _decisions(tmp_path, old, "old.jsonl")
    after = _decisions(tmp_path, str(new), "new.jsonl")
    result = _diff(old, str(new), "--trace", str(SAMPLES / "trace.jsonl"), "--class",
                   "regular-user", "--class", "subscriber", "-f", "json")
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    keys = [json.loads(line)["key"] for line in
            (SAMPLES / "trace.jsonl").read_text().splitlines()]
    for label in ("regular-user", "subscriber"):
        mine = [i for i, key in enumerate(keys) if label in key]
        newly_limited = sum(before[i]["outcome"] != "deny" and after[i]["outcome"] == "deny"
                            for i in mine)
        newly_admitted = sum(before[i]["outcome"] != "allow" and after[i]["outcome"] == "allow"
                             for i in mine)
        group = next(g for g in body["by_class"] if g["label"] == label)
        assert (group["requests"], group["newly_limited"], group["newly_admitted"]) == (
            len(mine), newly_limited, newly_admitted)
        assert newly_limited + newly_admitted > 0  # the change really moves decisions
    assert body["totals"]["new_limited"] == sum(d["outcome"] == "deny" for d in after)


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t",
                    *args], check=True, capture_output=True)


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_rev_path_reads_the_rules_at_a_git_revision(
        files: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "rules.json").write_text(json.dumps(OLD))
    _git(repo, "add", "rules.json")
    _git(repo, "commit", "-q", "-m", "old rules")
    (repo / "rules.json").write_text(json.dumps(NEW))
    monkeypatch.chdir(repo)
    result = _diff("HEAD:rules.json", "rules.json", "--trace", files["trace"], "-f", "json")
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["totals"]["newly_limited"] == 3
    assert body["old"] == "HEAD:rules.json"
    missing = _diff("HEAD:nope.json", "rules.json", "--trace", files["trace"])
    assert missing.exit_code == 1
    assert missing.stderr.startswith("error: HEAD:nope.json: path 'nope.json' does not exist")
    assert "Traceback" not in missing.output


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_rev_path_naming_a_folder_says_so(
        files: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # git show lists a folder's files; that listing was read as rules: "must be a JSON array
    # of rules, not string".
    repo = tmp_path / "repo"
    (repo / "deploy").mkdir(parents=True)
    _git(repo, "init", "-q")
    (repo / "deploy" / "rules.json").write_text(json.dumps(OLD))
    _git(repo, "add", "deploy")
    _git(repo, "commit", "-q", "-m", "rules")
    monkeypatch.chdir(repo)
    result = _diff("HEAD:deploy", "deploy/rules.json", "--trace", files["trace"])
    assert (result.exit_code, result.stderr) == (
        1, "error: HEAD:deploy: is a directory at that revision, not a rules file\n")


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_rev_path_outside_a_repository(files: dict[str, str], tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    outside = tmp_path / "plain"
    outside.mkdir()
    monkeypatch.chdir(outside)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    result = _diff("HEAD:rules.json", files["new"], "--trace", files["trace"])
    assert result.exit_code == 1
    assert result.stderr == ("error: HEAD:rules.json: not inside a git repository (REV:PATH "
                             "reads a file at a git revision)\n")


def test_bad_rules_and_trace_are_one_line_errors(files: dict[str, str], tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('[{"rate_limit_key_regex": "a", "max_tokens": 1.5}]')
    result = _diff(str(broken), files["new"], "--trace", files["trace"])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {broken}:1:")
    missing = _diff(files["old"], files["new"], "--trace", str(tmp_path / "none.jsonl"))
    assert missing.exit_code == 1
    assert missing.stderr.startswith("error: ")
    assert len(missing.stderr.splitlines()) == 1


def test_a_bad_class_is_a_usage_error(files: dict[str, str]) -> None:
    result = _diff(files["old"], files["new"], "--trace", files["trace"], "--class", "(")
    assert result.exit_code == 2
    assert "'(' is not a valid regex" in result.stderr


def test_a_log_whose_keys_no_rule_matches_is_warned_not_reported_as_no_change() -> None:
    # --from asm without --map key=user_type takes the key from 'authority': no rule of
    # either set matches it, so every figure is 0 and every gate passes; simulate warns.
    log = str(SAMPLES / "logs" / "asm-access.jsonl")
    result = _diff(str(SAMPLES / "rules.json"), str(SAMPLES / "rules-proposed.json"),
                   "--trace", log, "--from", "asm", "--fail-if", "newly_limited > 0")
    assert result.exit_code == 0, result.output
    assert result.stderr == (
        "warning: no request has a key that a rule matches (keys such as 'llm.example.com'): "
        "the keys came from the log's 'authority' field; name the field that holds the "
        "rate-limit key with --map key=FIELD\n")
    mapped = _diff(str(SAMPLES / "rules.json"), str(SAMPLES / "rules-proposed.json"),
                   "--trace", log, "--from", "asm", "--map", "key=user_type")
    assert (mapped.exit_code, mapped.stderr) == (0, "")


def test_rule_warnings_go_to_stderr_as_simulate_prints_them(
        files: dict[str, str], tmp_path: Path) -> None:
    # The new rule 'reg-1' comes after 'reg', which takes every key it matches: it never
    # applies, and the report alone shows it as an added rule with no requests.
    shadowed = tmp_path / "shadowed.json"
    shadowed.write_text(json.dumps([*OLD, {**OLD[0], "rate_limit_key_regex": "reg-1"}]))
    result = _diff(files["old"], str(shadowed), "--trace", files["trace"], "-f", "json")
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        f"{shadowed}:1:428: warning TL301 rule 3 ('reg-1') is shadowed: every key it matches "
        "is taken first by rule 0 (e.g. 'reg-1' takes rule 0), so it never applies"]


def test_a_class_no_key_matches_is_warned(files: dict[str, str]) -> None:
    # 'regs' is a typo for 'reg': the gate measured 0 requests and passed without a word.
    result = _diff(files["old"], files["new"], "--trace", files["trace"], "-f", "json",
                   "--fail-if", "regs: newly_limited > 1%", "--class", "reg")
    assert result.exit_code == 0, result.output
    assert result.stderr == (
        f"warning: no key in {files['trace']} matches the class 'regs': its figures are of no "
        "requests (a --fail-if on it measures 0)\n")
