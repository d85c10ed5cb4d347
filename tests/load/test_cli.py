"""``tokenlimit loadtest`` through the real CLI: JSON schema, merge, --strict, bad input."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from typer.testing import CliRunner

from tests.conftest import REPO, free_port
from tests.load.servers import AdmitAllHandler, AsmServiceHandler, serve
from tokenlimit.cli.main import app
from tokenlimit.load.histogram import LatencyHistogram
from tokenlimit.load.run_stats import RunStats
from tokenlimit.rules.model import Rule
from tokenlimit.service import running_service

RULES_JSON = json.dumps([
    {"rate_limit_key_regex": "regular-user.*", "max_tokens": 300, "tokens_per_fill": 100,
     "fill_interval_second": 1, "redis_expired_seconds": 300},
    {"rate_limit_key_regex": "subscriber.*", "max_tokens": 1000, "tokens_per_fill": 400,
     "fill_interval_second": 2, "redis_expired_seconds": 600}])
RULES = [Rule(0, "regular-user.*", 300, 100, 1, 300), Rule(1, "subscriber.*", 1000, 400, 2, 600)]
LOAD = ["--mode", "service", "--config-json", RULES_JSON, "-k", "regular-user:3",
        "-k", "subscriber:1", "--latency", "0-0.02", "--tokens", "5-40"]

MS = {"type": ["number", "null"], "minimum": 0}
SUMMARY = {"type": "object", "required": ["count", "mean", "p50", "p90", "p99", "p99.9", "max"],
           "properties": {"count": {"type": "integer", "minimum": 0}, "mean": MS, "p50": MS,
                          "p90": MS, "p99": MS, "p99.9": MS, "max": MS},
           "additionalProperties": False}
HISTOGRAM = {"type": "object", "required": ["sub_bits", "count", "total_us", "min_us", "max_us",
                                            "buckets"]}
COUNT = {"type": "integer", "minimum": 0}
KEY = {"type": "object", "required": ["requests", "allowed", "limited", "errors",
                                      "tokens_admitted"],
       "properties": {f: COUNT for f in ("requests", "allowed", "limited", "errors",
                                         "tokens_admitted")},
       "additionalProperties": False}
# The schema the README documents for --output (and --format json, which leaves out "raw").
REPORT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["schema", "target", "mode", "load", "workers", "runs", "interrupted", "started",
                 "finished", "duration_s", "requests", "throughput_rps", "latency_ms",
                 "latency_ms_by_outcome", "ttfb_ms", "send_lateness_ms", "report_latency_ms",
                 "statuses", "errors", "report_statuses", "keys", "rules", "conformance"],
    "properties": {
        "schema": {"const": "tokenlimit-loadtest/1"},
        "mode": {"type": "string"}, "workers": {"type": "integer"},
        "requests": {"type": "object", "required": ["sent", "completed", "allowed", "limited",
                                                    "errors"]},
        "throughput_rps": {"type": "number"},
        "latency_ms": SUMMARY, "ttfb_ms": SUMMARY, "send_lateness_ms": SUMMARY,
        "report_latency_ms": SUMMARY,
        "latency_ms_by_outcome": {"type": "object", "required": ["allowed", "limited", "error"],
                                  "additionalProperties": SUMMARY},
        "keys": {"type": "object", "additionalProperties": KEY},
        "conformance": {"oneOf": [{"type": "null"}, {
            "type": "object",
            "required": ["requests", "compared", "agreed", "agreement_percent", "ambiguous",
                         "over_admitted", "under_admitted", "other_mismatches", "not_compared",
                         "findings", "keys", "examples"]}]},
        "raw": {"type": "object", "required": ["latency", "latency_by_outcome", "timeline"],
                "properties": {"latency": HISTOGRAM}},
    },
}

runner = CliRunner()


@pytest.fixture
def own_service() -> Iterator[str]:
    with running_service(RULES, port=0) as svc:
        yield svc.url


def test_json_report_follows_the_documented_schema(own_service: str, tmp_path: Path) -> None:
    out, png = tmp_path / "r.json", tmp_path / "r.png"
    result = runner.invoke(app, ["loadtest", own_service, *LOAD, "--rate", "200",
                                 "--requests", "150", "-o", str(out), "--format", "json",
                                 "--plot", str(png)])
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json", "r.png"]  # no temp left
    data = json.loads(out.read_text())
    jsonschema.validate(data, REPORT_SCHEMA)
    printed = json.loads(result.stdout)
    jsonschema.validate(printed, REPORT_SCHEMA)
    assert "raw" not in printed and printed["requests"] == data["requests"]
    assert data["requests"]["sent"] == 150 and data["requests"]["completed"] == 150
    assert data["conformance"]["agreement_percent"] == 100.0
    assert data["conformance"]["over_admitted"] == 0
    assert sum(k["requests"] for k in data["keys"].values()) == 150
    assert data["rules"][0]["rate_limit_key_regex"] == "regular-user.*"


def test_merge_adds_histograms_exactly(own_service: str, tmp_path: Path) -> None:
    paths = []
    for n, seed in ((80, 1), (120, 2)):
        path = tmp_path / f"r{seed}.json"
        result = runner.invoke(app, ["loadtest", own_service, *LOAD, "-c", "3", "-n", str(n),
                                     "--seed", str(seed), "-o", str(path)])
        assert result.exit_code == 0, result.output
        paths.append(path)
    merged_path = tmp_path / "all.json"
    result = runner.invoke(app, ["loadtest", "merge", *map(str, paths), "-o", str(merged_path)])
    assert result.exit_code == 0, result.output
    a, b = (json.loads(p.read_text()) for p in paths)
    merged = json.loads(merged_path.read_text())
    jsonschema.validate(merged, REPORT_SCHEMA)
    hist = LatencyHistogram.from_dict(a["raw"]["latency"])
    hist.merge(LatencyHistogram.from_dict(b["raw"]["latency"]))
    assert merged["raw"]["latency"] == hist.to_dict()
    assert merged["latency_ms"] == hist.summary_ms()  # percentiles of the sum, not averages
    assert merged["requests"]["sent"] == 200 and merged["runs"] == 2
    for key in merged["keys"]:
        for field in ("requests", "allowed", "limited", "tokens_admitted"):
            assert merged["keys"][key][field] == a["keys"].get(key, {}).get(field, 0) + \
                b["keys"].get(key, {}).get(field, 0)
    stats = RunStats.from_dict(a["raw"])
    stats.merge(RunStats.from_dict(b["raw"]))
    assert merged["raw"] == stats.to_dict()
    assert merged["conformance"]["compared"] == a["conformance"]["compared"] + \
        b["conformance"]["compared"]


def test_strict_fails_on_a_limiter_that_admits_everything(tmp_path: Path) -> None:
    with serve(AdmitAllHandler, RULES) as (url, _):
        result = runner.invoke(app, ["loadtest", url, *LOAD, "-c", "4", "-n", "120",
                                     "--strict"])
    assert result.exit_code == 1
    first = result.stdout.splitlines()[0]
    assert first.startswith("FINDING over-admission: ")
    with serve(AdmitAllHandler, RULES) as (url, _):
        lenient = runner.invoke(app, ["loadtest", url, *LOAD, "-c", "4", "-n", "40"])
    assert lenient.exit_code == 0


def test_strict_passes_on_a_correct_limiter() -> None:
    with serve(AsmServiceHandler, RULES) as (url, calls):
        result = runner.invoke(app, ["loadtest", url, *LOAD, "-c", "2", "-n", "60", "--strict"])
    assert result.exit_code == 0, result.output
    assert "conformance 100.000% agreement" in result.stdout
    assert calls.count("check") == 60


@pytest.mark.parametrize(("args", "message"), [
    (["http://127.0.0.1:1/", "--replay", "/nonexistent.jsonl"],
     "/nonexistent.jsonl: cannot read: No such file or directory"),
    (["merge", "/nonexistent.json"], "/nonexistent.json: cannot read"),
])
def test_bad_input_is_one_line_and_exit_1(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["loadtest", *args])
    assert result.exit_code == 1, result.output
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_a_dead_target_is_an_error_after_the_report(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    out = tmp_path / "r.json"
    result = runner.invoke(app, ["loadtest", url, "-n", "3", "-o", str(out)])
    assert result.exit_code == 1
    assert "no request was answered (connection-refused 3)" in result.stderr
    # The summary claims no answer and no rate: a refused connection is not an answer.
    summary = result.stdout.splitlines()[1]
    assert summary.startswith("requests 3 sent, 0 answered in ")
    assert summary.endswith(" s; 3 failed with no answer (connection-refused 3); allowed 0, "
                            "limited 0, errors 3")
    assert "/s" not in summary
    data = json.loads(out.read_text())
    assert data["errors"] == {"connection-refused": 3}
    assert (data["requests"]["answered"], data["throughput_rps"]) == (0, 0)


def test_two_shapes_at_once_are_a_usage_error() -> None:
    result = runner.invoke(app, ["loadtest", "http://127.0.0.1:1/", "-c", "2", "--rate", "5"])
    assert result.exit_code == 2


def test_ctrl_c_stops_cleanly_with_a_partial_report(tmp_path: Path) -> None:
    out = tmp_path / "partial.json"
    with serve(AsmServiceHandler, RULES) as (url, _):
        proc = subprocess.Popen(
            [sys.executable, "-m", "tokenlimit", "loadtest", url, *LOAD, "--rate", "50",
             "--duration", "30", "--requests", "100000", "-o", str(out)],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)})
        try:
            time.sleep(1.5)  # let the run get under way (it would last 30 s)
            proc.send_signal(signal.SIGINT)
            stdout, stderr = proc.communicate(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 130, stderr
    assert "(interrupted: partial report)" in stdout
    data = json.loads(out.read_text())
    assert data["interrupted"] is True
    assert 0 < data["requests"]["sent"] < 1500
    assert data["requests"]["completed"] == data["requests"]["sent"]


def test_a_ramp_sends_each_step_at_its_rate() -> None:
    # 20/s for 0.5 s (10 requests), then 40/s for 0.5 s (20 requests): the run lasts the ramp.
    with serve(AsmServiceHandler, RULES) as (url, calls):
        result = runner.invoke(app, ["loadtest", url, *LOAD, "--ramp", "20x0.5,40x0.5",
                                     "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["load"] == "open loop, ramp 20/s for 0.5s, 40/s for 0.5s"
    assert data["requests"]["sent"] == 30 and calls.count("check") == 30
    assert data["send_lateness_ms"]["count"] == 30


def test_a_subprocess_run_keeps_exact_counts(tmp_path: Path) -> None:
    # Outside pytest's process the driver waits with the SIGALRM waker: same counts.
    with serve(AsmServiceHandler, RULES) as (url, calls):
        out = subprocess.run(
            [sys.executable, "-m", "tokenlimit", "loadtest", url, *LOAD, "--rate", "200",
             "-n", "40", "--format", "json"],
            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["requests"]["sent"] == 40 and calls.count("check") == 40
    assert data["send_lateness_ms"]["count"] == 40
    assert data["conformance"]["over_admitted"] == 0


def test_unique_keys_start_each_run_from_fresh_buckets(own_service: str, tmp_path: Path) -> None:
    keys_seen = []
    for run_number in range(2):
        out = tmp_path / f"u{run_number}.json"
        result = runner.invoke(app, ["loadtest", own_service, *LOAD, "-c", "3", "-n", "60",
                                     "--unique-keys", "-o", str(out)])
        assert result.exit_code == 0, result.output
        data = json.loads(out.read_text())
        conf = data["conformance"]
        assert (conf["over_admitted"], conf["under_admitted"]) == (0, 0)
        # A fresh bucket holds tokens_per_fill: the first request of each key is admitted.
        assert all(k["allowed"] >= 1 for k in data["keys"].values())
        keys_seen.append(sorted(data["keys"]))
    assert all(k.startswith(("regular-user-", "subscriber-")) for k in keys_seen[0])
    assert set(keys_seen[0]).isdisjoint(keys_seen[1])


def test_workers_through_the_cli(own_service: str) -> None:
    result = runner.invoke(app, ["loadtest", own_service, *LOAD, "--rate", "150", "-n", "90",
                                 "--workers", "2", "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["workers"] == 2 and data["requests"]["sent"] == 90
    assert data["send_lateness_ms"]["count"] == 90
    assert data["conformance"]["requests"] == 90
    assert data["conformance"]["over_admitted"] == data["conformance"]["under_admitted"] == 0


def test_merge_is_a_subcommand_with_its_own_help() -> None:
    shown = runner.invoke(app, ["loadtest", "merge", "--help"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0
    assert "Usage: tokenlimit loadtest merge [OPTIONS] REPORT.json..." in shown.output
    assert "--mode" not in shown.output  # not loadtest's own help
    missing = runner.invoke(app, ["loadtest", "merge"])
    assert missing.exit_code == 2
    assert "Missing argument 'REPORT.json...'" in missing.output
    # A run takes no second argument any more (merge is not an argument of it).
    extra = runner.invoke(app, ["loadtest", "http://127.0.0.1:9", "x.json"])
    assert extra.exit_code == 2


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (Linux: read from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux's /proc")
def test_ctrl_c_while_workers_start_is_a_partial_report_not_a_traceback(
        tmp_path: Path) -> None:
    # A terminal sends Ctrl-C to the whole process group. Workers still importing died in a
    # KeyboardInterrupt traceback each, and the run ended 'load worker 0 did not start',
    # exit 1, with no report.
    out = tmp_path / "partial.json"
    with serve(AsmServiceHandler, RULES) as (url, _):
        proc = subprocess.Popen(
            [sys.executable, "-m", "tokenlimit", "loadtest", url, *LOAD, "--rate", "50",
             "--duration", "30", "--workers", "2", "-o", str(out)],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)}, start_new_session=True)
        try:
            deadline = time.monotonic() + 20
            while len(_children(proc.pid)) < 2 and time.monotonic() < deadline:
                time.sleep(0.005)
            assert len(_children(proc.pid)) >= 2, "the workers never started"
            os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: every process
            stdout, stderr = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert stderr.endswith("interrupted: the report covers the requests answered so far\n")
    assert "(interrupted: partial report)" in stdout
    data = json.loads(out.read_text())
    assert data["interrupted"] is True and data["workers"] == 2
    assert data["requests"]["completed"] == data["requests"]["sent"]


def _gone(pid: int) -> bool:
    """``pid`` has exited (a zombie not yet reaped by init counts as exited)."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] \
            == "Z"
    except OSError:
        return True


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux's /proc")
@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_stops_the_run_with_a_partial_report_and_no_worker_left(
        tmp_path: Path, workers: int) -> None:
    # A cancelled CI job or `kill` sends SIGTERM. It killed loadtest outright: no report, and
    # with --workers the workers went on sending load, orphaned, until their --duration.
    out = tmp_path / "partial.json"
    with serve(AsmServiceHandler, RULES) as (url, _):
        proc = subprocess.Popen(
            [sys.executable, "-m", "tokenlimit", "loadtest", url, *LOAD, "--rate", "50",
             "--duration", "30", "--workers", str(workers), "-o", str(out)],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)}, start_new_session=True)
        try:
            time.sleep(2.5)  # under way (it would last 30 s)
            children = [c for c in _children(proc.pid) if workers > 1]
            proc.send_signal(signal.SIGTERM)  # to loadtest only, as `kill PID` does
            stdout, stderr = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        deadline = time.monotonic() + 5
        while not all(_gone(c) for c in children) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [c for c in children if not _gone(c)] == []
    assert proc.returncode == 143, stderr
    assert "(interrupted: partial report)" in stdout
    assert stderr.endswith("interrupted: the report covers the requests answered so far\n")
    data = json.loads(out.read_text())
    assert data["interrupted"] is True and data["workers"] == workers
    assert 0 < data["requests"]["sent"] == data["requests"]["completed"]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux's /proc")
def test_workers_stop_by_themselves_when_loadtest_is_killed() -> None:
    # SIGKILL cannot be caught: the workers must notice they are orphans and stop, quietly
    # (they kept sending load until their --duration, then each printed a traceback).
    with serve(AsmServiceHandler, RULES) as (url, calls):
        proc = subprocess.Popen(
            [sys.executable, "-m", "tokenlimit", "loadtest", url, *LOAD, "--rate", "50",
             "--duration", "30", "--workers", "2"],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)}, start_new_session=True)
        try:
            deadline = time.monotonic() + 20
            while len(calls) < 10 and time.monotonic() < deadline:
                time.sleep(0.05)
            workers = [c for c in _children(proc.pid)
                       if "multiprocessing.spawn" in (Path("/proc") / str(c) /
                                                      "cmdline").read_text()]
            assert len(workers) == 2
            proc.kill()
            _, stderr = proc.communicate(timeout=10)
            deadline = time.monotonic() + 5
            while not all(_gone(w) for w in workers) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert [w for w in workers if not _gone(w)] == []
            sent = len(calls)
            time.sleep(0.5)
            assert len(calls) == sent  # no load after they stopped
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
    assert "Traceback" not in stderr
