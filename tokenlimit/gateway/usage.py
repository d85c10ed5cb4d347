"""Reading the ``usage`` of an LLM answer as it streams past, without buffering the stream.

A JSON answer is collected (up to a bound) and parsed at the end; a Server-Sent Events answer is
parsed line by line and the last ``usage`` object seen wins (OpenAI sends it in the final chunk
when ``stream_options.include_usage`` is set). gzip and deflate bodies are decompressed on the
side; the bytes forwarded to the client are never touched.

>>> reader = UsageReader("text/event-stream", "")
>>> reader.feed(b'data: {"choices": []}\\n\\ndata: {"usage": {"prompt_tokens": 3, ')
>>> reader.feed(b'"completion_tokens": 5, "total_tokens": 8}}\\n\\ndata: [DONE]\\n\\n')
>>> reader.finish()
Usage(prompt_tokens=3, completion_tokens=5, total_tokens=8)
"""

from __future__ import annotations

import json
import zlib
from typing import Any

from tokenlimit.bucket.types import Usage

MAX_JSON_BODY = 16 * 1024 * 1024


def usage_from_json(value: Any) -> Usage | None:
    """A ``usage`` object with integer counts, or ``None`` for anything else."""
    if not isinstance(value, dict):
        return None
    counts = [value.get(name) for name in ("prompt_tokens", "completion_tokens")]
    if not all(isinstance(c, int) and not isinstance(c, bool) for c in counts):
        return None
    prompt, completion = int(counts[0]), int(counts[1])  # type: ignore[arg-type]
    total = value.get("total_tokens")
    if not isinstance(total, int) or isinstance(total, bool):
        total = prompt + completion
    return Usage(prompt, completion, total)


def _decompressor(content_encoding: str) -> Any:
    encoding = content_encoding.strip().lower()
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return zlib.decompressobj()
    return False  # an encoding we cannot read: no usage, no report


class UsageReader:
    """Feed it the raw response bytes in order; ``finish`` gives the usage or ``None``."""

    def __init__(self, content_type: str, content_encoding: str) -> None:
        self.sse = content_type.split(";")[0].strip().lower() == "text/event-stream"
        self.decompress = _decompressor(content_encoding)
        self.buffer = bytearray()
        self.usage: Usage | None = None
        self.overflow = False

    def feed(self, chunk: bytes) -> None:
        """Take the next raw chunk of the body."""
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
            if usage is not None:
                self.usage = usage

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
