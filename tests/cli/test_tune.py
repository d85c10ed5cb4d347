"""`tokenlimit tune`: the known optimum of a trace built to have one, and every printed
candidate checked again against the event-by-event reference replay."""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.conftest import SAMPLES
from tokenlimit.cli.main import app
from tokenlimit.rules import load_rules
from tokenlimit.rules.model import Rule
from tokenlimit.sim import replay_oracle
from tokenlimit.sim.readers import read_trace

runner = CliRunner()
TRACE = str(SAMPLES / "trace.jsonl")
RULES = str(SAMPLES / "rules.json")


def _tune(*args: str) -> Any:
    return runner.invoke(app, ["tune", *args])


@pytest.fixture
def steady(tmp_path: Path) -> dict[str, str]:
    """One key, a request every 10 s for an hour, 30 completion tokens each, answered at once.

    With fill_interval_second 10 and max_tokens 1000 the check at 10 n sees
    tokens_per_fill * (n + 1) - 30 n: never limited iff tokens_per_fill >= 30
    (at 29 the check at t=290 sees 0). The least spend with nothing limited is exactly 30.
    """
    trace = tmp_path / "steady.jsonl"
    trace.write_text("".join(json.dumps({"ts": 10.0 * i, "key": "u", "latency": 0,
                                         "prompt_tokens": 5, "completion_tokens": 30,
                                         "total_tokens": 35}) + "\n" for i in range(360)))
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps([{"rate_limit_key_regex": "u", "max_tokens": 1000,
                                  "tokens_per_fill": 5, "fill_interval_second": 10,
                                  "redis_expired_seconds": 3600}]))  # refills before expiry
    return {"trace": str(trace), "rules": str(rules), "dir": str(tmp_path)}


def test_finds_the_known_optimum(steady: dict[str, str]) -> None:
    out = Path(steady["dir"]) / "tuned.json"
    result = _tune("--trace", steady["trace"], "--rules", steady["rules"], "--rule", "u",
                   "--field", "tokens_per_fill", "--range", "tokens_per_fill=1..64",
                   "--goal", "limited <= 0", "--prefer", "less-spend", "--budget", "40",
                   "-f", "json", "-o", str(out))
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    best = body["candidates"][0]
    assert best["values"] == {"u.tokens_per_fill": 30}
    assert best["goals"] == {"limited <= 0": 0.0}
    assert best["tokens_admitted"] == 360 * 30
    assert body["replayed"] <= 40
    assert [r.to_config() for r in load_rules(str(out)).rules] == [
        Rule(0, "u", 1000, 30, 10, 3600).to_config()]
    assert sorted(p.name for p in Path(steady["dir"]).iterdir()) == [
        "rules.json", "steady.jsonl", "tuned.json"]  # no temporary file left behind


def test_the_search_really_meets_candidates_that_fail(steady: dict[str, str]) -> None:
    # A goal just out of reach below 30: the closest candidate is named and the exit is 1.
    out = Path(steady["dir"]) / "tuned.json"
    result = _tune("--trace", steady["trace"], "--rules", steady["rules"], "--rule", "0",
                   "--field", "tokens_per_fill", "--range", "tokens_per_fill=1..29",
                   "--goal", "limited <= 0", "-o", str(out))
    assert result.exit_code == 1
    assert result.stderr.startswith("error: no candidate met every goal in ")
    assert "the closest (tokens_per_fill=29) misses limited <= 0 (got " in result.stderr
    assert not out.exists()


def _reference_figures(rules: tuple[Rule, ...], group: str) -> tuple[float, float]:
    """Limited % of the class's requests and the most tokens a class key got in one hour,
    computed from the event-by-event reference replay, independently of tune's code."""
    requests = read_trace(TRACE).requests()
    decisions = replay_oracle(rules, requests)
    pattern = re.compile(group)
    mine = [(r, d) for r, d in zip(requests, decisions, strict=True)
            if any(pattern.search(k) for k in r.keys)]
    limited = sum(d.outcome == "deny" for _, d in mine)
    spent: dict[tuple[str, int], int] = defaultdict(int)
    for request, decision in mine:
        if decision.outcome == "allow":
            for key in request.keys:
                if pattern.search(key):
                    spent[key, math.floor(request.ts / 3600)] += request.completion_tokens
    return 100.0 * limited / len(mine), float(max(spent.values()))


def test_every_printed_candidate_meets_its_goals_on_the_reference_replay() -> None:
    goals = ("subscriber.*: limited <= 5%", "subscriber.*: key_tokens_per_hour <= 9700")
    result = _tune("--trace", TRACE, "--rules", RULES, "--rule", "subscriber.*",
                   "--goal", goals[0], "--goal", goals[1], "--budget", "30", "--top", "10",
                   "-f", "json")
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["met"] >= 2 and body["replayed"] == 30
    for candidate in body["candidates"]:
        rules = tuple(Rule(i, r["rate_limit_key_regex"], r["max_tokens"], r["tokens_per_fill"],
                           r["fill_interval_second"], r["redis_expired_seconds"])
                      for i, r in enumerate(candidate["rules"]))
        limited_pct, peak = _reference_figures(rules, "subscriber.*")
        assert candidate["goals"][goals[0]] == pytest.approx(limited_pct)
        assert candidate["goals"][goals[1]] == peak
        assert limited_pct <= 5 and peak <= 9700
    ranked = [c["limited"] for c in body["candidates"]]
    assert ranked == sorted(ranked)  # fewer-limited first


def test_text_plot_and_several_rules(tmp_path: Path) -> None:
    plot = tmp_path / "tradeoff.png"
    result = _tune("--trace", TRACE, "--rules", RULES, "--rule", "0", "--rule", "1",
                   "--field", "tokens_per_fill", "--goal", "limited <= 40%", "--budget", "12",
                   "--plot", str(plot))
    assert result.exit_code == 0, result.output
    assert "distinct candidates meeting every goal (12 replayed)" in result.stdout
    assert "regular-user.* fill" in result.stdout and "subscriber.* fill" in result.stdout
    assert "best rules (write them with -o FILE):" in result.stdout
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_text_headings_show_regexes_and_classes_as_written(tmp_path: Path) -> None:
    # Read as Rich markup, the headings showed the rule [a-z]+ as + and the class [u]+ as +.
    trace = tmp_path / "trace.jsonl"
    trace.write_text("".join(json.dumps({"ts": float(t), "key": key, "latency": 0,
                                         "prompt_tokens": 5, "completion_tokens": 30,
                                         "total_tokens": 35}) + "\n"
                             for t in range(20) for key in ("u", "9")))
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps([
        {"rate_limit_key_regex": regex, "max_tokens": 100, "tokens_per_fill": 10,
         "fill_interval_second": 10, "redis_expired_seconds": 600}
        for regex in ("[a-z]+", "[0-9]+")]))
    result = runner.invoke(app, [
        "tune", "--trace", str(trace), "--rules", str(rules), "--rule", "0", "--rule", "1",
        "--field", "tokens_per_fill", "--goal", "[u]+: limited <= 100%", "--budget", "4"],
        env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "[a-z]+ fill" in result.stdout and "[0-9]+ fill" in result.stdout
    assert "[u]+" in result.stdout


@pytest.mark.parametrize(("args", "hint"), [
    (["--goal", "limited < 1 percent"], "--goal"),
    (["--goal", "key_usd_per_day <= 3"], "--goal"),       # needs --price
    (["--goal", "key_tokens_per_hour <= 3%"], "--goal"),  # not a share
    (["--goal", "limited <= 1%", "--range", "max_tokens=9..x"], "--range"),
    (["--goal", "limited <= 1%", "--field", "nope"], "--field"),
])
def test_bad_options_are_usage_errors(args: list[str], hint: str) -> None:
    result = _tune("--trace", TRACE, "--rules", RULES, "--rule", "0", *args)
    assert result.exit_code == 2, result.output
    assert hint in result.stderr


def test_a_malformed_goal_is_answered_with_an_example_of_a_goal() -> None:
    # The example was diff's gate ('limited > 1%'): as a goal it asks for more limiting.
    result = _tune("--trace", TRACE, "--rules", RULES, "--rule", "0", "--goal",
                   "limited <<= 20%")
    assert result.exit_code == 2
    flat = " ".join(re.sub("[│╭╮╰╯─]", " ", result.stderr).split())
    assert flat.endswith(
        "Error Invalid value for --goal: 'limited <<= 20%': expected [CLASS: ]METRIC OP "
        "VALUE[%] with OP one of <, <=, >, >= (e.g. 'subscriber.*: limited <= 1%')")


def test_an_unknown_rule_is_a_usage_error() -> None:
    result = _tune("--trace", TRACE, "--rules", RULES, "--rule", "premium", "--goal",
                   "limited <= 1%")
    assert result.exit_code == 2
    assert "'premium': no rule has that index or regex" in result.stderr


def test_a_price_goal_prices_each_keys_total_tokens_per_day(steady: dict[str, str]) -> None:
    # tokens_per_fill 30: all 360 requests admitted, 35 total tokens each, all in one day:
    # 12,600 tokens at $2 per 1K = $25.20 for the one key.
    result = _tune("--trace", steady["trace"], "--rules", steady["rules"], "--rule", "u",
                   "--field", "tokens_per_fill", "--range", "tokens_per_fill=30..30",
                   "--goal", "key_usd_per_day <= 25.2", "--price", "2", "-f", "json")
    assert result.exit_code == 0, result.output
    best = json.loads(result.stdout)["candidates"][0]
    assert best["goals"] == {"key_usd_per_day <= 25.2": 25.2}
    tighter = _tune("--trace", steady["trace"], "--rules", steady["rules"], "--rule", "u",
                    "--field", "tokens_per_fill", "--range", "tokens_per_fill=30..30",
                    "--goal", "key_usd_per_day < 25.2", "--price", "2")
    assert tighter.exit_code == 1
    assert "misses key_usd_per_day < 25.2 (got $25.20)" in tighter.stderr


def test_a_log_whose_keys_no_rule_matches_is_warned() -> None:
    # --from asm without --map key=user_type: every candidate ties, the smallest is proposed.
    result = _tune("--trace", str(SAMPLES / "logs" / "asm-access.jsonl"), "--from", "asm",
                   "--rules", RULES, "--rule", "subscriber.*", "--goal", "limited <= 1%",
                   "--budget", "4", "-f", "json")
    assert result.exit_code == 0, result.output
    assert result.stderr == (
        "warning: no request has a key that a rule matches (keys such as 'llm.example.com'): "
        "the keys came from the log's 'authority' field; name the field that holds the "
        "rate-limit key with --map key=FIELD\n")


def test_a_tuned_rule_no_request_takes_is_warned(steady: dict[str, str]) -> None:
    rules = Path(steady["dir"]) / "two.json"
    rules.write_text(json.dumps([*json.loads(Path(steady["rules"]).read_text()),
                                 {"rate_limit_key_regex": "vip", "max_tokens": 100,
                                  "tokens_per_fill": 10, "fill_interval_second": 10,
                                  "redis_expired_seconds": 600}]))
    result = _tune("--trace", steady["trace"], "--rules", str(rules), "--rule", "vip",
                   "--goal", "limited <= 100%", "--budget", "4", "-f", "json")
    assert result.exit_code == 0, result.output
    assert result.stderr == (
        f"warning: no request in {steady['trace']} has a key that rule 1 ('vip') takes: "
        "its numbers change nothing on this trace\n")


def test_rule_warnings_go_to_stderr_as_simulate_prints_them(steady: dict[str, str]) -> None:
    rules = Path(steady["dir"]) / "shadowed.json"
    first = json.loads(Path(steady["rules"]).read_text())[0]
    rules.write_text(json.dumps([first, {**first, "rate_limit_key_regex": "^u$"}]))
    result = _tune("--trace", steady["trace"], "--rules", str(rules), "--rule", "0",
                   "--goal", "limited <= 100%", "--budget", "4", "-f", "json")
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        f"{rules}:1:159: warning TL301 rule 1 ('^u$') is shadowed: every key it matches is "
        "taken first by rule 0 (e.g. 'u' takes rule 0), so it never applies"]


def test_a_range_for_a_field_not_searched_is_a_usage_error() -> None:
    # The bounds were ignored: the search ran over the default fields as if --range were absent.
    result = _tune("--trace", TRACE, "--rules", RULES, "--rule", "0", "--goal", "limited <= 1%",
                   "--range", "fill_interval_second=1..10")
    assert result.exit_code == 2, result.output
    flat = " ".join(re.sub("[│╭╮╰╯─]", " ", result.stderr).split())
    assert flat.endswith(
        "Error Invalid value for --range: fill_interval_second is not searched (the fields "
        "searched: tokens_per_fill, max_tokens); name it with --field too")


def test_a_goal_on_a_class_no_key_matches_is_warned(steady: dict[str, str]) -> None:
    # 'users' matches no key: the goal held for every candidate, whatever its numbers.
    result = _tune("--trace", steady["trace"], "--rules", steady["rules"], "--rule", "u",
                   "--goal", "users: limited <= 1%", "--goal", "u: limited <= 100%",
                   "--budget", "4", "-f", "json")
    assert result.exit_code == 0, result.output
    assert result.stderr == (
        f"warning: no key in {steady['trace']} matches the class 'users': a goal on it is "
        "measured on no requests, as 0\n")


def test_no_candidate_names_each_value_by_its_rule_when_several_are_tuned() -> None:
    # Two rules tuned: 'tokens_per_fill=..., max_tokens=..., tokens_per_fill=...' did not
    # say which value was whose.
    result = _tune("--trace", TRACE, "--rules", RULES, "--rule", "0", "--rule", "1",
                   "--goal", "limited < 0%", "--budget", "4")
    assert result.exit_code == 1, result.output
    assert result.stderr == (
        "error: no candidate met every goal in 4 replays; the closest "
        "(regular-user.*.tokens_per_fill=6, regular-user.*.max_tokens=25, "
        "subscriber.*.tokens_per_fill=800, subscriber.*.max_tokens=8000) misses limited < 0% "
        "(got 73.45%). Widen --range, raise --budget, or relax a goal.\n")
