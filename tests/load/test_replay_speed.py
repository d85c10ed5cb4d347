"""``--replay --speed N`` decides like ``simulate``: a real ``tokenlimit serve`` on loopback.

At N times the trace's speed the arrivals *and* the recorded latencies are divided by N, so
each usage report reaches the service where it falls among the checks in the trace. The
service's clock is the real one: at 100x the first 300 requests of samples/trace.csv (530 s of
trace) pass in 5.3 s, in which no bucket refills. What the service must decide is therefore
what ``simulate --speed N`` decides on the same requests (times and latencies divided by N).
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


def _first_requests(path: Path) -> None:
    """The first ``REQUESTS`` rows of samples/trace.csv."""
    with (SAMPLES / "trace.csv").open(newline="") as source:
        rows = list(csv.DictReader(source))[:REQUESTS]
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
    trace = tmp_path / "first300.csv"
    _first_requests(trace)
    # Subprocess: the loadtest's precise timer needs SIGALRM, which pytest-timeout holds here.
    out = subprocess.run(
        [sys.executable, "-m", "tokenlimit", "loadtest", service, "--mode", "service",
         "--replay", str(trace), "--speed", str(SPEED), "--unique-keys", "--format", "json"],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    requests = json.loads(out.stdout)["requests"]
    assert (requests["sent"], requests["answered"], requests["errors"]) == (300, 300, 0)
    # Before latencies were scaled, every report landed after every check: nothing limited.
    assert requests["limited"] == _limited_by_simulate(trace, SPEED) == 255
    # At its own pace the trace refills buckets (30 s and 60 s) that 5.3 s of replay cannot.
    assert _limited_by_simulate(trace, 1) == 150
