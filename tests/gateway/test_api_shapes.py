"""Answers as real upstreams send them, through the gateway: OpenAI's other endpoints and
compressed answers, each charged what it generated, over real loopback sockets (found by field
QA)."""

from __future__ import annotations

import asyncio
import gzip
import json
import zlib
from typing import Any

import httpx
import pytest
import zstandard

from tests.gateway.conftest import FakeService
from tests.gateway.test_charges import HOST, gateway_over, roomy
from tests.gateway.test_client import RawServer
from tokenlimit.gateway import LOOPBACK, BackgroundServers, Gateway, Listener, bind, build_config

EMBEDDING = {"object": "list", "model": "text-embedding-3-small",
             "data": [{"object": "embedding", "index": 0, "embedding": [0.0123456789] * 1536}],
             "usage": {"prompt_tokens": 8, "total_tokens": 8}}
MODELS = {"object": "list", "data": [{"id": f"model-{i}", "object": "model", "created": 1,
                                      "owned_by": "system"} for i in range(50)]}
LEGACY = {"id": "cmpl-1", "object": "text_completion", "model": "gpt-3.5-turbo-instruct",
          "choices": [{"index": 0, "text": "abcd" * 9, "logprobs": None,
                       "finish_reason": "stop"}]}  # no usage: an upstream that leaves it out


class CannedUpstream:
    """Answers each path with a fixed JSON body, or a legacy completion stream."""

    def __init__(self, bodies: dict[str, Any]) -> None:
        self.bodies = bodies

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await receive()
        if scope["path"] == "/v1/completions/stream":
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/event-stream")]})
            for i in range(7):
                chunk = {"object": "text_completion", "choices": [{"index": 0, "text": f"t{i}"}]}
                await send({"type": "http.response.body", "more_body": True,
                            "body": f"data: {json.dumps(chunk)}\n\n".encode()})
            await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})
            return
        body = json.dumps(self.bodies[scope["path"]]).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


@pytest.mark.parametrize(("method", "path", "report"), [
    # the usage has no completion_tokens: none were generated (before: 5,412 were charged, the
    # estimate of the whole 21 KB body)
    ("POST", "/v1/embeddings", {"prompt_tokens": 8, "completion_tokens": 0, "total_tokens": 8}),
    # JSON that is no completion generated nothing (before: 880 tokens for listing models)
    ("GET", "/v1/models", None),
    # a legacy completion without usage: ceil(36 / 4) of its text (before: nothing at all)
    ("POST", "/v1/completions", {"prompt_tokens": 0, "completion_tokens": 9, "total_tokens": 9}),
    # its stream: one token per chunk carrying text (before: nothing at all)
    ("POST", "/v1/completions/stream",
     {"prompt_tokens": 0, "completion_tokens": 7, "total_tokens": 7}),
])
def test_other_endpoints_are_charged_what_they_generated(
        method: str, path: str, report: dict[str, int] | None) -> None:
    service = FakeService(roomy())
    upstream = CannedUpstream({"/v1/embeddings": EMBEDDING, "/v1/models": MODELS,
                               "/v1/completions": LEGACY})
    servers, gateway = gateway_over(upstream, service)
    try:
        body = None if method == "GET" else json.dumps({"model": "m", "input": "hi"})
        answer = httpx.request(method, servers.listeners[2].url + path, content=body,
                               timeout=10, headers={"host": HOST, "user-type": "user-1"})
        servers.call(gateway.drain())
    finally:
        servers.stop()
    assert answer.status_code == 200
    expected = [] if report is None else [{"ratelimit_keys": ["user-1"], **report}]
    assert service.reports == expected


def _raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


ENCODINGS = {
    "gzip": gzip.compress,
    "deflate": zlib.compress,  # zlib-wrapped, as RFC 9110 says
    "deflate-raw": _raw_deflate,  # as some servers send "deflate"
    "zstd": lambda data: zstandard.ZstdCompressor().compress(data),
}


class CompressedUpstream:
    """A chat answer (JSON or a stream) with usage, compressed, sent 7 bytes at a time."""

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        request = json.loads((await receive())["body"])
        usage = {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
        if request.get("stream"):
            kind = b"text/event-stream"
            body = (b'data: {"choices":[{"delta":{"content":"a"}}],"usage":null}\r\n\r\n'
                    b'data: {"choices":[],"usage":' + json.dumps(usage).encode() + b"}\r\n\r\n"
                    b"data: [DONE]\r\n\r\n")
        else:
            kind = b"application/json"
            body = json.dumps({"choices": [{"message": {"content": "abcd" * 40}}],
                               "usage": usage}).encode()
        packed = ENCODINGS[self.encoding](body)
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", kind), (b"content-encoding", self.encoding.split("-")[0].encode())]})
        for start in range(0, len(packed), 7):
            await send({"type": "http.response.body", "body": packed[start:start + 7],
                        "more_body": True})
        await send({"type": "http.response.body", "body": b""})


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
def test_compressed_answers_are_charged_their_usage(encoding: str, stream: bool) -> None:
    # zstd: httpx (so the openai SDK) asks for it wherever zstandard is installed, as it is
    # beside tokenlimit; before, such answers and raw deflate were charged an estimate of
    # their compressed bytes (24 and 27 tokens for the JSON answer) instead of their usage
    service = FakeService(roomy())
    servers, gateway = gateway_over(CompressedUpstream(encoding), service)
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": stream,
            "stream_options": {"include_usage": True}}
    try:
        answer = httpx.post(servers.listeners[2].url + "/v1/chat/completions", json=body,
                            timeout=10, headers={"host": HOST, "user-type": "user-1"})
        servers.call(gateway.drain())
    finally:
        servers.stop()
    assert answer.status_code == 200
    assert service.reports == [{"ratelimit_keys": ["user-1"], "prompt_tokens": 3,
                                "completion_tokens": 4, "total_tokens": 7}]
    assert gateway.stats.estimated == 0


class CutStream:
    """A stream with CRLF line ends and the usage event, sent in two parts cut where the
    request's ``x-cut`` header says."""

    STREAM = (b'data: {"choices":[{"delta":{"content":"a"}}],"usage":null}\r\n\r\n'
              b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,'
              b'"total_tokens":7}}\r\n\r\n'
              b"data: [DONE]\r\n\r\n")

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await receive()
        cut = int(dict(scope["headers"])[b"x-cut"])
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})
        await send({"type": "http.response.body", "body": self.STREAM[:cut], "more_body": True})
        await asyncio.sleep(0.01)  # two reads for the gateway
        await send({"type": "http.response.body", "body": self.STREAM[cut:]})


def test_a_crlf_stream_cut_anywhere_reaches_the_client_without_the_added_usage_event() -> None:
    # cut between the CR and the LF that end the usage event, the client got an extra "\n"
    service = FakeService(roomy())
    servers, gateway = gateway_over(CutStream(), service)
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    expected = CutStream.STREAM.replace(CutStream.STREAM.split(b"\r\n\r\n")[1] + b"\r\n\r\n", b"")
    got = {}
    try:
        with httpx.Client(headers={"host": HOST, "user-type": "user-1"}, timeout=10) as client:
            for cut in range(1, len(CutStream.STREAM)):
                answer = client.post(servers.listeners[2].url + "/v1/chat/completions",
                                     json=body, headers={"x-cut": str(cut)})
                got[cut] = answer.content
        servers.call(gateway.drain())
    finally:
        servers.stop()
    assert {cut: text for cut, text in got.items() if text != expected} == {}
    assert len(service.reports) == len(CutStream.STREAM) - 1


RESPONSES_USAGE = {"input_tokens": 5, "input_tokens_details": {"cached_tokens": 0},
                   "output_tokens": 9, "output_tokens_details": {"reasoning_tokens": 0},
                   "total_tokens": 14}


class ResponsesUpstream:
    """OpenAI's Responses API (``POST /v1/responses``): a JSON answer, or its event stream
    with the usage in ``response.completed``; it records the bodies it was sent."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = (await receive())["body"]
        self.bodies.append(body)
        done = {"id": "resp_1", "object": "response", "status": "completed",
                "output": [{"type": "message", "role": "assistant", "content": [
                    {"type": "output_text", "text": "Hi there", "annotations": []}]}],
                "usage": RESPONSES_USAGE}
        if not json.loads(body).get("stream"):
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": json.dumps(done).encode()})
            return
        events = [
            {"type": "response.created", "sequence_number": 0,
             "response": {**done, "status": "in_progress", "output": [], "usage": None}},
            {"type": "response.output_text.delta", "sequence_number": 1, "item_id": "msg_1",
             "output_index": 0, "content_index": 0, "delta": "Hi"},
            {"type": "response.output_text.delta", "sequence_number": 2, "item_id": "msg_1",
             "output_index": 0, "content_index": 0, "delta": " there"},
            {"type": "response.completed", "sequence_number": 3, "response": done},
        ]
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream; charset=utf-8")]})
        for event in events:
            text = f"event: {event['type']}\ndata: {json.dumps(event)}\n\n"
            await send({"type": "http.response.body", "body": text.encode(), "more_body": True})
        await send({"type": "http.response.body", "body": b""})


@pytest.mark.parametrize("stream", [False, True])
def test_the_responses_api_is_charged_its_usage_and_its_request_is_not_changed(
        stream: bool) -> None:
    # before: a stream was sent on with "stream_options": {"include_usage": true}, which the
    # Responses API does not document, and neither it nor a JSON answer was charged its usage
    service = FakeService(roomy())
    upstream = ResponsesUpstream()
    servers, gateway = gateway_over(upstream, service)
    sent = json.dumps({"input": "hi", "model": "gpt-4.1", "stream": stream}).encode()
    try:
        answer = httpx.post(servers.listeners[2].url + "/v1/responses", content=sent,
                            timeout=10, headers={"host": HOST, "user-type": "user-1",
                                                 "content-type": "application/json"})
        servers.call(gateway.drain())
    finally:
        servers.stop()
    assert answer.status_code == 200
    assert upstream.bodies == [sent]
    assert service.reports == [{"ratelimit_keys": ["user-1"], "prompt_tokens": 5,
                                "completion_tokens": 9, "total_tokens": 14}]
    if stream:
        assert answer.text.count("event: ") == 4


@pytest.mark.parametrize("stream", [False, True])
def test_an_answer_that_ends_by_closing_the_connection_is_whole(stream: bool) -> None:
    # an HTTP/1.0 upstream (Python's http.server, the usual hand-written mock) sends no length
    # and closes at the end; before, that close was taken for a break: the client's answer was
    # cut off (curl: "transfer closed with outstanding read data remaining", exit 18)
    usage = b'{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}'
    if stream:
        kind = b"text/event-stream"
        body = (b'data: {"choices":[{"delta":{"content":"hi"}}],"usage":null}\n\n'
                b'data: {"choices":[],"usage":' + usage + b"}\n\ndata: [DONE]\n\n")
        shown = (b'data: {"choices":[{"delta":{"content":"hi"}}],"usage":null}\n\n'
                 b"data: [DONE]\n\n")  # the usage event the gateway asked for is held back
    else:
        kind = b"application/json"
        body = shown = b'{"choices":[{"message":{"content":"hi"}}],"usage":' + usage + b"}"
    upstream = RawServer([(b'"content":"hi"}]', b"HTTP/1.0 200 OK\r\nContent-Type: " + kind
                           + b"\r\n\r\n" + body)])
    service = FakeService(roomy())
    service_sock = bind(LOOPBACK, 0)
    gateway = Gateway(build_config(
        upstream=f"http://127.0.0.1:{upstream.port}",
        service=f"http://{LOOPBACK}:{service_sock.getsockname()[1]}", hosts=[HOST]))
    with BackgroundServers([Listener("service", service, service_sock),
                            Listener("gateway", gateway, bind(LOOPBACK, 0))]) as servers:
        request = {"model": "m", "messages": [{"role": "user", "content": "hi"}],
                   "stream": stream}
        answer = httpx.post(servers.listeners[1].url + "/v1/chat/completions", timeout=10,
                            content=json.dumps(request, separators=(",", ":")),
                            headers={"host": HOST, "user-type": "user-1"})
        servers.call(gateway.drain())
    assert (answer.status_code, answer.content) == (200, shown)
    assert service.reports == [{"ratelimit_keys": ["user-1"], "prompt_tokens": 3,
                                "completion_tokens": 4, "total_tokens": 7}]
    assert gateway.stats.upstream_errors == 0


class DashScopeNativeUpstream:
    """DashScope's own API (``/api/v1/services/aigc/text-generation/generation``): usage as
    ``input_tokens`` / ``output_tokens``; streamed (``X-DashScope-SSE: enable``), every event
    carries the usage so far."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await receive()
        if dict(scope["headers"]).get(b"x-dashscope-sse") != b"enable":
            body = {"output": {"choices": [{"finish_reason": "stop", "message": {
                "role": "assistant", "content": "I am Qwen."}}]},
                "usage": {"total_tokens": 16, "output_tokens": 5, "input_tokens": 11},
                "request_id": "r-1"}
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": json.dumps(body).encode()})
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream;charset=UTF-8")]})
        for i, word in enumerate(["I", " am", " Qwen", "."], start=1):
            event = {"output": {"choices": [{"message": {"content": word, "role": "assistant"},
                                             "finish_reason": "null"}]},
                     "usage": {"total_tokens": 11 + i, "input_tokens": 11, "output_tokens": i},
                     "request_id": "r-1"}
            text = f"id:{i}\nevent:result\n:HTTP_STATUS/200\ndata:{json.dumps(event)}\n\n"
            await send({"type": "http.response.body", "body": text.encode(), "more_body": True})
        await send({"type": "http.response.body", "body": b""})


@pytest.mark.parametrize(("stream", "output"), [(False, 5), (True, 4)])
def test_dashscopes_own_api_is_charged_its_usage(stream: bool, output: int) -> None:
    # the guide's host; before, its answers were charged an estimate of the whole JSON body
    # (51 completion tokens for an answer of 5), and its streams nothing
    service = FakeService(roomy())
    servers, gateway = gateway_over(DashScopeNativeUpstream(), service)
    body = {"model": "qwen-turbo", "input": {"messages": [{"role": "user", "content": "hi"}]},
            "parameters": {"incremental_output": True}}
    headers = {"host": HOST, "user-type": "user-1", **({"x-dashscope-sse": "enable"}
                                                        if stream else {})}
    try:
        answer = httpx.post(servers.listeners[2].url
                            + "/api/v1/services/aigc/text-generation/generation",
                            json=body, timeout=10, headers=headers)
        servers.call(gateway.drain())
    finally:
        servers.stop()
    assert answer.status_code == 200
    assert service.reports == [{"ratelimit_keys": ["user-1"], "prompt_tokens": 11,
                                "completion_tokens": output, "total_tokens": 11 + output}]
