"""``--replay --speed N`` decides like ``simulate``: a real ``tokenlimit serve`` on loopback.

At N times the trace's speed the arrivals *and* the recorded latencies are divided by N, so
each usage report reaches the service where it falls among the checks in the trace. The
service's clock is the real one: at 100x the first 300 requests of samples/trace.csv (530 s of
trace) pass in 5.3 s, in which no bucket refills. What the service must decide is therefore
what ``simulate --speed N`` decides on the same requests (times and latencies divided by N).

A replay keeps real time, so a send that comes a few milliseconds late (a machine busy with
other work) can put a report after a check it preceded in the trace. The sample has a report
0.02 ms (at 100x) before a check of its key; the requests replayed here are those of the first
300 that come no nearer than ``APART`` (30 ms at 100x) to a check or report of their key, so
the exact comparison holds on a busy machine too.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import REPO, SAMPLES, free_port

SPEED = 100
REQUESTS = 300
APART = 3.0  # seconds of the trace between events of one key: 30 ms at SPEED


def _first_requests(path: Path) -> None:
    """Of the first ``REQUESTS`` rows of samples/trace.csv, those whose check and report are
    at least ``APART`` from every check and report of their key in a row kept before."""
    with (SAMPLES / "trace.csv").open(newline="") as source:
        first = list(csv.DictReader(source))[:REQUESTS]
    rows: list[dict[str, str]] = []
    events: dict[str, list[float]] = {}  # check and report times of each key's kept rows
    for row in first:
        check = float(row["ts"])
        both = (check, check + float(row["latency"]))
        theirs = events.setdefault(row["key"], [])
        if all(abs(mine - other) >= APART for mine in both for other in theirs):
            rows.append(row)
            theirs.extend(both)
    with path.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _limited_by_simulate(trace: Path, speed: float) -> int:
    out = subprocess.run([sys.executable, "-m", "tokenlimit", "simulate", str(trace), "-r",
                          str(SAMPLES / "rules.json"), "--speed", str(speed), "--format",
                          "json"], cwd=REPO, capture_output=True, text=True, timeout=120,
                         check=True)
    limited: int = json.loads(out.stdout)["totals"]["limited"]
    return limited


@contextmanager
def _serve(rules: Path) -> Iterator[str]:
    """``tokenlimit serve`` (memory backend) with ``rules``, on a loopback port."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_ADDRESS",
                                                            "RATE_LIMIT_CONFIG")}
    process = subprocess.Popen(
        [sys.executable, "-m", "tokenlimit", "serve", "--rules", str(rules), "--backend",
         "memory", "--port", str(port), "--stop-after", "90"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url + "/ratelimit", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "serve did not start"
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(10)


def _replay(url: str, trace: Path, speed: float) -> dict[str, Any]:
    # Subprocess: the loadtest's precise timer needs SIGALRM, which pytest-timeout holds here.
    out = subprocess.run(
        [sys.executable, "-m", "tokenlimit", "loadtest", url, "--mode", "service",
         "--replay", str(trace), "--speed", str(speed), "--unique-keys", "--format", "json"],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    data: dict[str, Any] = json.loads(out.stdout)
    return data


def test_a_fast_replay_limits_what_simulate_limits(tmp_path: Path) -> None:
    trace = tmp_path / "apart.csv"
    _first_requests(trace)
    predicted = _limited_by_simulate(trace, SPEED)
    # Before latencies were scaled, every report landed after every check: nothing limited.
    assert predicted == 198
    # A send later than APART / SPEED could still reorder a check and a report: up to three
    # replays (each on a fresh service); one of them must decide exactly.
    seen = []
    for _ in range(3):
        with _serve(SAMPLES / "rules.json") as url:
            requests = _replay(url, trace, SPEED)["requests"]
        assert (requests["sent"], requests["answered"], requests["errors"]) == (229, 229, 0)
        seen.append(requests["limited"])
        if requests["limited"] == predicted:
            break
    assert predicted in seen, seen
    # At its own pace the trace refills buckets (30 s and 60 s) that 5.3 s of replay cannot.
    assert _limited_by_simulate(trace, 1) == 87


def test_a_replay_starts_at_the_trace_s_fraction_of_a_second(tmp_path: Path) -> None:
    # A bucket refilled every second. The first request (130 tokens) leaves it at -80; the
    # second comes 0.2 s later, across a whole second of the trace's clock: one refill
    # (-30, limited); the third a second later: a second refill (+20, allowed). A service
    # whose seconds began 0.5 s off would see no boundary between the first two: limited
    # twice. The replay starts at .9 of a wall-clock second, as the trace does.
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps([{"rate_limit_key_regex": "u.*", "max_tokens": 100,
                                  "tokens_per_fill": 50, "fill_interval_second": 1,
                                  "redis_expired_seconds": 60}]))
    trace = tmp_path / "t.csv"
    trace.write_text("ts,key,completion_tokens,latency\n1000.9,u,130,0.05\n"
                     "1001.1,u,10,0.05\n1002.1,u,10,0.05\n")
    shifted = tmp_path / "shifted.csv"
    shifted.write_text("ts,key,completion_tokens,latency\n1000.4,u,130,0.05\n"
                       "1000.6,u,10,0.05\n1001.6,u,10,0.05\n")  # the same, 0.5 s earlier
    limited = [json.loads(subprocess.run(
        [sys.executable, "-m", "tokenlimit", "simulate", str(t), "-r", str(rules), "-f",
         "json"], cwd=REPO, capture_output=True, text=True, timeout=120, check=True).stdout)
        ["totals"]["limited"] for t in (trace, shifted)]
    assert limited == [1, 2]
    with _serve(rules) as url:
        data = _replay(url, trace, 1)
    assert round(data["started"] % 1.0, 3) == 0.9
    assert (data["requests"]["answered"], data["requests"]["limited"]) == (3, 1)


def test_a_report_due_at_a_check_of_its_key_is_applied_first(tmp_path: Path) -> None:
    # ASM's replay order: a report at t goes before the checks at t that follow it in the
    # trace, even when its own check is at t (latency 0). Three requests of 'u' at one
    # instant: simulate admits the first (50 > 0, then 60 charged: -10) and limits the other
    # two; the live replay sent all three checks at once, before the first report, and the
    # service admitted all three. 'w' reports at 1001.5 exactly when its next check comes.
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps([{"rate_limit_key_regex": "^[uw]", "max_tokens": 100,
                                  "tokens_per_fill": 50, "fill_interval_second": 60,
                                  "redis_expired_seconds": 600}]))
    trace = tmp_path / "t.csv"
    trace.write_text("ts,key,completion_tokens,latency\n1000.5,u,60,0\n1000.5,u,60,0\n"
                     "1000.5,u,60,0\n1001.0,w,60,0.5\n1001.5,w,10,0\n")
    out = subprocess.run([sys.executable, "-m", "tokenlimit", "simulate", str(trace), "-r",
                          str(rules), "--format", "json"], cwd=REPO, capture_output=True,
                         text=True, timeout=120, check=True)
    assert json.loads(out.stdout)["totals"]["limited"] == 3
    with _serve(rules) as url:
        requests = _replay(url, trace, 1)["requests"]
    assert (requests["sent"], requests["allowed"], requests["limited"]) == (5, 2, 3)
