"""Redis as operators run it (ACL users, unix sockets, TLS, Sentinel), and secrets never shown.

Every case runs a real redis-server (or redis-server --sentinel) on loopback.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from typer.testing import CliRunner

from tests.conftest import SAMPLES, RedisServer, free_port, start_redis
from tests.service.helpers import allowed, check
from tests.service.redis_helpers import redis_call, run
from tokenlimit.cli.main import app
from tokenlimit.rules.model import Rule
from tokenlimit.service import running_service
from tokenlimit.service.runner import backend_config

pytestmark = pytest.mark.redis
RULES = (Rule(0, "team-.*", 1000, 1000, 3600, 7200),)
SECRET = "Zq9/x#P?W@:"  # every character a URL parser can trip on
runner = CliRunner()


def _lines(output: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


@pytest.mark.parametrize("url", [
    "redis://:Zq9/xPW@host:6379",
    "redis://app:Zq9/xPW@127.0.0.1:1/0",
    "redis://:Zq9?xPW@127.0.0.1:1",
    "redis://:Zq9#xPW@127.0.0.1:1",
    "rediss://:Zq9@xPW@127.0.0.1:1",
    "redis://:Zq9xPW@127.0.0.1:notaport",
    "redis://:Zq9xPW@127.0.0.1:1/notadb",
    "http://:Zq9xPW@127.0.0.1:1",
    "redis+sentinel://:Zq9xPW@127.0.0.1/",
    "redis://:Zq9%2FxPW@127.0.0.1:1",  # well-formed: the service starts, Redis is unreachable
])
def test_no_output_ever_contains_the_password(url: str) -> None:
    result = runner.invoke(app, ["serve", "--rules", str(SAMPLES / "rules.json"), "--port",
                                 str(free_port()), "--redis-url", url, "--stop-after", "0"])
    assert result.exit_code in (0, 1), result.output
    for piece in ("Zq9", "xPW", "Zq9%2FxPW"):
        assert piece not in result.output, result.output
    assert "Traceback" not in result.output


def test_the_password_stays_out_of_logs_when_redis_refuses_it() -> None:
    password_server = start_redis(password="right")
    try:
        lines: list[tuple[str, dict[str, object]]] = []
        url = f"redis://user:{quote(SECRET, safe='')}@127.0.0.1:{password_server.port}"
        backend = backend_config(redis_url=url)
        with running_service(RULES, backend=backend,
                             log=lambda event, **fields: lines.append((event, fields))
                             ) as svc, httpx.Client() as client:
            answer = check(client, svc.url, ["team-a"])
            assert (answer.status_code, answer.content) == (400, b"")
        text = repr(lines) + repr(backend) + backend.describe()
        assert "Zq9" not in text and "P?W" not in text, text
        assert lines and lines[0][0] == "check_failed"
    finally:
        password_server.stop()


def test_an_acl_user(redis_server: RedisServer) -> None:
    run(lambda: redis_call(redis_server.port, "ACL", "SETUSER", "app", "on", ">apppw", "~*",
                           "+@all"))
    backend = backend_config(redis_url=f"redis://app:apppw@127.0.0.1:{redis_server.port}/2")
    assert backend.describe() == (f"redis at 127.0.0.1:{redis_server.port} "
                                  "(db 2, user 'app', with password)")
    with running_service(RULES, backend=backend) as svc, httpx.Client() as client:
        assert allowed(check(client, svc.url, ["team-acl"]))
        assert client.get(f"{svc.url}/readyz").json() == {"status": "ready"}
    assert run(lambda: _get_in_db(redis_server.port, 2, "team-acl")) == b"1000"


async def _get_in_db(port: int, db: int, key: str) -> object:
    from tokenlimit.service.stores.resp import RespConnection

    connection = RespConnection("127.0.0.1", port, timeout=5, setup=[["SELECT", db]])
    try:
        return await connection.call("GET", key)
    finally:
        await connection.close()


def test_a_unix_socket() -> None:
    folder = Path(tempfile.mkdtemp(prefix="tokenlimit-sock-"))
    path = folder / "redis.sock"
    server = start_redis(extra=("--unixsocket", str(path), "--unixsocketperm", "700"))
    try:
        backend = backend_config(redis_url=f"unix://{path}?db=0")
        assert backend.describe() == f"redis at unix socket {path} (db 0)"
        with running_service(RULES, backend=backend) as svc, httpx.Client() as client:
            assert allowed(check(client, svc.url, ["team-unix"]))
        assert run(lambda: redis_call(server.port, "GET", "team-unix")) == b"1000"
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def sentinel(redis_server: RedisServer) -> Iterator[int]:
    folder = Path(tempfile.mkdtemp(prefix="tokenlimit-sentinel-"))
    port = free_port()
    config = folder / "sentinel.conf"
    config.write_text(f"port {port}\nbind 127.0.0.1\ndir {folder}\n"
                      f"sentinel monitor main 127.0.0.1 {redis_server.port} 1\n")
    binary = shutil.which("redis-server") or "redis-server"
    process = subprocess.Popen([binary, str(config), "--sentinel"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                    sock.sendall(b"SENTINEL get-master-addr-by-name main\r\n")
                    if str(redis_server.port).encode() in sock.recv(256):
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "redis-server --sentinel did not start"
            time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(folder, ignore_errors=True)


def test_the_master_found_through_sentinel(redis_server: RedisServer, sentinel: int) -> None:
    backend = backend_config(redis_url=f"redis+sentinel://127.0.0.1:{sentinel}/main")
    assert backend.describe() == f"redis at master 'main' of sentinels 127.0.0.1:{sentinel} (db 0)"
    with running_service(RULES, backend=backend) as svc, httpx.Client() as client:
        assert allowed(check(client, svc.url, ["team-sentinel"]))
    assert run(lambda: redis_call(redis_server.port, "GET", "team-sentinel")) == b"1000"


def test_tls(tmp_path: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    tls_port = free_port()
    server = start_redis(extra=("--tls-port", str(tls_port), "--tls-cert-file", str(cert),
                                "--tls-key-file", str(key), "--tls-ca-cert-file", str(cert),
                                "--tls-auth-clients", "no"))
    try:
        backend = backend_config(
            redis_url=f"rediss://127.0.0.1:{tls_port}/0?ssl_ca_certs={cert}")
        assert backend.describe() == f"redis at 127.0.0.1:{tls_port} (db 0, TLS)"
        with running_service(RULES, backend=backend) as svc, httpx.Client() as client:
            assert allowed(check(client, svc.url, ["team-tls"]))
        assert run(lambda: redis_call(server.port, "GET", "team-tls")) == b"1000"
    finally:
        server.stop()
