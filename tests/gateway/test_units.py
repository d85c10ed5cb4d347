"""The gateway's pure parts: key templates, the usage reader, the WasmPlugin reader, the mock."""

from __future__ import annotations

import gzip
import itertools
import json
import random
from pathlib import Path

import jsonschema
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import SAMPLES, SHARED
from tokenlimit.cli.gateway import format_event
from tokenlimit.errors import ConfigError
from tokenlimit.gateway import (
    GatewayEvent,
    KeyTemplate,
    RequestAttributes,
    TokenDraw,
    Usage,
    UsageReader,
    build_config,
    load_plugin,
    prompt_tokens,
    render_keys,
)
from tokenlimit.sim.readers import TraceKeys

REQUEST = RequestAttributes(
    method="POST", path="/v1/chat/completions?a=1&b=2", host="dashscope.aliyuncs.com",
    headers=(("user-type", "subscriber"), ("x-request-id", "r-1"), ("x-tag", "a"),
             ("x-tag", "b"), ("user-agent", "curl/8")),
    source=("127.0.0.1", 50000), destination=("127.0.0.1", 10000))


@pytest.mark.parametrize(("template", "key"), [
    ("{{request.headers.user-type}}", "subscriber"),
    ("{{ request.headers.User-Type }}", "subscriber"),
    ("{{request.headers.missing}}", ""),
    ("{{request.headers['User-Type']}}", "subscriber"),
    ('{{ request.headers["x-tag"] }}', "a,b"),
    ("{{request.headers.x-tag}}", "a,b"),
    ("{{request.path}}", "/v1/chat/completions?a=1&b=2"),
    ("{{request.url_path}}", "/v1/chat/completions"),
    ("{{request.query}}", "a=1&b=2"),
    ("{{request.host}}", "dashscope.aliyuncs.com"),
    ("{{request.method}}", "POST"),
    ("{{request.scheme}}://{{request.protocol}}", "http://HTTP/1.1"),
    ("{{request.id}}|{{request.useragent}}|{{request.referer}}", "r-1|curl/8|"),
    ("{{source.address}} {{source.port}}", "127.0.0.1:50000 50000"),
    ("{{destination.address}}", "127.0.0.1:10000"),
    ("tier-{{request.headers.user-type}}@{{request.host}}",
     "tier-subscriber@dashscope.aliyuncs.com"),
])
def test_templates_render_envoy_attributes(template: str, key: str) -> None:
    assert KeyTemplate.parse(template).render(REQUEST) == key


@pytest.mark.parametrize("template", ["{{request.header.user-type}}", "{{request.headers.}}",
                                      "{{source.ip}}", "{{}}"])
def test_unknown_attributes_are_refused_at_parse_time(template: str) -> None:
    with pytest.raises(ConfigError, match="unknown attribute"):
        KeyTemplate.parse(template)


@given(st.text(alphabet=st.characters(blacklist_characters="{}"), max_size=40))
def test_literal_text_renders_to_itself(text: str) -> None:
    assert KeyTemplate.parse(text).render(REQUEST) == text


_TRACED = ["request.headers.a", "request.headers['B']", "request.path", "request.url_path",
           "request.query", "request.host", "request.method", "request.id", "request.useragent"]
_WORD = st.text(alphabet="aB?=/,-1", max_size=6)


@given(st.lists(st.sampled_from(_TRACED), min_size=1, max_size=4), st.lists(_WORD, max_size=5),
       st.lists(st.tuples(st.sampled_from(["a", "b", "x-request-id", "user-agent"]), _WORD),
                max_size=4), _WORD, _WORD, _WORD)
def test_a_template_means_the_same_in_the_gateway_and_in_a_trace(
        names: list[str], literals: list[str], headers: list[tuple[str, str]], path: str,
        host: str, method: str) -> None:
    padded = [*literals, *[""] * len(names)]
    template = KeyTemplate.parse("".join(f"{padded[i]}{{{{{name}}}}}"
                                         for i, name in enumerate(names)) + padded[-1])
    request = RequestAttributes(method, path, host, headers=tuple(headers))
    grouped: dict[str, str | list[str]] = {}  # a header's first value, then the rest in caps
    for name, value in headers:
        if name not in grouped:
            grouped[name] = value
        else:
            rest = grouped.setdefault(name.upper(), [])
            assert isinstance(rest, list)
            rest.append(value)
    line = {"path": path, "host": host, "method": method, "headers": grouped}
    assert TraceKeys([template]).render(line, "t.jsonl", 1) == render_keys([template], request)


SSE = (b'data: {"id":"1","choices":[{"delta":{"content":"a"}}],"usage":null}\n\n'
       b': keep-alive\r\n\r\n'
       b'data: {"id":"1","choices":[],"usage":{"prompt_tokens":11,"completion_tokens":22,'
       b'"total_tokens":33}}\r\n\r\n'
       b"data: [DONE]\n\n")


@given(st.lists(st.integers(min_value=0, max_value=len(SSE)), max_size=8))
def test_sse_usage_is_found_whatever_the_chunk_boundaries(cuts: list[int]) -> None:
    reader = UsageReader("text/event-stream; charset=utf-8", "")
    bounds = [0, *sorted(cuts), len(SSE)]
    for start, end in itertools.pairwise(bounds):
        reader.feed(SSE[start:end])
    assert reader.finish() == Usage(11, 22, 33)


@given(st.integers(min_value=1, max_value=64))
def test_gzip_json_usage_is_read_without_touching_the_bytes(size: int) -> None:
    body = gzip.compress(json.dumps({"usage": {"prompt_tokens": 1, "completion_tokens": 2}})
                         .encode())
    reader = UsageReader("application/json", "gzip")
    for i in range(0, len(body), size):
        reader.feed(body[i:i + size])
    assert reader.finish() == Usage(1, 2, 3)


@pytest.mark.parametrize(("content_type", "encoding", "body"), [
    ("application/json", "", b'{"error": {"message": "bad"}}'),
    ("application/json", "", b'{"usage": {"prompt_tokens": 1, "completion_tokens": "2"}}'),
    ("application/json", "", b'{"usage": {"prompt_tokens": true, "completion_tokens": 2}}'),
    ("application/json", "", b"not json"),
    ("application/json", "br", b'{"usage": {"prompt_tokens": 1, "completion_tokens": 2}}'),
    ("text/event-stream", "", b"data: [DONE]\n\n"),
])
def test_no_usage_means_none(content_type: str, encoding: str, body: bytes) -> None:
    reader = UsageReader(content_type, encoding)
    reader.feed(body)
    assert reader.finish() is None


@pytest.mark.skipif(not (SHARED / "schemas" / "istio-wasmplugin-crd.yaml").exists(),
                    reason="the shared Istio CRD is not present beside this checkout")
def test_sample_wasmplugin_is_valid_against_istios_crd() -> None:
    crd = yaml.safe_load((SHARED / "schemas" / "istio-wasmplugin-crd.yaml").read_text())
    schema = next(v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1")
    manifest = yaml.safe_load((SAMPLES / "wasmplugin.yaml").read_text())
    jsonschema.validate(manifest["spec"], schema["schema"]["openAPIV3Schema"]["properties"]["spec"])


def test_sample_wasmplugin_maps_to_gateway_settings() -> None:
    plugin = load_plugin(SAMPLES / "wasmplugin.yaml")
    assert (plugin.hosts, plugin.key_templates, plugin.service, plugin.fail_open) == (
        ("dashscope.aliyuncs.com",), ("{{request.headers.user-type}}",),
        "http://asm-llm-token-rate-limit-example.default.svc.cluster.local:80", True)
    config = build_config(upstream="http://127.0.0.1:9000", service="http://127.0.0.1:8080/",
                          plugin=plugin, fail_open=False)
    assert (config.service, config.hosts, config.key_templates, config.fail_open) == (
        "http://127.0.0.1:8080", ("dashscope.aliyuncs.com",),
        ["{{request.headers.user-type}}"], False)
    assert config.matches("DashScope.aliyuncs.com:443")
    assert not config.matches("dashscope.aliyuncs.com.evil")


@pytest.mark.parametrize(("text", "message"), [
    ("kind: Service\n", "p.yaml: no document of kind WasmPlugin"),
    ("kind: WasmPlugin\nspec: {}\n", "p.yaml: spec.pluginConfig: missing or not a mapping"),
    ("kind: WasmPlugin\nspec: {pluginConfig: {rateLimitKeys: []}}\n",
     "p.yaml: spec.pluginConfig.rateLimitKeys: must be a non-empty list of key templates"),
    ("kind: WasmPlugin\nspec: {pluginConfig: {rateLimitKeys: [a], matches: [{host: {}}]}}\n",
     "p.yaml: spec.pluginConfig.matches[0].host.exact: must be a non-empty string"),
    ("kind: WasmPlugin\nspec: {failStrategy: OPEN, pluginConfig: {rateLimitKeys: [a]}}\n",
     "p.yaml: spec.failStrategy: 'OPEN' is not FAIL_OPEN or FAIL_CLOSE"),
    ("kind: WasmPlugin\nspec: {pluginConfig: {rateLimitKeys: [a],"
     " rateLimitService: {service: s, port: 0}}}\n",
     "p.yaml: spec.pluginConfig.rateLimitService.port: must be a port number"),
    ("kind: WasmPlugin\nspec: [\n", "p.yaml:3: not valid YAML"),
])
def test_bad_wasmplugin_is_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_plugin(path)
    assert str(caught.value).replace(str(tmp_path) + "/", "").startswith(message)


def test_plugin_defaults_fail_close_and_every_host(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("kind: WasmPlugin\nspec: {pluginConfig: {rateLimitKeys: [k]}}\n")
    plugin = load_plugin(path)
    assert (plugin.hosts, plugin.service, plugin.fail_open) == ((), None, False)
    with pytest.raises(ConfigError, match="no rate-limit service"):
        build_config(upstream="http://127.0.0.1:1", service=None, plugin=plugin)
    assert build_config(upstream="http://127.0.0.1:1", service="http://127.0.0.1:2",
                        plugin=plugin).matches("anything.example")


def test_prompt_tokens_rule() -> None:
    assert prompt_tokens([{"role": "system", "content": ""},
                          {"role": "user", "content": "12345"},
                          {"role": "user", "content": [{"type": "text", "text": "abcd"},
                                                       {"type": "image_url"}]}]) == 4 + 6 + 5


@pytest.mark.parametrize(("spec", "values"), [
    ("60", {60}), ("3-5", {3, 4, 5}), ("7-7", {7}),
])
def test_token_draws_stay_in_range(spec: str, values: set[int]) -> None:
    draw, rng = TokenDraw.parse(spec), random.Random(1)
    assert {draw.draw(rng) for _ in range(200)} == values


def test_exponential_draw_is_seeded_with_the_mean_asked_for() -> None:
    draw = TokenDraw.parse("exp:50")
    first = [draw.draw(random.Random(3)) for _ in range(2000)]
    rng = random.Random(3)
    again = [draw.draw(rng) for _ in range(2000)]
    assert min(again) >= 1
    assert 45 <= sum(again) / len(again) <= 55
    assert len(set(first)) == 1  # a fresh generator with the same seed draws the same first value


@pytest.mark.parametrize("spec", ["", "-1", "5-3", "exp:0", "1.5", "lots"])
def test_bad_token_draws_are_refused(spec: str) -> None:
    with pytest.raises(ConfigError, match="--completion-tokens"):
        TokenDraw.parse(spec)


@pytest.mark.parametrize(("event", "line"), [
    (GatewayEvent("allowed", "POST", "/v1", "h", ("a", "b"), 200), "200 POST /v1 [a, b]"),
    (GatewayEvent("failed_open", "POST", "/", "h", ("a",), 200),
     "200 POST / [a] (service down: fail-open)"),
    (GatewayEvent("failed_closed", "POST", "/", "h", ("a",), 503),
     "503 POST / [a] (service down: fail-closed)"),
    (GatewayEvent("unmatched", "GET", "/x?y=1", "api.example", (), 404),
     "404 GET /x?y=1 (host 'api.example' not limited)"),
    (GatewayEvent("allowed", "POST", "/", "h", ("a",), None), "--- POST / [a]"),
    (GatewayEvent("report_failed", "POST", "/", "h", ("a",), None, "5 completion tokens"),
     "report FAILED [a] 5 completion tokens"),
])
def test_live_event_lines(event: GatewayEvent, line: str) -> None:
    assert format_event(event, "text", now=0.0).split(" ", 1)[1] == line
    assert json.loads(format_event(event, "json", now=1.5)) == {
        "event": event.kind, "time": 1.5, "method": event.method, "path": event.path,
        "host": event.host, "keys": list(event.keys), "status": event.status,
        "detail": event.detail}
