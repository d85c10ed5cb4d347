"""What the gateway costs: the same requests straight to the mock LLM and through the gateway.

Starts the three servers as a cluster runs them, each in a process of its own: the rate-limit
service (``tokenlimit serve``, memory store, rules with a budget nothing exhausts), the mock LLM
(``tokenlimit mock-llm``) and the gateway (``tokenlimit gateway``: check, forward, asynchronous
report). Then, side by side in one run and in alternating rounds (the machine's other load hits
both alike), it sends the same POST straight to the mock and through the gateway, with 1 and
with 16 connections, and prints requests per second and the median latency of each, the
throughput ratio and the median latency the gateway adds, and a verdict against the targets:

- throughput through the gateway >= 0.5x direct (16 connections);
- median latency added by the gateway <= 0.5 ms (1 connection).

It also prints the CPU time each server process spent per request (user + system, read from
/proc on Linux): unlike throughput, it hardly depends on what else the machine runs, so it
shows where a request's cost goes even when the verdict is blurred by other work (a request
through the gateway wakes four processes in turn where a direct one wakes two, and on a
machine whose cores are taken by others every wake-up waits for a core).

The load comes from ``wrk`` (a C client measures the servers, not the client) when it is
installed, else from an aiohttp client in this process. Every server binds to 127.0.0.1 and
stops by itself; about a minute in all.

    .venv/bin/python bench/gateway_overhead.py [--rounds 3] [--seconds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

HOST = "dashscope.aliyuncs.com"
BODY = {"messages": [{"role": "user", "content": "Who are you?"}]}
RULES = [{"rate_limit_key_regex": "bench-.*", "max_tokens": 10**12, "tokens_per_fill": 10**12,
          "fill_interval_second": 60, "redis_expired_seconds": 600}]
TARGET_RATIO = 0.5
TARGET_ADDED_MS = 0.5
WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = '%s'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Host"] = "%s"
wrk.headers["user-type"] = "bench-1"
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on port {port}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (0 where /proc is missing)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk_run(url: str, connections: int, seconds: float, script: Path) -> tuple[float, float]:
    """(requests per second, median latency in ms) from one wrk run."""
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency",
                          "-s", str(script), url],
                         capture_output=True, text=True, timeout=seconds + 30, check=True).stdout
    rate = float(next(x for x in out.splitlines() if x.startswith("Requests/sec:")).split()[1])
    median = next(x.split()[1] for x in out.splitlines() if x.strip().startswith("50%"))
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    unit = next(u for u in ("us", "ms", "s") if median.endswith(u))
    if "Non-2xx" in out:
        raise SystemExit(f"non-2xx answers from {url}:\n{out}")
    return rate, float(median[:-len(unit)]) * scale[unit]


async def client_run(url: str, connections: int, seconds: float) -> tuple[float, float]:
    """The same figures from an aiohttp client, when wrk is not installed."""
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    async def worker(client: aiohttp.ClientSession) -> None:
        while time.perf_counter() < stop:
            start = time.perf_counter()
            async with client.post(url, json=BODY, headers={
                    "host": HOST, "user-type": "bench-1"}) as answer:
                await answer.read()
            latencies.append(time.perf_counter() - start)
            if answer.status != 200:
                raise SystemExit(f"unexpected {answer.status} from {url}")

    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(connections)))
        elapsed = time.perf_counter() - started
    return len(latencies) / elapsed, statistics.median(latencies) * 1000


def start(args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "tokenlimit", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    use_wrk = shutil.which("wrk") is not None
    ports = {name: free_port() for name in ("service", "mock", "gateway")}
    lifetime = str(int(args.rounds * 4 * (args.seconds + 1) + 60))
    with tempfile.TemporaryDirectory() as tmp:
        rules = Path(tmp) / "rules.json"
        rules.write_text(json.dumps(RULES))
        script = Path(tmp) / "post.lua"
        script.write_text(WRK_SCRIPT % (json.dumps(BODY, separators=(",", ":")), HOST))
        service = start(["serve", "--rules", str(rules), "--port", str(ports["service"])])
        mock = start(["mock-llm", "--port", str(ports["mock"]), "--duration", lifetime])
        gateway = start(["gateway", "--port", str(ports["gateway"]), "--format", "json",
                         "-u", f"http://127.0.0.1:{ports['mock']}",
                         "-s", f"http://127.0.0.1:{ports['service']}",
                         "--host-match", HOST, "--duration", lifetime])
        try:
            for port in ports.values():
                wait_listening(port, time.monotonic() + 30)
            urls = {"direct": f"http://127.0.0.1:{ports['mock']}/",
                    "gateway": f"http://127.0.0.1:{ports['gateway']}/"}
            print(f"load from {'wrk' if use_wrk else 'an aiohttp client'}, "
                  f"{args.rounds} alternating rounds of {args.seconds:g} s; medians over rounds")
            results: dict[tuple[str, int], list[tuple[float, float]]] = {}
            servers = {"gateway": gateway.pid, "service": service.pid, "mock": mock.pid}
            cpu: dict[str, dict[str, float]] = {"direct": {}, "gateway": {}}
            handled = {"direct": 0.0, "gateway": 0.0}
            for connections in (1, 16):
                for _ in range(args.rounds):
                    for name, url in urls.items():
                        before = {s: cpu_seconds(pid) for s, pid in servers.items()}
                        run = wrk_run(url, connections, args.seconds, script) if use_wrk else (
                            asyncio.run(client_run(url, connections, args.seconds)))
                        results.setdefault((name, connections), []).append(run)
                        if connections == 16:
                            handled[name] += run[0] * args.seconds
                            for server, pid in servers.items():
                                cpu[name][server] = cpu[name].get(server, 0.0) + (
                                    cpu_seconds(pid) - before[server])
            figures = {key: (statistics.median(r for r, _ in runs),
                             statistics.median(m for _, m in runs))
                       for key, runs in results.items()}
            for connections in (1, 16):
                print(f"{connections} connection{'s' if connections > 1 else ''}:")
                for name in urls:
                    rate, median = figures[(name, connections)]
                    print(f"  {name:<8} {rate:8.0f} req/s   median {median:6.2f} ms")
            print("CPU time per request (16 connections; us, user + system):")
            for name in urls:
                spent = {s: 1e6 * t / max(handled[name], 1.0) for s, t in cpu[name].items()
                         if t > 0.01 * sum(cpu[name].values())}
                print(f"  {name:<8} " + ", ".join(f"{s} {us:.0f}" for s, us in spent.items())
                      + f" (total {sum(spent.values()):.0f})")
        finally:  # the gateway first: its last reports still reach the service
            gateway.send_signal(signal.SIGTERM)
            out, _ = gateway.communicate(timeout=30)
            for process in (mock, service):
                process.send_signal(signal.SIGTERM)
                process.communicate(timeout=30)
    ratio = figures[("gateway", 16)][0] / figures[("direct", 16)][0]
    added = figures[("gateway", 1)][1] - figures[("direct", 1)][1]
    print(f"throughput through the gateway / direct (16 connections): {ratio:.2f} "
          f"(target >= {TARGET_RATIO}): {'met' if ratio >= TARGET_RATIO else 'NOT MET'}")
    print(f"median latency added by the gateway (1 connection): {added:.2f} ms "
          f"(target <= {TARGET_ADDED_MS} ms): {'met' if added <= TARGET_ADDED_MS else 'NOT MET'}")
    stats = json.loads(out.splitlines()[-1])["stats"]
    print(f"gateway counters: {stats['allowed']} allowed, {stats['reports']} reports, "
          f"{stats['report_errors']} report errors, {stats['upstream_errors']} upstream errors "
          "(allowed requests whose client wrk dropped at the end of a run are not forwarded)")


if __name__ == "__main__":
    main()
