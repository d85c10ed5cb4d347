"""The test harness itself: the Redis fixture gives a real, empty, working server."""

from __future__ import annotations

import socket

import pytest

from tests.conftest import RedisServer


@pytest.mark.redis
def test_redis_fixture_starts_a_real_empty_server(redis_server: RedisServer) -> None:
    with socket.create_connection((redis_server.host, redis_server.port), timeout=2) as sock:
        sock.sendall(b"SET probe 41\r\nINCR probe\r\nDBSIZE\r\n")
        data = b""
        while data.count(b"\r\n") < 3:
            data += sock.recv(256)
    assert data == b"+OK\r\n:42\r\n:1\r\n"


@pytest.mark.redis
def test_redis_fixture_stops_the_server(redis_server: RedisServer) -> None:
    redis_server.stop()
    with pytest.raises(OSError):
        socket.create_connection((redis_server.host, redis_server.port), timeout=1).close()
