"""Reading the ``usage`` of an LLM answer as it streams past, without buffering the stream.

A JSON answer is collected (up to a bound) and parsed at the end; a Server-Sent Events answer is
parsed line by line and the last ``usage`` object seen wins (OpenAI sends it in the final chunk
when ``stream_options.include_usage`` is set). gzip, deflate and zstd bodies are decompressed on
the side; the bytes forwarded to the client are never touched.

When no ``usage`` arrives, :meth:`UsageReader.estimate` gives the documented estimate of the
completion tokens seen so far (the README's gateway section says the same):

- a stream: one token per event whose choices carry new content (``delta.content``,
  ``delta.reasoning_content``, ``delta.tool_calls`` or ``delta.function_call``, or a legacy
  completion's ``text``), or per Responses API ``response.*.delta`` event; OpenAI and
  DashScope send about one token per such event, and the mock exactly one;
- a JSON answer: ``ceil(characters / 4)`` of the choices' content (``message.content`` and the
  rest, or a legacy completion's ``text``; OpenAI's rule of thumb), nothing for JSON that has
  no ``choices`` (a model list, a file: no completion was generated), or of the whole body
  when it is not JSON, too long or compressed unreadably.

A ``usage`` without ``completion_tokens`` (an embeddings answer has only ``prompt_tokens`` and
``total_tokens``) is read as 0 completion tokens: the answer generated none. ``input_tokens``
and ``output_tokens`` (OpenAI's Responses API, in a stream inside ``response.completed``;
DashScope's own API) are read as the prompt and completion tokens.

>>> reader = UsageReader("text/event-stream", "")
>>> reader.feed(b'data: {"choices": []}\\n\\ndata: {"usage": {"prompt_tokens": 3, ')
>>> reader.feed(b'"completion_tokens": 5, "total_tokens": 8}}\\n\\ndata: [DONE]\\n\\n')
>>> reader.finish()
Usage(prompt_tokens=3, completion_tokens=5, total_tokens=8)
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Sequence
from typing import Any

from tokenlimit.bucket.types import Usage

MAX_JSON_BODY = 16 * 1024 * 1024
_CONTENT_FIELDS = ("content", "reasoning_content", "tool_calls", "function_call")


def usage_from_json(value: Any) -> Usage | None:
    """A ``usage`` object with integer counts, or ``None`` for anything else.

    ``completion_tokens`` absent is 0: embeddings answers count only the prompt. The names of
    OpenAI's Responses API and DashScope's own API (``input_tokens``, ``output_tokens``) are
    read as the prompt and completion.

    >>> usage_from_json({"prompt_tokens": 8, "total_tokens": 8})
    Usage(prompt_tokens=8, completion_tokens=0, total_tokens=8)
    >>> usage_from_json({"input_tokens": 5, "output_tokens": 9, "total_tokens": 14})
    Usage(prompt_tokens=5, completion_tokens=9, total_tokens=14)
    """
    if not isinstance(value, dict):
        return None
    if "prompt_tokens" not in value and "input_tokens" in value:  # Responses API, DashScope
        prompt, completion = value.get("input_tokens"), value.get("output_tokens", 0)
    else:
        prompt, completion = value.get("prompt_tokens"), value.get("completion_tokens", 0)
    if not (isinstance(prompt, int) and isinstance(completion, int)) or (
            isinstance(prompt, bool) or isinstance(completion, bool)):
        return None
    total = value.get("total_tokens")
    if not isinstance(total, int) or isinstance(total, bool):
        total = prompt + completion
    return Usage(prompt, completion, total)


class _Inflater:
    """``deflate`` as servers send it: zlib-wrapped, as RFC 9110 says, or raw, as some servers
    do (httpx and browsers read both). Which one shows in the first bytes."""

    def __init__(self) -> None:
        self.inflate = zlib.decompressobj()
        self.start: bytearray | None = bytearray()  # the bytes read before the first output

    def decompress(self, chunk: bytes) -> bytes:
        if self.start is not None:
            self.start += chunk
        try:
            out = self.inflate.decompress(chunk)
        except zlib.error:
            if self.start is None:  # raw already, or it was zlib after all
                raise
            self.inflate = zlib.decompressobj(-zlib.MAX_WBITS)
            out, self.start = self.inflate.decompress(bytes(self.start)), None
        if out:
            self.start = None
        return out


class _Unzstd:
    """``zstd``, which httpx asks for whenever zstandard is installed (a dependency here)."""

    def __init__(self) -> None:
        import zstandard

        self.error = zstandard.ZstdError
        self.inflate = zstandard.ZstdDecompressor().decompressobj()

    def decompress(self, chunk: bytes) -> bytes:
        try:
            return bytes(self.inflate.decompress(chunk))
        except self.error as exc:
            raise zlib.error(str(exc)) from exc


def _decompressor(content_encoding: str) -> Any:
    encoding = content_encoding.strip().lower()
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return _Inflater()
    if encoding == "zstd":
        return _Unzstd()
    return False  # an encoding we cannot read (br): no usage, the whole body is estimated


def _carries_content(event: dict[str, Any]) -> bool:
    """Whether a stream event delivers new completion content (one token, by the estimate)."""
    kind = event.get("type")
    if isinstance(kind, str) and kind.startswith("response.") and kind.endswith(".delta"):
        return bool(event.get("delta"))  # the Responses API: output_text.delta and the rest
    choices = event.get("choices")
    if not isinstance(choices, list):
        return False
    for choice in choices:
        if not isinstance(choice, dict):
            continue
        delta = choice.get("delta")
        if isinstance(delta, dict) and any(delta.get(name) for name in _CONTENT_FIELDS):
            return True
        if choice.get("text"):  # a legacy completion's chunk
            return True
    return False


def _message_characters(body: Any) -> int:
    """The characters of a completion's content (0 for JSON that is no completion)."""
    choices = body.get("choices") if isinstance(body, dict) else None
    if not isinstance(choices, list):
        return 0  # a model list, a file, an embedding: nothing was generated
    total = 0
    for choice in choices:
        if not isinstance(choice, dict):
            continue
        message = choice.get("message")
        if isinstance(message, dict):
            for name in _CONTENT_FIELDS:
                value = message.get(name)
                if value:
                    total += len(value if isinstance(value, str) else json.dumps(value))
        text = choice.get("text")  # a legacy completion
        if isinstance(text, str):
            total += len(text)
    return total


class UsageReader:
    """Feed it the raw response bytes in order; ``finish`` gives the usage or ``None``."""

    def __init__(self, content_type: str, content_encoding: str) -> None:
        self.sse = content_type.split(";")[0].strip().lower() == "text/event-stream"
        self.decompress = _decompressor(content_encoding)
        self.buffer = bytearray()
        self.usage: Usage | None = None
        self.overflow = False
        self.raw_bytes = 0
        self.content_events = 0

    def feed(self, chunk: bytes) -> None:
        """Take the next raw chunk of the body."""
        self.raw_bytes += len(chunk)
        if self.decompress is False or self.overflow:
            return
        if self.decompress is not None:
            try:
                chunk = self.decompress.decompress(chunk)
            except zlib.error:
                self.decompress = False
                return
        self.buffer += chunk
        if self.sse:
            self._scan_events()
        elif len(self.buffer) > MAX_JSON_BODY:
            self.overflow = True
            self.buffer.clear()

    def _scan_events(self) -> None:
        while True:
            end = self.buffer.find(b"\n")
            if end < 0:
                if len(self.buffer) > MAX_JSON_BODY:
                    self.buffer.clear()
                return
            line = bytes(self.buffer[:end]).rstrip(b"\r")
            del self.buffer[:end + 1]
            self._event_line(line)

    def _event_line(self, line: bytes) -> None:
        if not line.startswith(b"data:"):
            return
        data = line[5:].strip()
        if not data.startswith(b"{"):
            return  # [DONE] and keep-alives
        try:
            event = json.loads(data)
        except ValueError:
            return
        if isinstance(event, dict):
            usage = usage_from_json(event.get("usage"))
            response = event.get("response")  # the Responses API: response.completed
            if usage is None and isinstance(response, dict):
                usage = usage_from_json(response.get("usage"))
            if usage is not None:
                self.usage = usage
            elif _carries_content(event):
                self.content_events += 1

    def finish(self) -> Usage | None:
        """The usage of the whole answer, once the body has ended."""
        if self.decompress is False or self.overflow:
            return None
        if self.sse:
            if self.buffer:
                self._event_line(bytes(self.buffer).rstrip(b"\r"))
                self.buffer.clear()
            return self.usage
        try:
            body = json.loads(bytes(self.buffer))
        except ValueError:
            return None
        return usage_from_json(body.get("usage")) if isinstance(body, dict) else None

    def estimate(self) -> int:
        """Completion tokens by the documented estimate, for an answer without ``usage``.

        Call it after :meth:`finish` (or at any point, for what has been seen so far).

        >>> reader = UsageReader("application/json", "")
        >>> reader.feed(b'{"choices": [{"message": {"content": "lorem ipsum"}}]}')
        >>> reader.estimate()
        3
        """
        if self.sse:
            return self.content_events
        characters: int | None = None
        if self.decompress is not False and not self.overflow:
            try:
                characters = _message_characters(json.loads(bytes(self.buffer)))
            except ValueError:
                characters = None
        if characters is None:
            characters = self.raw_bytes
        return math.ceil(characters / 4)


class UsageChunkFilter:
    """Drops the ``usage`` event from a stream whose client did not ask for it.

    The gateway adds ``stream_options.include_usage`` to streaming requests that lack it, so
    the upstream tells the usage; the extra last event (``"choices": []`` with the usage) is
    then held back from the client. Events pass on whole, as soon as their blank line arrives.

    >>> kept = UsageChunkFilter()
    >>> kept.feed(b'data: {"choices":[{"delta":{"content":"a"}}],"usage":null}\\n\\ndata: {"ch')
    b'data: {"choices":[{"delta":{"content":"a"}}],"usage":null}\\n\\n'
    >>> kept.feed(b'oices":[],"usage":{"prompt_tokens":1,"completion_tokens":1}}\\n\\n'
    ...           b'data: [DONE]\\n\\n')
    b'data: [DONE]\\n\\n'
    """

    def __init__(self) -> None:
        self.pending = bytearray()

    def feed(self, chunk: bytes) -> bytes:
        """The bytes of ``chunk`` (and of what was held back) that go to the client now."""
        self.pending += chunk
        kept: list[bytes] = []
        start = end = 0
        data = bytes(self.pending)
        if data.endswith(b"\r"):  # perhaps the first half of a CRLF: wait for what follows
            data = data[:-1]
        for line in data.splitlines(keepends=True):
            end += len(line)
            if line in (b"\n", b"\r\n", b"\r"):  # a blank line ends the event
                event = bytes(self.pending[start:end])
                if not _is_usage_event(event):
                    kept.append(event)
                start = end
        del self.pending[:start]
        return b"".join(kept)

    def finish(self) -> bytes:
        """What is left at the end of the stream (an unterminated last event)."""
        rest, self.pending = bytes(self.pending), bytearray()
        return b"" if _is_usage_event(rest) else rest


def _is_usage_event(event: bytes) -> bool:
    """Whether ``event`` is the usage-only chunk (``"choices": []`` and a usage object)."""
    if b'"usage"' not in event:
        return False
    for line in event.splitlines():
        if line.startswith(b"data:"):
            try:
                value = json.loads(line[5:].strip())
            except ValueError:
                return False
            return (isinstance(value, dict) and usage_from_json(value.get("usage")) is not None
                    and not value.get("choices"))
    return False


def ask_for_usage(body: bytes, headers: Sequence[tuple[str, str]] = ()) -> bytes | None:
    """The request body with ``stream_options.include_usage`` added, or ``None`` to leave it.

    Only a JSON chat or legacy completion request (``messages`` or ``prompt``) with ``"stream":
    true`` that does not already ask for usage is changed (a compressed request body is left
    alone; a Responses API request, ``input``, has no ``include_usage`` and tells its usage
    anyway). The JSON is written again compactly, keys in their order.

    >>> ask_for_usage(b'{"messages": [], "stream": true}')
    b'{"messages":[],"stream":true,"stream_options":{"include_usage":true}}'
    >>> ask_for_usage(b'{"stream": true, "stream_options": {"include_usage": true}}') is None
    True
    """
    if b'"stream"' not in body:
        return None
    if any(k == "content-encoding" and v.strip().lower() not in ("", "identity")
           for k, v in headers):
        return None
    try:
        request = json.loads(body)
    except ValueError:
        return None
    if not isinstance(request, dict) or request.get("stream") is not True or (
            "messages" not in request and "prompt" not in request):
        return None
    options = request.get("stream_options")
    if options is not None and not isinstance(options, dict):
        return None  # not ours to repair: the upstream will answer it
    if isinstance(options, dict) and options.get("include_usage") is True:
        return None
    request["stream_options"] = {**(options or {}), "include_usage": True}
    return json.dumps(request, ensure_ascii=False, separators=(",", ":")).encode()
