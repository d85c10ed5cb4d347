"""``--duration`` bounds the whole run (drain and report included); ``--top`` bounds the
per-key table."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from typer.testing import CliRunner

from tests.conftest import REPO
from tests.load.servers import AdmitAllHandler, serve
from tokenlimit.cli.main import app
from tokenlimit.rules.model import Rule

runner = CliRunner()
MARGIN = 6.0  # seconds: the interpreter starting on a busy machine, a replay aligning its start


@contextmanager
def silent_server() -> Iterator[str]:
    """A loopback port whose connections are accepted by the kernel and never answered."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=512)
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()


def _timed(*args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    began = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "tokenlimit", "loadtest", *args], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    return out, time.monotonic() - began


def test_duration_bounds_a_run_whose_answers_never_come() -> None:
    # Before: the drain waited two request timeouts (20 s) past the --duration.
    with silent_server() as url:
        out, elapsed = _timed(url, "--rate", "20", "--duration", "2", "-f", "json")
    assert elapsed < 2 + MARGIN, elapsed
    assert out.returncode == 1
    assert out.stderr == f"error: {url}: no request was answered (unanswered 40)\n"
    data = json.loads(out.stdout)
    assert data["duration_s"] < 2.2
    assert data["requests"]["sent"] == 40
    assert (data["requests"]["completed"], data["requests"]["answered"]) == (0, 0)


def test_duration_bounds_a_long_replay_with_long_latencies(tmp_path: Path) -> None:
    trace = tmp_path / "day.csv"  # a day of requests, each reported 30 s after its start
    trace.write_text("ts,key,completion_tokens,latency\n" + "".join(
        f"{i * 10},regular-user-{i % 50},10,30\n" for i in range(8640)))
    with serve(AdmitAllHandler, [Rule(0, "regular-user.*", 100, 10, 1, 60)]) as (url, _):
        out, elapsed = _timed(url, "--mode", "service", "--replay", str(trace), "--speed",
                              "100", "--duration", "3")
    assert elapsed < 3 + MARGIN, elapsed
    assert out.returncode == 0, out.stderr
    summary = out.stdout.splitlines()[1]
    # Sends at 0, 0.1, ... 2.9 s: 30 checks answered; their reports (due 0.3 s later) too,
    # except the last three, cut off by the bound.
    assert summary.startswith("requests 30 sent, 30 answered in "), summary


def test_top_bounds_the_key_table(tmp_path: Path) -> None:
    trace = tmp_path / "t.csv"
    rows = [f"{i * 0.01},user-{i % 5},1,0" for i in range(30)] + ["0.4,user-9,1,0"]
    trace.write_text("ts,key,completion_tokens,latency\n" + "\n".join(rows) + "\n")
    with serve(AdmitAllHandler, [Rule(0, "user.*", 100, 10, 1, 60)]) as (url, _):
        result = runner.invoke(app, ["loadtest", url, "--mode", "service", "--replay",
                                     str(trace), "--speed", "10", "--top", "2"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    table = lines[lines.index("key                      requests  allowed  limited   errors"
                              "   tokens") + 1:]
    assert table == [
        "  user-0                        6        6        0        0        6",
        "  user-1                        6        6        0        0        6",
        "  ... 4 more keys (19 requests); --top N shows more, the JSON report has every key"]
    assert runner.invoke(app, ["loadtest", url, "--top", "0"]).exit_code == 2
