"""`tokenlimit simulate` and `tokenlimit trace generate` through the real CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.conftest import REPO, SAMPLES
from tokenlimit.cli.main import app
from tokenlimit.rules import load_rules
from tokenlimit.sim import replay_oracle
from tokenlimit.sim.readers import read_trace

runner = CliRunner()
RULES = str(SAMPLES / "rules.json")
TRACE = str(SAMPLES / "trace.jsonl")


def _run(*args: str) -> Any:
    return runner.invoke(app, list(args))


def test_sample_trace_text_report() -> None:
    result = _run("simulate", TRACE, "--rules", RULES, "--top", "3", "--price", "0.002")
    assert result.exit_code == 0, result.output
    out = result.stdout
    for expected in ("Per rule", "Per key (top 3 by requests)", "Totals", "regular-user.*",
                     "subscriber.*", "semantics asm, charge completion, engine scan",
                     "estimated spend of admitted requests: $"):
        assert expected in out
    assert "\x1b[" not in out


def test_json_and_decisions_agree_with_the_oracle(tmp_path: Path) -> None:
    decisions = tmp_path / "decisions.jsonl"
    result = _run("simulate", TRACE, "-r", RULES, "--format", "json",
                  "--decisions", str(decisions))
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    rules = load_rules(RULES).rules
    expected = replay_oracle(rules, read_trace(TRACE).requests())
    lines = [json.loads(line) for line in decisions.read_text().splitlines()]
    assert lines == [{"id": d.id, "outcome": d.outcome, "rule": d.rule} for d in expected]
    limited = sum(d.outcome == "deny" for d in expected)
    assert report["totals"]["requests"] == len(expected) == 1823
    assert report["totals"]["limited"] == limited
    assert sum(r["requests"] for r in report["rules"]) == len(expected)
    assert set(report) == {"trace", "recorded_429", "semantics", "charge", "engine", "imputed",
                           "totals", "rules", "keys", "spend"}
    assert report["recorded_429"] == 0
    for suffix in (".parquet", ".csv"):
        table = tmp_path / f"decisions{suffix}"
        again = _run("simulate", TRACE, "-r", RULES, "--format", "json",
                     "--decisions", str(table))
        assert again.exit_code == 0, again.output
        import polars as pl

        frame = pl.read_parquet(table) if suffix == ".parquet" else pl.read_csv(table)
        assert frame.to_dicts() == lines, suffix


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_the_report_is_the_same_with_and_without_decisions(tmp_path: Path, jobs: str) -> None:
    """Without --decisions or --plot the scan adds up the report's figures itself instead of
    writing a decision per request: the report is byte for byte the one of the run that
    writes them, on one thread or two partitions (120,000 requests: partitioned), charging
    completion or total tokens."""
    trace = tmp_path / "trace.jsonl"
    assert _run("trace", "generate", "--duration", "600", "--tier", "regular-user:300:160",
                "--tier", "subscriber:40:40", "--seed", "4", "-o", str(trace)).exit_code == 0
    for charge in ("completion", "total"):
        options = ("simulate", str(trace), "-r", RULES, "-f", "json", "--jobs", jobs,
                   "--charge", charge, "--top", "50")
        alone = _run(*options)
        with_decisions = _run(*options, "--decisions", str(tmp_path / "d.jsonl"))
        assert alone.exit_code == with_decisions.exit_code == 0, alone.output
        assert alone.stdout == with_decisions.stdout
        report = json.loads(alone.stdout)
        assert report["totals"]["requests"] > 100_000 and report["totals"]["limited"] > 0


def test_every_semantics_runs_and_charge_total_limits_more() -> None:
    limited = {}
    for name in ("asm", "asm-reserve", "token-bucket", "token-bucket-prepaid", "gcra",
                 "sliding-window", "fixed-window", "leaky-bucket"):
        for charge in ("completion", "total"):
            result = _run("simulate", TRACE, "-r", RULES, "-f", "json", "--semantics", name,
                          "--charge", charge)
            assert result.exit_code == 0, result.output
            limited[name, charge] = json.loads(result.stdout)["totals"]["limited"]
    for name in ("asm", "token-bucket", "sliding-window"):
        assert limited[name, "total"] > limited[name, "completion"]


def test_asm_reserve_replays_serves_reserve_mode_with_its_estimate() -> None:
    from tokenlimit.bucket import AsmLimiter, ReserveLimiter
    from tokenlimit.bucket.reserve import EstimatePolicy
    from tokenlimit.sim.readers import read_trace

    trace = read_trace(TRACE)
    rules = load_rules(RULES).rules
    for args, policy in ((["--estimate", "30"], EstimatePolicy(30, average=False)),
                         ([], EstimatePolicy())):
        result = _run("simulate", TRACE, "-r", RULES, "-f", "json", "--semantics",
                      "asm-reserve", *args)
        assert result.exit_code == 0, result.output
        model = ReserveLimiter(AsmLimiter(rules), policy)
        expected = replay_oracle(rules, trace.requests(), limiter=model)
        assert json.loads(result.stdout)["totals"]["limited"] == sum(
            d.outcome == "deny" for d in expected)
    plain = json.loads(_run("simulate", TRACE, "-r", RULES, "-f", "json").stdout)
    assert plain["totals"]["limited"] != sum(d.outcome == "deny" for d in expected)
    wrong = _run("simulate", TRACE, "-r", RULES, "--estimate", "30")
    assert wrong.exit_code == 2
    assert "estimates are used only with --semantics asm-reserve" in " ".join(
        wrong.output.replace("│", " ").split())
    bad = _run("simulate", TRACE, "-r", RULES, "--semantics", "asm-reserve", "--estimate", "x")
    assert bad.exit_code == 2
    assert "'x': expected N, avg:N or RULE_INDEX=N" in " ".join(
        bad.output.replace("│", " ").split())


def test_plot_and_sweep_write_pngs(tmp_path: Path) -> None:
    plot = tmp_path / "replay.png"
    assert _run("simulate", TRACE, "-r", RULES, "--plot", str(plot)).exit_code == 0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    sweep_plot = tmp_path / "sweep.png"
    result = _run("simulate", TRACE, "-r", RULES, "-f", "json", "--plot", str(sweep_plot),
                  "--set", "rules[0].max_tokens=50,200,1000")
    assert result.exit_code == 0, result.output
    sweep = json.loads(result.stdout)["sweep"]
    assert [s["setting"] for s in sweep] == [
        "rules[0].max_tokens=50", "rules[0].max_tokens=200", "rules[0].max_tokens=1000"]
    pct = [s["rules"][0]["limited_pct"] for s in sweep]
    assert pct[0] > pct[1] > pct[2]
    assert sweep_plot.read_bytes()[:4] == b"\x89PNG"
    text = _run("simulate", TRACE, "-r", RULES, "--set", "rules[0].max_tokens=50,200")
    assert "rules[0].max_tokens=50" in text.stdout and "Sweep" in text.stdout


def test_key_templates_from_headers(tmp_path: Path) -> None:
    trace = tmp_path / "h.jsonl"
    trace.write_text(
        '{"ts": 0, "headers": {"User-Type": "regular-user"}, "completion_tokens": 60}\n'
        '{"ts": 1, "headers": {"user-type": "regular-user"}, "completion_tokens": 1}\n')
    result = _run("simulate", str(trace), "-r", RULES, "-f", "json",
                  "--key-template", "{{request.headers.user-type}}")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["keys"][0] | {"first_limited": None} == {
        "key": "regular-user", "rule": 0, "requests": 2, "admitted": 1, "limited": 1,
        "limited_pct": 50.0, "errors": 0, "tokens_admitted": 60, "total_tokens_admitted": 60,
        "deepest_debt": -10, "first_limited": None}


def test_bad_trace_line_is_one_error_line_and_exit_1(tmp_path: Path) -> None:
    trace = tmp_path / "bad.jsonl"
    trace.write_text('{"ts": 0, "key": "a"}\n{"ts": 1, "key": "a", "latency": "slow"}\n')
    decisions = tmp_path / "d.jsonl"
    result = _run("simulate", str(trace), "-r", RULES, "--decisions", str(decisions))
    assert result.exit_code == 1
    assert result.stderr == f"error: {trace}:2: field 'latency': 'slow' is not a number\n"
    assert not decisions.exists()


def test_rejected_rules_and_usage_errors() -> None:
    bad = ('[{"rate_limit_key_regex": "u", "max_tokens": 10, "tokens_per_fill": 1, '
           '"fill_interval_second": 0, "redis_expired_seconds": 60}]')
    result = _run("simulate", TRACE, "--config-json", bad)
    assert result.exit_code == 1
    assert "TL108 fill_interval_second is 0" in result.stderr
    assert _run("simulate", TRACE, "-r", RULES, "--semantics", "magic").exit_code == 2
    assert _run("simulate", TRACE, "-r", RULES, "--charge", "prompt").exit_code == 2
    assert _run("simulate", TRACE, "-r", RULES, "--set", "rules[0].max_tokens=1",
                "--decisions", "d.jsonl").exit_code == 2
    assert _run("simulate", TRACE, "-r", RULES, "--set", "rules[0].speed=1").exit_code == 2
    scheme = _run("simulate", TRACE, "-r", RULES, "--key-template", "{{request.scheme}}")
    assert scheme.exit_code == 2
    assert "atracedoesnotcarryrequest.scheme" in "".join(scheme.stderr.replace("│", "").split())
    path = _run("simulate", TRACE, "-r", RULES, "--key-template", "{{request.url_path}}")
    assert path.exit_code == 1
    assert path.stderr == (f"error: {TRACE}:1: field 'path': missing (key template "
                           "'{{request.url_path}}' reads request.path)\n")
    sweep = _run("simulate", TRACE, "-r", RULES, "--set", "rules[0].fill_interval_second=0")
    assert sweep.exit_code == 1
    assert sweep.stderr.startswith("error: --set rules[0].fill_interval_second=0: ")


def test_trace_generate_options_and_spec(tmp_path: Path) -> None:
    out = tmp_path / "g.csv"
    args = ["trace", "generate", "-o", str(out), "--tier", "gold:3:0.5:bursty",
            "--duration", "600", "--seed", "9"]
    assert _run(*args).exit_code == 0
    first = out.read_bytes()
    assert _run(*args).exit_code == 0
    assert out.read_bytes() == first
    assert first.startswith(b"ts,key,latency,prompt_tokens,completion_tokens,total_tokens\n")
    spec = tmp_path / "spec.yaml"
    spec.write_text("duration: 300\nseed: 2\ntiers:\n  - {name: vip, users: 2, rate: 1}\n")
    result = _run("trace", "generate", "-o", str(tmp_path / "s.jsonl"), "--spec", str(spec))
    assert result.exit_code == 0
    trace = read_trace(tmp_path / "s.jsonl")
    assert set(trace.key_names) == {"vip-00000", "vip-00001"}
    bad = _run("trace", "generate", "-o", str(tmp_path / "x.jsonl"), "--tier", "oops")
    assert bad.exit_code == 2


def test_module_entry_point_in_a_subprocess(tmp_path: Path) -> None:
    decisions = tmp_path / "d.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "tokenlimit", "simulate", TRACE, "-r", RULES, "-f", "json",
         "--decisions", str(decisions)],
        capture_output=True, text=True, cwd=REPO, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["totals"]["requests"] == 1823
    assert len(decisions.read_text().splitlines()) == 1823


def test_samples_are_reproduced_by_trace_generate(tmp_path: Path) -> None:
    for name in ("trace.jsonl", "trace.csv"):
        out = tmp_path / name
        result = _run("trace", "generate", "-o", str(out), "--seed", "7", "--duration", "3600")
        assert result.exit_code == 0
        assert out.read_bytes() == (SAMPLES / name).read_bytes()
    jsonl = _run("simulate", TRACE, "-r", RULES, "-f", "json")
    csv = _run("simulate", str(SAMPLES / "trace.csv"), "-r", RULES, "-f", "json")
    assert json.loads(jsonl.stdout)["totals"] == json.loads(csv.stdout)["totals"]


def test_mooncake_gzip_trace_with_imputed_usage(tmp_path: Path) -> None:
    import gzip

    user = {"session_id": "regular-user", "input_length": 10}
    lines = [{"timestamp": 0, "output_length": 30, **user}, {"timestamp": 500, **user},
             {"timestamp": 1000, **user}]
    path = tmp_path / "mooncake.jsonl.gz"
    path.write_bytes(gzip.compress("".join(json.dumps(x) + "\n" for x in lines).encode()))
    result = _run("simulate", str(path), "-r", RULES, "--key-field", "session_id", "-f", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    # 50 tokens at first; 30 charged at 0 s, the imputed 30 at 0.5 s: -10 at 1 s.
    assert (report["imputed"], report["totals"]["admitted"], report["totals"]["limited"]) == (
        2, 2, 1)
    text = _run("simulate", str(path), "-r", RULES, "--key-field", "session_id")
    assert "2 requests had completion tokens imputed" in text.stdout


def test_the_readme_examples_are_real_output(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    readme = (REPO / "docs" / "simulate.md").read_text(encoding="utf-8")
    report = _run("simulate", "samples/trace.jsonl", "--rules", "samples/rules.json",
                  "--top", "3", "--price", "0.002")
    sweep = _run("simulate", "samples/trace.csv", "-r", "samples/rules.json",
                 "--set", "rules[0].max_tokens=100,200,400",
                 "--set", "rules[0].tokens_per_fill=50,100")
    for result in (report, sweep):
        assert result.exit_code == 0
        text = "\n".join(line.rstrip() for line in result.stdout.splitlines())
        assert text in readme


def test_speed_divides_times_and_latencies_as_a_fast_replay_sees_them() -> None:
    def limited(*extra: str) -> int:
        result = _run("simulate", TRACE, "-r", RULES, "-f", "json", *extra)
        assert result.exit_code == 0, result.output
        count: int = json.loads(result.stdout)["totals"]["limited"]
        return count

    # The hour of trace in 36 s: 30 s and 60 s refills come 100 times rarer per request.
    assert (limited(), limited("--speed", "1"), limited("--speed", "100")) == (847, 847, 1772)
    for bad in ("0", "-2", "nan", "inf"):
        assert _run("simulate", TRACE, "-r", RULES, "--speed", bad).exit_code == 2


@pytest.mark.parametrize("args", [
    ["simulate", "", "-r", str(SAMPLES / "rules.json")],
    ["simulate", "", "-r", str(SAMPLES / "rules.json"), "--chunk-rows", "100"],
    ["simulate", "", "-r", str(SAMPLES / "rules.json"), "--from", "asm"],
    ["trace", "convert", "", "-o", "out.jsonl"],
])
def test_an_empty_trace_path_is_an_error_not_the_current_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str]) -> None:
    # Path("") is the current folder: an unset shell variable as the trace read every Parquet
    # file below it as one dataset (found by hand: `simulate ''` reported 2,723 requests).
    import polars as pl

    pl.read_csv(SAMPLES / "trace.csv").write_parquet(tmp_path / "a.parquet")
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert result.stderr == "error: '': cannot read: No such file or directory\n"
    assert not (tmp_path / "out.jsonl").exists()


def test_uint64_ids_past_int64_keep_their_values_in_every_decisions_format(
        tmp_path: Path) -> None:
    """Found by field QA: a Parquet id column of 64-bit hashes (UInt64, half of them 2**63
    or more) made ``--decisions`` in Parquet or CSV a traceback (the writer cast them to
    Int64), and ``--chunk-rows`` one even without ``--decisions`` (the reader's cast). JSON
    ids past 64 bits are written as text where a column has to hold them."""
    import polars as pl

    trace = tmp_path / "t.parquet"
    ids = [2**64 - 1, 2**63, 7]
    pl.DataFrame({"id": pl.Series(ids, dtype=pl.UInt64), "ts": [1.0, 2.0, 3.0],
                  "key": ["regular-user-1"] * 3, "completion_tokens": [10, 20, 30]}
                 ).write_parquet(trace)
    expected = [{"id": i, "outcome": "allow", "rule": 0} for i in ids]
    for options in ((), ("--chunk-rows", "2")):
        out = tmp_path / "d.jsonl"
        result = _run("simulate", str(trace), "-r", RULES, "--format", "json",
                      "--decisions", str(out), *options)
        assert result.exit_code == 0, result.output
        assert [json.loads(line) for line in out.read_text().splitlines()] == expected
    result = _run("simulate", str(trace), "-r", RULES, "--chunk-rows", "2")
    assert result.exit_code == 0, result.output
    result = _run("simulate", str(trace), "-r", RULES, "--decisions", str(tmp_path / "d.csv"))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "d.csv").read_text() == (
        "id,outcome,rule\n18446744073709551615,allow,0\n9223372036854775808,allow,0\n"
        "7,allow,0\n")
    table = tmp_path / "d.parquet"
    lines = tmp_path / "t.jsonl"
    pl.read_parquet(trace).write_ndjson(lines)
    for source in (trace, lines):
        result = _run("simulate", str(source), "-r", RULES, "--decisions", str(table))
        assert result.exit_code == 0, result.output
        assert pl.read_parquet(table)["id"].to_list() == ids
        assert pl.read_parquet(table)["id"].dtype == pl.UInt64
    huge = tmp_path / "huge.jsonl"
    huge.write_text('{"ts": 1, "key": "a", "id": 100000000000000000000000}\n'
                    '{"ts": 2, "key": "a", "id": -1}\n')
    result = _run("simulate", str(huge), "-r", RULES, "--decisions", str(table))
    assert result.exit_code == 0, result.output
    assert pl.read_parquet(table)["id"].to_list() == ["100000000000000000000000", "-1"]
