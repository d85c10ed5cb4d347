"""``tokenlimit serve`` probed as an attacker and an operator would: each probe prints its figure.

Every probe starts its own ``tokenlimit serve`` (and ``redis-server`` where needed) on free
loopback ports, sends a bounded number of requests, and stops everything. Sizes are arguments:
``tests/service/test_probes.py`` runs them small (seconds), this script runs them at the issue's
sizes.

1. ``unmatched-keys``: requests whose 60 KB keys match no rule; RSS before and after.
2. ``expiry``: many keys with a 1 s TTL, in rounds; RSS after each round (it must stay flat).
3. ``graceful-stop``: requests in flight (Redis paused) when SIGTERM arrives; how many answered.
4. ``pipelining``: 4 connections pipelining thousands of checks; errors, and the latency of a
   normal client meanwhile.
5. ``slow-clients``: connections that never finish their request; when they are closed, and
   a normal client's latency meanwhile.
6. ``descriptors``: more connections than file descriptors: one ``accept_failing`` log line,
   and service again once they close.
7. ``big-heads``: hundreds of clients holding most of a 1 MiB head each, plus checks whose
   60 KB keys match a rule (the memory backend stores them up to ``--max-memory-mb``): RSS.

    .venv/bin/python bench/serve_probes.py [--probe NAME] [--small]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.serve import free_port, wait_port  # noqa: E402

RULES = [{"rate_limit_key_regex": "^team-", "max_tokens": 10**12, "tokens_per_fill": 10**12,
          "fill_interval_second": 60, "redis_expired_seconds": 600},
         {"rate_limit_key_regex": "^short-", "max_tokens": 100, "tokens_per_fill": 100,
          "fill_interval_second": 60, "redis_expired_seconds": 1}]
ALLOW = b'{"allow":true,"description":"ok"}'


def rss_mb(pid: int) -> float:
    """Resident memory of a process, in MB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class Service:
    """A running ``tokenlimit serve`` subprocess."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def events(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.log.read_text().splitlines()
                if line.startswith("{")]


@contextmanager
def redis_server() -> Iterator[int]:
    workdir = Path(tempfile.mkdtemp(prefix="tokenlimit-probe-redis-"))
    port = free_port()
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        yield port
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


@contextmanager
def service(*options: str, redis_port: int | None = None,
            nofile: int | None = None) -> Iterator[Service]:
    workdir = Path(tempfile.mkdtemp(prefix="tokenlimit-probe-"))
    rules = workdir / "rules.json"
    rules.write_text(json.dumps(RULES))
    port = free_port()
    log = workdir / "log"
    args = [sys.executable, "-m", "tokenlimit", "serve", "--rules", str(rules), "--port",
            str(port), "--stop-after", "300", *options]
    if redis_port is not None:
        args += ["--redis-url", f"redis://127.0.0.1:{redis_port}"]
    env = {k: v for k, v in os.environ.items() if k != "REDIS_ADDRESS"}
    with log.open("w") as out:
        limit = None if nofile is None else (
            lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile)))
        process = subprocess.Popen(args, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                   env={**env, "PYTHONPATH": str(REPO)}, preexec_fn=limit)
    try:
        wait_port(port)
        yield Service(process, port, log)
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def check_request(key: str) -> bytes:
    return (f'GET /ratelimit?ratelimit_keys=["{key}"] HTTP/1.1\r\nHost: rl\r\n\r\n').encode()


def pipeline(port: int, requests: list[bytes], timeout: float = 60) -> list[int]:
    """Send ``requests`` on one connection, pipelined; the status of every answer."""
    statuses: list[int] = []
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sender = threading.Thread(target=lambda: sock.sendall(b"".join(requests)))
        sender.start()
        buffer = b""
        while len(statuses) < len(requests):
            chunk = sock.recv(1 << 18)
            if not chunk:
                break
            buffer += chunk
            while True:
                end = buffer.find(b"\r\n\r\n")
                if end < 0:
                    break
                head = buffer[:end]
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                if len(buffer) < end + 4 + length:
                    break
                statuses.append(int(head.split(b" ")[1]))
                buffer = buffer[end + 4 + length:]
        sender.join()
    return statuses


def timed_check(port: int, key: str = "team-normal") -> float:
    """One check on a fresh connection, as a normal client does; seconds it took."""
    started = time.perf_counter()
    assert pipeline(port, [check_request(key)], timeout=30) == [200]
    return time.perf_counter() - started


def memory_keys(port: int) -> float:
    """The memory store's live keys, from ``/metrics``."""
    request = b"GET /metrics HTTP/1.1\r\nHost: rl\r\nConnection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(1 << 16):
            data += chunk
    for line in data.decode().splitlines():
        if line.startswith("tokenlimit_memory_keys "):
            return float(line.split()[1])
    return float("nan")


# 1
def probe_unmatched_keys(requests: int = 5000, key_kb: int = 60) -> dict[str, float]:
    """RSS before and after ``requests`` checks whose keys match no rule."""
    with service() as svc:
        before = rss_mb(svc.process.pid)
        per_connection = requests // 4
        threads = []
        for worker in range(4):
            batch = [check_request(f"x{worker}-{i}-" + "u" * (key_kb * 1024))
                     for i in range(per_connection)]
            threads.append(threading.Thread(target=pipeline, args=(svc.port, batch)))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        timed_check(svc.port)
        after = rss_mb(svc.process.pid)
    return {"requests": requests, "key_kb": key_kb, "rss_before_mb": before,
            "rss_after_mb": after}


# 2
def probe_expiry(keys: int = 200_000, rounds: int = 3) -> dict[str, float]:
    """RSS after each round of ``keys`` fresh keys with a 1 s TTL (memory backend)."""
    figures: dict[str, float] = {"keys_per_round": keys}
    with service() as svc:
        figures["rss_start_mb"] = rss_mb(svc.process.pid)
        for round_ in range(rounds):
            batch = [check_request(f"short-{round_}-{i}") for i in range(keys)]
            statuses = pipeline(svc.port, batch, timeout=120)
            assert statuses.count(200) == keys, statuses[:5]
            figures[f"rss_round{round_ + 1}_mb"] = rss_mb(svc.process.pid)
            figures[f"keys_round{round_ + 1}"] = memory_keys(svc.port)
            time.sleep(2.5)  # past the TTL: the sweeper frees them
        figures["rss_end_mb"] = rss_mb(svc.process.pid)
        figures["keys_end"] = memory_keys(svc.port)
    return figures


# 3
def probe_graceful_stop(in_flight: int = 20) -> dict[str, float]:
    """Requests in flight when SIGTERM arrives: how many get their answer."""
    with redis_server() as redis_port, service("--redis-timeout", "10", "--stop-grace", "8",
                                               redis_port=redis_port) as svc:
        timed_check(svc.port)  # connected and scripts loaded
        with socket.create_connection(("127.0.0.1", redis_port), timeout=5) as admin:
            admin.sendall(b"CLIENT PAUSE 1500 WRITE\r\n")
            assert admin.recv(64).startswith(b"+OK")
        results: list[list[int]] = []
        threads = [threading.Thread(target=lambda i=i: results.append(
            pipeline(svc.port, [check_request(f"team-stop-{i}")], timeout=30)))
            for i in range(in_flight)]
        for thread in threads:
            thread.start()
        time.sleep(0.5)  # all sent, all waiting on the paused Redis
        started = time.monotonic()
        svc.process.send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join()
        svc.process.wait(20)
        exited = time.monotonic() - started
        answered = sum(1 for statuses in results if statuses == [200])
        stopped = [e for e in svc.events() if e["event"] == "stopped"]
    return {"in_flight": in_flight, "answered": answered, "exit_seconds": exited,
            "exit_code": svc.process.returncode,
            "unanswered_logged": float(stopped[0]["unanswered"]) if stopped else -1}  # type: ignore[arg-type]


# 4
def probe_pipelining(connections: int = 4, checks: int = 20_000) -> dict[str, float]:
    """``connections`` clients pipelining ``checks`` each (Redis backend): errors, and the
    latency of a normal client during the flood."""
    with redis_server() as redis_port, service(redis_port=redis_port) as svc:
        timed_check(svc.port)
        results: list[list[int]] = []
        threads = [threading.Thread(target=lambda c=c: results.append(pipeline(
            svc.port, [check_request(f"team-flood-{c}")] * checks, timeout=120)))
            for c in range(connections)]
        for thread in threads:
            thread.start()
        normal: list[float] = []
        while any(thread.is_alive() for thread in threads):
            normal.append(timed_check(svc.port))
            time.sleep(0.05)
        for thread in threads:
            thread.join()
        answers = [status for statuses in results for status in statuses]
    normal.sort()
    return {"flood_requests": connections * checks, "answered": len(answers),
            "non_200": sum(1 for s in answers if s != 200),
            "normal_client_checks": len(normal),
            "normal_p50_ms": 1000 * normal[len(normal) // 2] if normal else float("nan"),
            "normal_max_ms": 1000 * normal[-1] if normal else float("nan")}


# 5
def probe_slow_clients(slow: int = 200, request_timeout: float = 2.0) -> dict[str, float]:
    """``slow`` connections that send half a request head and stop: how long until the
    service closes them, and a normal client's latency meanwhile."""
    with service("--request-timeout", str(request_timeout)) as svc:
        sockets = []
        for _ in range(slow):
            sock = socket.create_connection(("127.0.0.1", svc.port), timeout=30)
            sock.sendall(b"GET /ratelimit?ratelimit_keys=[] HTTP/1.1\r\nHost: r")
            sockets.append(sock)
        started = time.monotonic()
        normal = [timed_check(svc.port) for _ in range(5)]
        closed_after = []
        for sock in sockets:
            sock.settimeout(request_timeout + 10)
            with suppress(OSError):
                sock.recv(64)
            closed_after.append(time.monotonic() - started)
            sock.close()
    return {"slow_connections": slow, "request_timeout_s": request_timeout,
            "all_closed_after_s": max(closed_after), "normal_max_ms": 1000 * max(normal)}


# 7
def probe_big_heads(connections: int = 300, head_kb: int = 900,
                    key_kb: int = 60, checks: int = 3000) -> dict[str, float]:
    """Memory under two hostile loads at once: ``connections`` clients each sending most of a
    ``head_kb`` KiB request head and never finishing it, and ``checks`` checks whose 60 KB keys
    match a rule (stored until the memory backend's limit): RSS, and a normal client."""
    with service("--request-timeout", "20") as svc:
        before = rss_mb(svc.process.pid)
        sockets = []
        for _ in range(connections):
            sock = socket.create_connection(("127.0.0.1", svc.port), timeout=30)
            sock.setblocking(False)
            with suppress(BlockingIOError):
                sock.send(b"GET /ratelimit?pad=" + b"p" * (head_kb * 1024))
            sockets.append(sock)
        batch = [check_request(f"team-{i}-" + "k" * (key_kb * 1024)) for i in range(checks)]
        statuses = pipeline(svc.port, batch, timeout=120)
        time.sleep(1.0)
        peak = rss_mb(svc.process.pid)
        normal = timed_check(svc.port, "team-normal-client")
        for sock in sockets:
            sock.close()
    return {"connections": connections, "head_kb": head_kb, "stored_checks": checks,
            "refused_checks": statuses.count(400), "rss_before_mb": before, "rss_mb": peak,
            "normal_ms": 1000 * normal}


# 6
def probe_descriptors(limit: int = 64, connections: int = 120) -> dict[str, float]:
    """More connections than file descriptors: the service says so (once), and serves again
    once they are gone."""
    with service(nofile=limit) as svc:
        sockets = [socket.create_connection(("127.0.0.1", svc.port), timeout=5)
                   for _ in range(connections)]
        time.sleep(2.5)  # the service looks once a second
        for sock in sockets:
            sock.close()
        time.sleep(1.5)
        normal = timed_check(svc.port)
        lines = [e for e in svc.events() if e["event"] == "accept_failing"]
    return {"nofile": limit, "connections": connections, "accept_failing_lines": len(lines),
            "normal_after_ms": 1000 * normal}


PROBES = {
    "unmatched-keys": (probe_unmatched_keys, {}, {"requests": 400}),
    "expiry": (probe_expiry, {}, {"keys": 20_000, "rounds": 3}),
    "graceful-stop": (probe_graceful_stop, {}, {"in_flight": 10}),
    "pipelining": (probe_pipelining, {}, {"checks": 2000}),
    "slow-clients": (probe_slow_clients, {}, {"slow": 50, "request_timeout": 1.0}),
    "descriptors": (probe_descriptors, {}, {}),
    "big-heads": (probe_big_heads, {}, {"connections": 100, "checks": 1000}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--probe", choices=sorted(PROBES), action="append")
    parser.add_argument("--small", action="store_true", help="the sizes the tests use")
    args = parser.parse_args()
    for name in args.probe or list(PROBES):
        function, full, small = PROBES[name]
        figures = function(**(small if args.small else full))  # type: ignore[operator]
        shown = "  ".join(f"{key} {value:.1f}" if isinstance(value, float) else f"{key} {value}"
                          for key, value in figures.items())
        print(f"{name:15s} {shown}", flush=True)


if __name__ == "__main__":
    main()
