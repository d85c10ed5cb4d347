"""What the gateway costs: the same requests straight to the mock LLM and through the gateway.

Starts ``tokenlimit up`` as a subprocess (service, mock and gateway on loopback ports, rules with
a budget nothing exhausts), then sends the same bounded batches to the mock directly and via the
gateway (check + forward + asynchronous report), sequentially and with concurrency, and prints
requests per second, p50 / p99 latency and the ratios; then the same with ``wrk`` (2 s per run)
when it is installed, since a C client measures the servers rather than the client. Runs in
about twenty seconds.

    .venv/bin/python bench/gateway_overhead.py [--requests 400] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

BODY = {"messages": [{"role": "user", "content": "Who are you?"}]}
RULES = [{"rate_limit_key_regex": "bench-.*", "max_tokens": 10**12, "tokens_per_fill": 10**12,
          "fill_interval_second": 60, "redis_expired_seconds": 600}]


async def batch(url: str, host: str, total: int, concurrency: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    queue = iter(range(total))

    async def worker(client: aiohttp.ClientSession) -> None:
        for i in queue:
            start = time.perf_counter()
            async with client.post(url, json=BODY, headers={
                    "host": host, "user-type": f"bench-{i % 50}"}) as answer:
                text = await answer.text()
            latencies.append(time.perf_counter() - start)
            if answer.status != 200:
                raise SystemExit(f"unexpected {answer.status}: {text[:80]}")

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        return time.perf_counter() - started, latencies


def figures(name: str, elapsed: float, latencies: list[float]) -> float:
    rate = len(latencies) / elapsed
    cuts = statistics.quantiles(latencies, n=100)
    print(f"  {name:<9} {rate:8.0f} req/s   p50 {cuts[49] * 1000:6.2f} ms   "
          f"p99 {cuts[98] * 1000:6.2f} ms")
    return rate


WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = '{"messages":[{"role":"user","content":"Who are you?"}]}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Host"] = "%s"
wrk.headers["user-type"] = "bench-1"
"""


def wrk_rate(url: str, host: str, connections: int, script: Path) -> float:
    script.write_text(WRK_SCRIPT % host)
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", "-d2s", "-s", str(script), url],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("Requests/sec:"))
    return float(line.split()[1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rules = Path(tmp) / "rules.json"
        rules.write_text(json.dumps(RULES))
        process = subprocess.Popen(
            [sys.executable, "-m", "tokenlimit", "up", "--rules", str(rules), "--format", "json",
             "--duration", "120", "--hide-requests", "--gateway-port", "0", "--service-port", "0",
             "--mock-port", "0"], stdout=subprocess.PIPE, text=True)
        try:
            assert process.stdout is not None
            urls = json.loads(process.stdout.readline())
            host = urls["host_match"][0]
            for concurrency in (1, args.concurrency):
                print(f"{args.requests} requests, concurrency {concurrency}:")
                direct = figures("direct", *asyncio.run(batch(
                    urls["mock_llm"] + "/", host, args.requests, concurrency)))
                proxied = figures("gateway", *asyncio.run(batch(
                    urls["gateway"] + "/", host, args.requests, concurrency)))
                print(f"  gateway / direct throughput: {proxied / direct:.2f}")
            if shutil.which("wrk"):
                for connections in (1, args.concurrency):
                    script = Path(tmp) / "post.lua"
                    direct = wrk_rate(urls["mock_llm"] + "/", host, connections, script)
                    proxied = wrk_rate(urls["gateway"] + "/", host, connections, script)
                    print(f"wrk, {connections} connections: direct {direct:.0f} req/s, "
                          f"gateway {proxied:.0f} req/s, ratio {proxied / direct:.2f}")
        finally:
            process.send_signal(signal.SIGTERM)
            out, _ = process.communicate(timeout=30)
    print("gateway counters:", json.loads(out.splitlines()[-1])["gateway"])


if __name__ == "__main__":
    main()
