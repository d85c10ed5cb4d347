"""A real three-node Redis Cluster on loopback, started and torn down by the tests."""

from __future__ import annotations

import shutil
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.conftest import RedisServer, free_port, start_redis

RANGES = ((0, 5460), (5461, 10922), (10923, 16383))


def _command(port: int, *args: str) -> bytes:
    payload = b"*%d\r\n" % len(args) + b"".join(
        b"$%d\r\n%s\r\n" % (len(a.encode()), a.encode()) for a in args)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(payload)
        data = b""
        while not data.endswith(b"\r\n") or (data.startswith(b"$") and data.count(b"\r\n") < 2):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


@dataclass
class RedisCluster:
    nodes: list[RedisServer]

    @property
    def seed(self) -> RedisServer:
        return self.nodes[0]


@pytest.fixture(scope="module")
def redis_cluster() -> Iterator[RedisCluster]:
    """Three masters on free loopback ports, slots split evenly, state ok (or the test fails)."""
    nodes: list[RedisServer] = []
    buses: list[int] = []
    try:
        for _ in range(3):
            port, bus = free_port(), free_port()
            buses.append(bus)
            nodes.append(start_redis(port, extra=(
                "--cluster-enabled", "yes", "--cluster-port", str(bus),
                "--cluster-config-file", f"nodes-{port}.conf", "--cluster-node-timeout", "2000",
            )))
        for node, (start, end) in zip(nodes, RANGES, strict=True):
            assert _command(node.port, "CLUSTER", "ADDSLOTSRANGE", str(start),
                            str(end)).startswith(b"+OK")
        for node, bus in zip(nodes[1:], buses[1:], strict=True):
            assert _command(nodes[0].port, "CLUSTER", "MEET", "127.0.0.1", str(node.port),
                            str(bus)).startswith(b"+OK")
        deadline = time.monotonic() + 20
        while True:
            states = [_command(n.port, "CLUSTER", "INFO") for n in nodes]
            if all(b"cluster_state:ok" in s and b"cluster_known_nodes:3" in s for s in states):
                break
            if time.monotonic() > deadline:
                pytest.fail("the local Redis Cluster did not reach cluster_state:ok in 20 s")
            time.sleep(0.1)
        yield RedisCluster(nodes)
    finally:
        for node in nodes:
            node.stop()
            shutil.rmtree(node.workdir, ignore_errors=True)
