"""``--replay --speed N`` decides like ``simulate``: a real ``tokenlimit serve`` on loopback.

At N times the trace's speed the arrivals *and* the recorded latencies are divided by N, so
each usage report reaches the service where it falls among the checks in the trace. The
service's clock is the real one: at 100x the first 300 requests of samples/trace.csv (530 s of
trace) pass in 5.3 s, in which no bucket refills. What the service must decide is therefore
what ``simulate`` decides on the same requests with their times and latencies divided by N.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO, SAMPLES, free_port

SPEED = 100
REQUESTS = 300


def _first_requests(path: Path, speed: float) -> None:
    """The first ``REQUESTS`` rows of samples/trace.csv, times and latencies divided by
    ``speed`` (the trace a replay at that speed plays to the service)."""
    with (SAMPLES / "trace.csv").open(newline="") as source:
        rows = list(csv.DictReader(source))[:REQUESTS]
    start = float(rows[0]["ts"])
    with path.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "ts": f"{start + (float(row['ts']) - start) / speed:.9f}",
                             "latency": f"{float(row['latency']) / speed:.9f}"})


def _limited_by_simulate(trace: Path) -> int:
    out = subprocess.run([sys.executable, "-m", "tokenlimit", "simulate", str(trace), "-r",
                          str(SAMPLES / "rules.json"), "--format", "json"], cwd=REPO,
                         capture_output=True, text=True, timeout=120, check=True)
    limited: int = json.loads(out.stdout)["totals"]["limited"]
    return limited


@pytest.fixture
def service() -> Iterator[str]:
    """``tokenlimit serve`` (memory backend) with the sample rules, on a loopback port."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_ADDRESS",
                                                            "RATE_LIMIT_CONFIG")}
    process = subprocess.Popen(
        [sys.executable, "-m", "tokenlimit", "serve", "--rules", str(SAMPLES / "rules.json"),
         "--backend", "memory", "--port", str(port), "--stop-after", "90"],
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


def test_a_fast_replay_limits_what_simulate_limits(service: str, tmp_path: Path) -> None:
    whole = tmp_path / "first300.csv"
    _first_requests(whole, 1.0)
    played = tmp_path / "played.csv"
    _first_requests(played, SPEED)
    # Subprocess: the loadtest's precise timer needs SIGALRM, which pytest-timeout holds here.
    out = subprocess.run(
        [sys.executable, "-m", "tokenlimit", "loadtest", service, "--mode", "service",
         "--replay", str(whole), "--speed", str(SPEED), "--unique-keys", "--format", "json"],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    requests = json.loads(out.stdout)["requests"]
    expected = _limited_by_simulate(played)
    assert (requests["sent"], requests["completed"], requests["errors"]) == (300, 300, 0)
    assert requests["limited"] == expected == 255
    # Before latencies were scaled every report landed after every check: nothing limited.
    assert _limited_by_simulate(whole) == 150  # the trace at its own pace refills buckets
