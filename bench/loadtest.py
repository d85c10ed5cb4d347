"""How fast is tokenlimit's load generator? Printed side by side with wrk and locust.

Against one local target (bench/target.py: uvloop + httptools, answers a chat completion),
in one run, each for a few seconds:

- wrk (closed loop, its best case): requests/s;
- locust with FastHttpUser (closed loop, no wait): requests/s, when locust is installed
  (``pip install -e '.[bench]'``);
- tokenlimit's open-loop schedule: the highest rate it sustains on time (p99 send lateness
  under 1 ms, no errors, every request answered), with one worker and with ``--workers 2``,
  found by doubling then bisecting; and its closed-loop throughput for reference.

Every tool sends the same request: POST of the same chat-completion body with a
``user-type`` header. The machine's other load shows in every figure alike; run it on a
quiet machine for the numbers to mean much. Usage: python bench/loadtest.py [--seconds 3]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tokenlimit.load.driver import LoadPlan  # noqa: E402
from tokenlimit.load.modes import KeySpec  # noqa: E402
from tokenlimit.load.multiprocess import run_workers  # noqa: E402
from tokenlimit.load.schedule import ConstantRate  # noqa: E402

BODY = json.dumps({"model": "tokenlimit-load",
                   "messages": [{"role": "user", "content": "Say hello."}]},
                  separators=(",", ":"))
LATENESS_LIMIT_MS = 1.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_wrk(url: str, seconds: float, tmp: Path) -> float | None:
    if shutil.which("wrk") is None:
        return None
    script = tmp / "post.lua"
    script.write_text(f'wrk.method = "POST"\nwrk.body = {json.dumps(BODY)}\n'
                      'wrk.headers["Content-Type"] = "application/json"\n'
                      'wrk.headers["user-type"] = "regular-user"\n')
    out = subprocess.run(["wrk", "-t2", "-c64", f"-d{max(1, round(seconds))}s", "-s",
                          str(script), url + "/v1/chat/completions"],
                         capture_output=True, text=True, timeout=seconds + 30).stdout
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return float(found.group(1)) if found else None


def run_locust(url: str, seconds: float, tmp: Path) -> float | None:
    locust = Path(sys.executable).parent / "locust"
    if not locust.exists():
        return None
    (tmp / "locustfile.py").write_text(
        "from locust import FastHttpUser, constant, task\n"
        "class Chat(FastHttpUser):\n    wait_time = constant(0)\n    @task\n"
        "    def chat(self):\n"
        f"        self.client.post('/v1/chat/completions', data={BODY!r}, headers="
        "{'Content-Type': 'application/json', 'user-type': 'regular-user'})\n")
    subprocess.run([str(locust), "-f", str(tmp / "locustfile.py"), "--headless", "-u", "64",
                    "-r", "64", "-t", f"{max(1, round(seconds))}s", "--host", url,
                    "--csv", str(tmp / "locust"), "--only-summary", "--loglevel", "ERROR"],
                   capture_output=True, text=True, timeout=seconds + 60)
    with (tmp / "locust_stats.csv").open() as handle:
        for row in csv.DictReader(handle):
            if row["Name"] == "Aggregated":
                return float(row["Requests/s"])
    return None


def tokenlimit_open(url: str, rate: float, seconds: float, workers: int) -> tuple[bool, str]:
    plan = LoadPlan(url + "/v1/chat/completions", keys=(KeySpec("user-type", "regular-user", 1),),
                    shape="open", schedule=ConstantRate(rate), requests=None, duration=seconds,
                    connections=512)
    s = run_workers(plan, workers).stats
    p50, p90, p99 = ((s.lateness.percentile_us(q) or 0) / 1000 for q in (50, 90, 99))
    expected = int(rate * seconds * 0.99)
    on_time = (p99 < LATENESS_LIMIT_MS and s.outcomes["error"] == 0
               and s.completed >= expected)
    answered = s.completed / max(s.duration, 1e-9)
    return on_time, (f"rate {rate:>8.0f}/s: answered {answered:>8.0f}/s, send lateness "
                     f"p50/p90/p99 {p50:.3f}/{p90:.3f}/{p99:.3f} ms, errors "
                     f"{s.outcomes['error']} -> {'on time' if on_time else 'late'}")


def highest_on_time(url: str, seconds: float, workers: int) -> float:
    """Double from 250/s until late, then bisect twice; 0 when even 250/s is late."""
    good, bad, rate = 0.0, 0.0, 250.0
    while rate <= 128_000:
        ok, line = tokenlimit_open(url, rate, seconds, workers)
        print(f"  workers {workers} {line}", flush=True)
        if not ok:
            bad = rate
            break
        good, rate = rate, rate * 2
    if good and bad:
        for _ in range(2):
            mid = (good + bad) / 2
            ok, line = tokenlimit_open(url, mid, seconds, workers)
            print(f"  workers {workers} {line}", flush=True)
            good, bad = (mid, bad) if ok else (good, mid)
    return good


def tokenlimit_closed(url: str, seconds: float, workers: int) -> float:
    plan = LoadPlan(url + "/v1/chat/completions", keys=(KeySpec("user-type", "regular-user", 1),),
                    shape="closed", concurrency=64, requests=None, duration=seconds)
    s = run_workers(plan, workers).stats
    return s.completed / max(s.duration, 1e-9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each run")
    args = parser.parse_args()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
          f"on {os.cpu_count()} CPUs")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    target = subprocess.Popen([sys.executable, str(REPO / "bench" / "target.py"), str(port)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert target.stdout is not None and target.stdout.readline().strip() == "ready"
        with tempfile.TemporaryDirectory() as tmp:
            wrk = run_wrk(url, args.seconds, Path(tmp))
            locust = run_locust(url, args.seconds, Path(tmp))
        closed1 = tokenlimit_closed(url, args.seconds, 1)
        closed2 = tokenlimit_closed(url, args.seconds, 2)
        print("tokenlimit open-loop search (2 s per step):")
        open1 = highest_on_time(url, 2.0, 1)
        open2 = highest_on_time(url, 2.0, 2)
    finally:
        target.terminate()
        target.wait(timeout=10)

    def fig(value: float | None) -> str:
        return "not installed" if value is None else f"{value:,.0f}/s"

    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print()
    print(f"wrk -t2 -c64 (closed loop)                    {fig(wrk)}")
    print(f"locust FastHttpUser, 64 users (closed loop)   {fig(locust)}")
    print(f"tokenlimit closed loop, 64 users, 1 worker    {fig(closed1)}")
    print(f"tokenlimit closed loop, 64 users, 2 workers   {fig(closed2)}")
    print(f"tokenlimit open loop on time, 1 worker        {fig(open1)}")
    print(f"tokenlimit open loop on time, 2 workers       {fig(open2)}")
    if locust:
        print(f"goal: 1 worker on time >= locust:   {open1 / locust:.2f}x "
              f"({'met' if open1 >= locust else 'NOT met'})")
    if wrk:
        print(f"goal: 2 workers on time >= wrk / 3: {open2 / wrk:.2f} of wrk "
              f"({'met' if open2 >= wrk / 3 else 'NOT met'})")


if __name__ == "__main__":
    main()
