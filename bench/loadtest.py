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

``--tls`` compares HTTPS only (a throwaway CA made with trustme, from the dev extra): the
project's client over TLS against httpx's AsyncClient over TLS, closed loop (64 users) and
open loop at 1,000/s (latency from the intended send time), with plain HTTP for reference.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import socket
import ssl
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


def _latency_figures(latencies_ms: list[float]) -> str:
    ordered = sorted(latencies_ms)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] if ordered else 0.0

    return f"p50/p99 {at(50):.3f}/{at(99):.3f} ms"


def httpx_closed(url: str, ca: str, seconds: float, users: int) -> float:
    """httpx.AsyncClient, ``users`` concurrent users on kept-alive connections: answers/s."""
    import asyncio
    import time

    import httpx

    async def run() -> float:
        done = 0
        headers = {"user-type": "regular-user", "Content-Type": "application/json"}
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=ca),
                                     limits=limits) as client:
            end = time.perf_counter() + seconds

            async def user() -> None:
                nonlocal done
                while time.perf_counter() < end:
                    await client.post(url + "/v1/chat/completions", content=BODY,
                                      headers=headers)
                    done += 1

            # Connections (and TLS handshakes) opened before the clock, as tokenlimit warms.
            await asyncio.gather(*(client.post(url + "/v1/chat/completions", content=BODY,
                                               headers=headers) for _ in range(users)))
            end = time.perf_counter() + seconds
            began = time.perf_counter()
            await asyncio.gather(*(user() for _ in range(users)))
            return done / (time.perf_counter() - began)

    return asyncio.run(run())


def httpx_open(url: str, ca: str, rate: float, seconds: float) -> tuple[str, int]:
    """httpx.AsyncClient at ``rate``/s (evenly spaced): latency from the intended send time."""
    import asyncio
    import time

    import httpx

    async def run() -> tuple[str, int]:
        latencies: list[float] = []
        errors = 0
        headers = {"user-type": "regular-user", "Content-Type": "application/json"}
        async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=ca),
                                     limits=httpx.Limits(max_connections=256)) as client:
            await asyncio.gather(*(client.post(url + "/v1/chat/completions", content=BODY,
                                               headers=headers) for _ in range(16)))
            start = time.perf_counter()

            async def one(due: float) -> None:
                nonlocal errors
                try:
                    await client.post(url + "/v1/chat/completions", content=BODY,
                                      headers=headers)
                    latencies.append((time.perf_counter() - due) * 1000)
                except httpx.HTTPError:
                    errors += 1

            tasks = []
            for n in range(int(rate * seconds)):
                due = start + n / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.ensure_future(one(due)))
            await asyncio.gather(*tasks)
        return _latency_figures(latencies), errors

    return asyncio.run(run())


def tokenlimit_tls_open(url: str, ca: str | None, rate: float, seconds: float) -> str:
    plan = LoadPlan(url + "/v1/chat/completions", keys=(KeySpec("user-type", "regular-user", 1),),
                    shape="open", schedule=ConstantRate(rate), requests=None, duration=seconds,
                    ca_cert=ca)
    s = run_workers(plan, 1).stats
    p50, p99 = ((s.latency.percentile_us(q) or 0) / 1000 for q in (50, 99))
    late = (s.lateness.percentile_us(99) or 0) / 1000
    return (f"p50/p99 {p50:.3f}/{p99:.3f} ms (send lateness p99 {late:.3f} ms), "
            f"errors {s.outcomes['error']}")


def tls_comparison(seconds: float) -> None:
    """``--tls``: the project's client over TLS against httpx over TLS, and plain HTTP."""
    import trustme

    ca = trustme.CA()
    with tempfile.TemporaryDirectory() as tmp:
        cert, ca_pem = Path(tmp) / "server.pem", Path(tmp) / "ca.pem"
        ca.issue_cert("localhost").private_key_and_cert_chain_pem.write_to_path(str(cert))
        ca.cert_pem.write_to_path(str(ca_pem))
        tls_port, plain_port = free_port(), free_port()
        targets = [subprocess.Popen([sys.executable, str(REPO / "bench" / "target.py"),
                                     str(port), *extra], stdout=subprocess.PIPE, text=True)
                   for port, extra in ((tls_port, [str(cert)]), (plain_port, []))]
        try:
            for target in targets:
                assert target.stdout is not None and target.stdout.readline().strip() == "ready"
            https, http = f"https://localhost:{tls_port}", f"http://127.0.0.1:{plain_port}"
            closed = {users: (tokenlimit_closed_tls(https, str(ca_pem), seconds, users),
                              httpx_closed(https, str(ca_pem), seconds, users))
                      for users in (1, 64)}
            plain = tokenlimit_closed(http, seconds, 1)
            rate = 1000.0
            own_open = tokenlimit_tls_open(https, str(ca_pem), rate, seconds)
            plain_open = tokenlimit_tls_open(http, None, rate, seconds)
            httpx_lat, httpx_errors = httpx_open(https, str(ca_pem), rate, seconds)
        finally:
            for target in targets:
                target.terminate()
                target.wait(timeout=10)
    for users, (own, other) in closed.items():
        print(f"closed loop, {users:>2} users, https: tokenlimit client {own:>8,.0f}/s, "
              f"httpx {other:>8,.0f}/s")
    print(f"closed loop, 64 users, http:  tokenlimit client {plain:>8,.0f}/s")
    print(f"open loop {rate:g}/s, latency from the intended send time:")
    print(f"  tokenlimit client, https   {own_open}")
    print(f"  tokenlimit client, http    {plain_open}")
    print(f"  httpx, https               {httpx_lat}, errors {httpx_errors}")
    own, other = closed[1]
    print(f"goal: TLS in tokenlimit's client >= httpx (closed loop, 1 user): {own / other:.2f}x "
          f"({'met' if own >= other else 'NOT met'})")


def tokenlimit_closed_tls(url: str, ca: str, seconds: float, users: int) -> float:
    plan = LoadPlan(url + "/v1/chat/completions", keys=(KeySpec("user-type", "regular-user", 1),),
                    shape="closed", concurrency=users, requests=None, duration=seconds,
                    ca_cert=ca)
    s = run_workers(plan, 1).stats
    return s.answered / max(s.duration, 1e-9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each run")
    parser.add_argument("--tls", action="store_true",
                        help="only compare HTTPS: tokenlimit's client against httpx")
    args = parser.parse_args()
    if args.tls:
        tls_comparison(args.seconds)
        return
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
