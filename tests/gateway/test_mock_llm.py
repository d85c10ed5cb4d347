"""The mock LLM over loopback: answers, streaming, errors, observable usage."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from tokenlimit.gateway import LOOPBACK, BackgroundServers, Listener, MockLLM, MockSettings, bind
from tokenlimit.gateway.mock_llm import TokenDraw


@pytest.fixture
def mock() -> Iterator[tuple[MockLLM, str]]:
    app = MockLLM(MockSettings(completion=TokenDraw.parse("10-20"), seed=5))
    servers = BackgroundServers([Listener("mock", app, bind(LOOPBACK, 0))]).start()
    try:
        yield app, servers.listeners[0].url
    finally:
        servers.stop()


MESSAGES = [{"role": "user", "content": "Who are you?"}]


@pytest.mark.parametrize("path", ["/", "/v1/chat/completions",
                                  "/compatible-mode/v1/chat/completions"])
def test_each_chat_path_answers_a_completion_with_usage(mock: tuple[MockLLM, str],
                                                        path: str) -> None:
    app, url = mock
    answer = httpx.post(url + path, json={"model": "qwen-turbo", "messages": MESSAGES})
    body = answer.json()
    [produced] = app.completions
    assert answer.status_code == 200
    assert body["object"] == "chat.completion" and body["model"] == "qwen-turbo"
    assert body["id"] == produced.id == "chatcmpl-mock-1"
    assert body["usage"] == {"prompt_tokens": 7, "completion_tokens": produced.completion_tokens,
                             "total_tokens": 7 + produced.completion_tokens}
    assert len(body["choices"][0]["message"]["content"].split()) == produced.completion_tokens
    assert 10 <= produced.completion_tokens <= 20
    assert httpx.get(url + "/__stats").json() == {"requests": 1, "completions": [{
        "id": "chatcmpl-mock-1", "prompt_tokens": 7,
        "completion_tokens": produced.completion_tokens,
        "total_tokens": 7 + produced.completion_tokens, "stream": False}]}


def test_the_draw_is_seeded(mock: tuple[MockLLM, str]) -> None:
    app, url = mock
    for _ in range(5):
        httpx.post(url + "/", json={"messages": MESSAGES})
    again = MockLLM(MockSettings(completion=TokenDraw.parse("10-20"), seed=5))
    expected = [again.settings.completion.draw(again.rng) for _ in range(5)]
    assert [c.completion_tokens for c in app.completions] == expected


def test_stream_with_usage_ends_with_a_usage_chunk_then_done(mock: tuple[MockLLM, str]) -> None:
    app, url = mock
    with httpx.stream("POST", url + "/v1/chat/completions", json={
            "messages": MESSAGES, "stream": True, "max_tokens": 2,
            "stream_options": {"include_usage": True}}) as answer:
        raw = answer.read().decode()
    events = raw.split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""]
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-2]]
    assert [c["choices"][0]["delta"] if c["choices"] else None for c in chunks] == [
        {"role": "assistant", "content": ""}, {"content": "lorem"}, {"content": " ipsum"}, {},
        None]
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert [c["usage"] for c in chunks] == [None] * 4 + [
        {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}]
    assert app.completions[0].stream is True


@pytest.mark.parametrize(("body", "param", "start"), [
    (b"{oops", None, "We could not parse the JSON body"),
    (b"[1]", None, "The request body must be a JSON object."),
    (b'{"model": "m"}', "messages", "'messages' is a required property"),
    (b'{"messages": []}', "messages", "'messages' is a required property"),
])
def test_bad_requests_get_an_openai_style_400(mock: tuple[MockLLM, str], body: bytes,
                                              param: str | None, start: str) -> None:
    app, url = mock
    answer = httpx.post(url + "/v1/chat/completions", content=body)
    error = answer.json()["error"]
    assert answer.status_code == 400
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, None)
    assert error["message"].startswith(start)
    assert app.requests == 0


def test_unknown_path_and_wrong_method(mock: tuple[MockLLM, str]) -> None:
    _, url = mock
    assert httpx.post(url + "/v1/embeddings", json={}).status_code == 404
    assert httpx.get(url + "/v1/chat/completions").status_code == 405


@pytest.mark.parametrize("stream", [False, True])
def test_latency_settings_give_the_pauses_asked_for(monkeypatch: pytest.MonkeyPatch,
                                                    stream: bool) -> None:
    # The pauses are recorded instead of slept: exact, and no test waits on a clock.
    pauses: list[float] = []

    async def record(seconds: float) -> None:
        pauses.append(seconds)

    app = MockLLM(MockSettings(completion=TokenDraw.parse("4"), ttft=0.25, tokens_per_second=8))
    monkeypatch.setattr(app, "_pause", record)
    with BackgroundServers([Listener("mock", app, bind(LOOPBACK, 0))]) as servers:
        answer = httpx.post(servers.listeners[0].url + "/", json={
            "messages": MESSAGES, "stream": stream})
    assert answer.status_code == 200
    assert pauses == ([0.25, 0.125, 0.125, 0.125, 0.125] if stream else [0.25, 0.5])
