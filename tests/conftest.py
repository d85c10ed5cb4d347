"""Shared fixtures: a throwaway redis-server on a free loopback port, the real CLI."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

# A shared 2-core machine (and CI) can be slow for a moment: no per-example deadline, no
# "too slow" health check; correctness is what the properties test.
settings.register_profile(
    "tokenlimit", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True)
settings.load_profile("tokenlimit")

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "samples"
# The project's shared reference data sits beside the main checkout (/work/shared); a git
# worktree elsewhere (/work/wt/NAME) finds it further up, instead of skipping its tests.
SHARED = next((up / "shared" for up in REPO.parents if (up / "shared" / "schemas").is_dir()),
              REPO.parent / "shared")


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RedisServer:
    host: str
    port: int
    process: subprocess.Popen[bytes]
    workdir: str
    password: str | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/0"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def start_redis(port: int | None = None, *, password: str | None = None,
                extra: tuple[str, ...] = ()) -> RedisServer:
    """Start redis-server on 127.0.0.1 with no persistence; wait until it answers PING."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed: run scripts/test, which installs it")
    port = port or free_port()
    workdir = tempfile.mkdtemp(prefix="tokenlimit-redis-")
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", workdir, "--protected-mode", "no", *extra]
    if password:
        args += ["--requirepass", password]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = RedisServer("127.0.0.1", port, process, workdir, password)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"redis-server exited with status {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                if password:
                    sock.sendall(f"AUTH {password}\r\n".encode())
                    sock.recv(64)
                sock.sendall(b"PING\r\n")
                if sock.recv(64).startswith(b"+PONG"):
                    return server
        except OSError:
            pass
        time.sleep(0.05)
    server.stop()
    pytest.fail("redis-server did not answer PING within 10 s")


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A fresh, empty redis-server for one test (tests using it carry @pytest.mark.redis)."""
    server = start_redis()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def dask_scheduler() -> Iterator[str]:
    """A local Dask cluster (two worker processes) for the test module: its address."""
    distributed = pytest.importorskip("distributed")
    cluster: Any = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                            dashboard_address=None)
    try:
        yield str(cluster.scheduler_address)
    finally:
        cluster.close()
