"""Reading a zstd-compressed trace or log as a stream that notices when the file is cut short.

zstandard's ``stream_reader`` returns what it could decompress and stops quietly when the
compressed input ends inside a frame: a log cut short by an interrupted download read as
fewer requests, or as none ("no requests in the trace"). ``ZstdStream`` decompresses frame
after frame and raises ``EOFError`` (as ``gzip`` does for a cut-short gzip file) when the
input ends inside one.
"""

from __future__ import annotations

import io
from typing import IO, Any

_BLOCK = 1 << 20  # compressed bytes read at a time


class ZstdStream(io.RawIOBase):
    """The decompressed bytes of ``source`` (a binary stream of zstd frames, left open).

    >>> import zstandard
    >>> frame = zstandard.ZstdCompressor().compress(b"ts,key\\n1,a\\n")
    >>> ZstdStream(io.BytesIO(frame + frame)).read()
    b'ts,key\\n1,a\\nts,key\\n1,a\\n'
    >>> ZstdStream(io.BytesIO(frame[:-3])).read()
    Traceback (most recent call last):
    EOFError: the zstd stream ends inside a frame (the file was cut short)
    """

    def __init__(self, source: IO[bytes]) -> None:
        import zstandard

        self._source = source
        self._new_frame: Any = zstandard.ZstdDecompressor().decompressobj
        self._frame: Any = None  # the frame being decompressed (None: between frames)
        self._ready = memoryview(b"")  # decompressed, not yet read

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._ready:
            compressed = self._source.read(_BLOCK)
            if not compressed:
                if self._frame is not None:
                    raise EOFError("the zstd stream ends inside a frame (the file was cut short)")
                return 0
            self._ready = memoryview(self._decompress(compressed))
        size = min(len(buffer), len(self._ready))
        buffer[:size] = self._ready[:size]
        self._ready = self._ready[size:]
        return size

    def readall(self) -> bytes:
        parts = [bytes(self._ready)]
        self._ready = memoryview(b"")
        while compressed := self._source.read(_BLOCK):
            parts.append(self._decompress(compressed))
        if self._frame is not None:
            raise EOFError("the zstd stream ends inside a frame (the file was cut short)")
        return b"".join(parts)

    def _decompress(self, compressed: bytes) -> bytes:
        out = []
        while compressed:
            if self._frame is None:
                self._frame = self._new_frame()
            out.append(self._frame.decompress(compressed))
            if not self._frame.eof:
                break
            compressed = self._frame.unused_data
            self._frame = None
        return b"".join(out)
