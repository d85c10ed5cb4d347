"""``loadtest https://...``: a real loopback HTTPS server with a certificate made here.

Certificates are checked by default (an unknown CA or a name the certificate lacks fails
the TLS handshake: ``tls-error``), ``--ca-cert`` trusts a CA, ``--insecure`` checks nothing.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from typer.testing import CliRunner

from tests.load.servers import AsmServiceHandler, ChatGatewayHandler, serve
from tokenlimit.cli.main import app
from tokenlimit.rules.model import Rule

RULES = [Rule(0, "regular-user.*", 300, 100, 60, 300)]  # no refill within a test
RULES_JSON = json.dumps([{"rate_limit_key_regex": "regular-user.*", "max_tokens": 300,
                          "tokens_per_fill": 100, "fill_interval_second": 60,
                          "redis_expired_seconds": 300}])
runner = CliRunner()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_pem(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def _server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)  # the name "localhost" only
    return context


@pytest.fixture
def https_service(ca: trustme.CA) -> Iterator[tuple[str, list[str]]]:
    with serve(AsmServiceHandler, RULES, _server_context(ca), host="localhost") as served:
        yield served


def _json(*args: str) -> tuple[int, dict[str, object], str]:
    result = runner.invoke(app, ["loadtest", *args, "--format", "json"])
    data = json.loads(result.stdout) if result.stdout.startswith("{") else {}
    return result.exit_code, data, result.stderr


def test_a_trusted_ca_gives_exact_answers_and_conformance(
        https_service: tuple[str, list[str]], ca_pem: str) -> None:
    url, calls = https_service
    code, data, _ = _json(url, "--mode", "service", "--ca-cert", ca_pem, "-n", "40",
                          "-k", "regular-user:1", "--tokens", "60", "--latency", "0",
                          "--config-json", RULES_JSON, "--unique-keys")
    assert code == 0
    assert data["requests"] == {"sent": 40, "completed": 40, "answered": 40, "allowed": 2,
                                "limited": 38, "errors": 0}
    assert (calls.count("check"), calls.count("report")) == (40, 2)
    conformance = data["conformance"]
    assert isinstance(conformance, dict) and conformance["over_admitted"] == 0
    assert conformance["under_admitted"] == 0


def test_certificates_are_checked_by_default(https_service: tuple[str, list[str]]) -> None:
    url, calls = https_service
    code, data, stderr = _json(url, "--mode", "service", "-n", "3")
    assert code == 1
    assert data["errors"] == {"tls-error": 3} and calls == []
    assert stderr == f"error: {url}: no request was answered (tls-error 3)\n"


def test_a_name_the_certificate_lacks_fails_even_with_its_ca(
        https_service: tuple[str, list[str]], ca_pem: str) -> None:
    url, calls = https_service
    by_address = url.replace("localhost", "127.0.0.1")
    code, data, _ = _json(by_address, "--mode", "service", "--ca-cert", ca_pem, "-n", "2")
    assert (code, data["errors"], calls) == (1, {"tls-error": 2}, [])


def test_insecure_checks_nothing(https_service: tuple[str, list[str]]) -> None:
    url, calls = https_service
    by_address = url.replace("localhost", "127.0.0.1")
    code, data, _ = _json(by_address, "--mode", "service", "--insecure", "-n", "5",
                          "--unique-keys")
    assert code == 0 and calls.count("check") == 5
    requests = data["requests"]
    assert isinstance(requests, dict) and requests["answered"] == 5


def test_a_gateway_over_https_streams(ca: trustme.CA, ca_pem: str) -> None:
    with serve(ChatGatewayHandler, RULES, _server_context(ca), host="localhost") as (url, _):
        code, data, _ = _json(url, "--ca-cert", ca_pem, "--stream", "-n", "6",
                              "--unique-keys")
    assert code == 0
    requests, ttfb = data["requests"], data["ttfb_ms"]
    assert isinstance(requests, dict) and requests["answered"] == 6
    assert isinstance(ttfb, dict) and ttfb["count"] == 6


@pytest.mark.parametrize(("args", "message"), [
    (["http://127.0.0.1:9", "--insecure"], "only with an https:// target"),
    (["http://127.0.0.1:9", "--ca-cert", "x.pem"], "only with an https:// target"),
    (["https://127.0.0.1:9", "--insecure", "--ca-cert", "x.pem"], "give one of them"),
    (["ftp://127.0.0.1:9"], "give an http:// or https:// URL"),
])
def test_tls_options_out_of_place_are_usage_errors(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["loadtest", *args])
    assert result.exit_code == 2
    assert message in " ".join(result.stderr.translate({ord(c): " " for c in "│╭╮╰╯─"}).split())


def test_a_missing_ca_file_is_one_line_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    result = runner.invoke(app, ["loadtest", "https://127.0.0.1:9", "--ca-cert", str(missing)])
    assert result.exit_code == 1
    assert result.stderr == (f"error: {missing}: cannot read a PEM certificate: "
                             "No such file or directory\n")
