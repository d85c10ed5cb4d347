"""A folder or glob of CSV or JSON Lines files read as one trace: a gateway's access logs, one
file a day or rotated by logrotate (``access.log``, ``access.log.1``, ``access.log.2.gz``).

The files are read in name order as if joined into one file (a CSV's header once: every file
must have the same header), so a whole read gives exactly the trace of the joined file:
requests numbered across files, keys numbered in order of first appearance, missing usage
imputed from the whole trace. Each file may be plain or compressed on its own. Errors name
the file and its own line, not the joined text's.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from tokenlimit.errors import TraceError
from tokenlimit.sim.trace_sources import decompressed, decompressing, open_raw, trace_format

_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class JoinedText:
    """The files' text joined as one file's, and the joined line where each file's first
    request line is."""

    fmt: str  # csv or jsonl
    data: bytes
    files: tuple[str, ...]
    first_lines: tuple[int, ...]
    # Per file: the line of a CSV quoted value still open at the file's end, which the
    # joined text carries into the next file (the error then shows there), or 0.
    open_quotes: tuple[int, ...]

    def located(self, exc: TraceError, name: str) -> TraceError:
        """``exc`` (about line L of the joined text ``name``) about the file and line that
        L came from; other errors as they are."""
        if exc.path != name or exc.line is None or not self.files:
            return exc
        body = 2 if self.fmt == "csv" else 1  # a file's first request line
        index = max(i for i, first in enumerate(self.first_lines)
                    if first <= exc.line or i == 0)
        opened = None  # the file whose open quote the joined text carries into this one
        for i in range(index):
            if self.open_quotes[i]:
                opened = i if opened is None else None  # a later odd file closes it
        if opened is not None:  # the error is where a record begun in an earlier file ends
            return TraceError("a quoted value is not closed by the end of the file (the "
                              "files of a folder or glob are read as one file)",
                              path=self.files[opened], line=self.open_quotes[opened])
        line = exc.line - self.first_lines[index] + body if exc.line >= body else exc.line
        return TraceError(exc.message, path=self.files[index], line=line, field=exc.field)


def dataset_format(name: str, files: list[str]) -> str:
    """``csv`` or ``jsonl``: the files' format, one for all (by name, as for one file), and
    for CSV one header for all; ``TraceError`` naming the first file that differs."""
    formats = [trace_format(f)[0] for f in files]
    fmt = formats[0]
    for file, other in zip(files, formats, strict=True):
        if other != fmt:
            raise TraceError(f"a {_NAMES[other]} file among {_NAMES[fmt]} files: a folder or "
                             "glob holds one format", path=file)
    if fmt == "csv":  # empty files (a rotated log with nothing in it) have none
        headers = [(file, line) for file in files if (line := _first_line(file))]
        for file, line in headers[1:]:
            if line != headers[0][1]:
                raise TraceError(f"its CSV header differs from {headers[0][0]}'s: the files "
                                 "of a folder or glob are read as one file", path=file, line=1)
    return fmt


_NAMES = {"csv": "CSV", "jsonl": "JSON Lines", "parquet": "Parquet"}


def joined_text(name: str, files: list[str]) -> JoinedText:
    """The files' decompressed text joined as one file's (``dataset_format`` checks them)."""
    fmt = dataset_format(name, files)
    pieces: list[bytes] = []
    first_lines: list[int] = []
    open_quotes: list[int] = []
    kept: list[str] = []  # the files with text (errors name them by the lines they hold)
    line = 1
    for n, file in enumerate(files):
        data = decompressed(file)
        if n:
            data = data.removeprefix(_BOM)
        if not data:
            continue
        kept.append(file)
        if fmt == "csv":
            head, _, data = data.partition(b"\n")
            if line == 1 and head.strip():  # the first header, once
                pieces.append(head + b"\n")
                line = 2
        if data and not data.endswith(b"\n"):
            data += b"\n"
        first_lines.append(line)
        open_quotes.append(_open_quote_line(data) if fmt == "csv" else 0)
        pieces.append(data)
        line += data.count(b"\n")
    return JoinedText(fmt, b"".join(pieces), tuple(kept), tuple(first_lines),
                      tuple(open_quotes))


def _open_quote_line(body: bytes) -> int:
    r"""The file's line (its header is line 1) where a quoted value still open at the end of
    ``body`` (the lines after the header) begins, or 0 (an even count of quotes: cheap).

    >>> _open_quote_line(b'1,"a\n2,b\n'), _open_quote_line(b'1,"a\nb",2\n')
    (2, 0)
    """
    if body.count(b'"') % 2 == 0:
        return 0
    inside, opened = False, 0
    for number, text in enumerate(body.split(b"\n"), start=2):
        if text.count(b'"') % 2:
            inside = not inside
            opened = number if inside else opened
    return opened


def _first_line(file: str) -> bytes:
    """The file's first line (decompressed; without BOM and line end), read alone."""
    try:
        with open_raw(file) as raw, decompressing(raw, trace_format(file)[1]) as stream:
            line: bytes = stream.readline()
    except OSError as exc:
        raise TraceError(f"cannot read: {exc.strerror or exc}", path=file) from exc
    except (EOFError, zlib.error, ValueError) as exc:
        raise TraceError(f"not a readable gzip or zstd file ({exc})", path=file) from exc
    return line.removeprefix(_BOM).rstrip(b"\r\n")
