"""What the gateway costs: the same requests straight to the mock LLM and through the gateway.

Starts ``tokenlimit up`` as a subprocess (service, mock and gateway on loopback ports, rules with
a budget nothing exhausts), then sends the same bounded batches to the mock directly and via the
gateway (check + forward + asynchronous report), sequentially and with concurrency, and prints
requests per second, p50 / p99 latency and the ratios. Runs in a few seconds.

    .venv/bin/python bench/gateway_overhead.py [--requests 400] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

BODY = {"messages": [{"role": "user", "content": "Who are you?"}]}
RULES = [{"rate_limit_key_regex": "bench-.*", "max_tokens": 10**12, "tokens_per_fill": 10**12,
          "fill_interval_second": 60, "redis_expired_seconds": 600}]


async def batch(url: str, host: str, total: int, concurrency: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    queue = iter(range(total))

    async def worker(client: httpx.AsyncClient) -> None:
        for i in queue:
            start = time.perf_counter()
            answer = await client.post(url, json=BODY, headers={
                "host": host, "user-type": f"bench-{i % 50}"})
            latencies.append(time.perf_counter() - start)
            if answer.status_code != 200:
                raise SystemExit(f"unexpected {answer.status_code}: {answer.text[:80]}")

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=10) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        return time.perf_counter() - started, latencies


def figures(name: str, elapsed: float, latencies: list[float]) -> float:
    rate = len(latencies) / elapsed
    cuts = statistics.quantiles(latencies, n=100)
    print(f"  {name:<9} {rate:8.0f} req/s   p50 {cuts[49] * 1000:6.2f} ms   "
          f"p99 {cuts[98] * 1000:6.2f} ms")
    return rate


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
             "--duration", "120", "--gateway-port", "0", "--service-port", "0",
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
        finally:
            process.send_signal(signal.SIGTERM)
            out, _ = process.communicate(timeout=30)
    print("gateway counters:", json.loads(out.splitlines()[-1])["gateway"])


if __name__ == "__main__":
    main()
