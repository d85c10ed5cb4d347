"""Where a trace is: a local path, or a URL that fsspec reads (``s3://``, ``gs://``,
``http(s)://``, ``memory://``, ``file://``, ...), each a file or a Parquet dataset (a folder of
``.parquet`` files, or a glob).

fsspec (installed with the ``[remote]`` or ``[dask]`` extra; ``s3fs``, ``gcsfs`` and the
like add their protocols) does the remote I/O; it is imported only when a URL is read, so a
local trace needs nothing more than the base install. Remote files are read as bytes (a whole
file) or as a stream (``--chunk-rows``); a remote dataset file by file.

>>> is_url("s3://logs/day.parquet"), is_url("samples/trace.csv"), is_url("C:/t.csv")
(True, False, False)
"""

from __future__ import annotations

import bisect
import contextlib
import glob
import gzip
import io
import re
import zlib
from pathlib import Path
from typing import IO, Any

from tokenlimit.errors import ConfigError, TraceError
from tokenlimit.sim.zstd_stream import ZstdStream

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+://")
PARQUET_SUFFIXES = (".parquet", ".pq")


def is_url(path: str) -> bool:
    """A URL with a scheme (two letters at least: ``C:/`` is a Windows drive)."""
    return _URL.match(path) is not None


def _filesystem(url: str) -> tuple[Any, str]:
    """fsspec's file system for ``url`` and the path within it."""
    try:
        import fsspec
    except ImportError as exc:
        raise ConfigError(f"{url}: reading a URL needs fsspec: pip install "
                          "'tokenlimit[remote]'") from exc
    try:
        found: tuple[Any, str] = fsspec.core.url_to_fs(url)
    except ImportError as exc:  # the protocol's own package (s3fs, gcsfs, aiohttp, ...)
        raise ConfigError(f"{url}: {exc}".splitlines()[0]) from exc
    except ValueError as exc:  # an unknown protocol
        raise TraceError(f"not a readable URL ({exc})".splitlines()[0], path=url) from exc
    return found


def _cannot_read(path: str, exc: Exception) -> TraceError:
    if isinstance(exc, FileNotFoundError):
        return TraceError("cannot read: No such file or directory", path=path)
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return TraceError(f"cannot read: {reason}".splitlines()[0], path=path)


# A name ending so is a file: no need to ask a remote store (an HTTP server would send it).
_FILE_SUFFIXES = (*PARQUET_SUFFIXES, ".csv", ".jsonl", ".json", ".ndjson", ".gz", ".zst",
                  ".zstd")


def file_name(path: str) -> str:
    """The path without an HTTP(S) URL's query (a presigned URL's signature, say)."""
    if path.lower().startswith(("http://", "https://")):
        return path.split("?", 1)[0].split("#", 1)[0]
    return path


def is_dataset(path: str) -> bool:
    """A folder or a glob (``*``) of Parquet files, local or remote."""
    if "*" in file_name(path):
        return True
    if file_name(path).lower().endswith(_FILE_SUFFIXES):
        return False
    if not is_url(path):
        return is_local_folder(path)
    fs, inner = _filesystem(path)
    try:
        return bool(fs.isdir(inner))
    except (OSError, ValueError) as exc:
        raise _cannot_read(path, exc) from exc


def is_local_folder(path: str) -> bool:
    """A local folder; never the empty path, which ``Path`` takes for the current folder (an
    unset shell variable as the trace would read every Parquet file below it).

    >>> is_local_folder(""), is_local_folder(".")
    (False, True)
    """
    return path != "" and Path(path).is_dir()


def parquet_files(path: str) -> list[str]:
    """The Parquet files of a dataset (a folder: its ``.parquet``/``.pq`` files at any depth;
    a glob: its matches), in name order; ``TraceError`` when there are none.

    As Spark, Hive and pyarrow's datasets do, a file or folder whose name starts with ``_``
    or ``.`` is not data: ``_temporary/`` holds the attempts of a write still running (or one
    that failed), ``.part-00000.parquet.crc`` and ``_SUCCESS`` are bookkeeping."""
    files = [f for f in dataset_files(path) if is_parquet_name(f)]
    if not files:
        raise TraceError(NO_TRACE_FILES, path=path)
    return files


NO_TRACE_FILES = ("no trace files here (Parquet, or CSV and JSON Lines: .csv, .jsonl, "
                  ".ndjson, .json or .log, plain, .gz or .zst)")


def text_files(path: str) -> list[str] | None:
    """The CSV or JSON Lines files of a dataset (a folder: files named as traces or logs, at
    any depth; a glob: every match), in name order; ``None`` when it holds Parquet files (read
    as a Parquet dataset: its other files are not); ``TraceError`` when it holds neither."""
    files = dataset_files(path)
    if any(is_parquet_name(f) for f in files):
        _no_text_among_parquet(path, files)
        return None
    if "*" not in file_name(path):  # a folder: only files named as text traces
        files = [f for f in files if _is_text_name(f)]
    if not files:
        raise TraceError(NO_TRACE_FILES, path=path)
    return sorted(files, key=rotation_order)


def _no_text_among_parquet(path: str, files: list[str]) -> None:
    """A glob reads every file it matches: a CSV or JSON Lines file it matches among Parquet
    files would be left out without a word (a folder's other files are not read, as
    documented)."""
    if "*" not in file_name(path):
        return
    text = next((f for f in files if not is_parquet_name(f) and _is_text_name(f)), None)
    if text is not None:
        kind = "CSV" if trace_format(text)[0] == "csv" else "JSON Lines"
        raise TraceError(f"a {kind} file among Parquet files: a glob reads every file it "
                         "matches, and a trace is one format", path=text)


# logrotate's names: access.log.1 (numbered) or access.log-20261101 (dateext), compressed or not
_ROTATED = re.compile(r"^(.*\.(?:csv|jsonl|ndjson|json|log))(?:\.(\d+)|-(\d[\d-]*))"
                      r"(?:\.(?:gz|zst|zstd))?$", re.I)


def rotation_order(name: str) -> tuple[str, int, int, str]:
    """Where a file goes among a dataset's text files: name order, but logrotate's rotated
    files before the live one, oldest first, so that they join in time order: numbered files
    highest number first (logrotate renames ``.1`` to ``.2`` and the live file to ``.1``;
    ``.10`` before ``.9``), then ``dateext`` files by date, then the live file.

    >>> names = ["a.log", "a.log.1", "a.log.10.gz", "a.log.2.gz", "b.log", "b.log-20261102.gz",
    ...          "b.log-20261101"]
    >>> sorted(names, key=rotation_order)  # doctest: +NORMALIZE_WHITESPACE
    ['a.log.10.gz', 'a.log.2.gz', 'a.log.1', 'a.log', 'b.log-20261101', 'b.log-20261102.gz',
     'b.log']
    """
    rotated = _ROTATED.match(file_name(name))
    if rotated is None:
        return name, 2, 0, ""
    base, number, date = rotated.groups()
    if number is not None:
        return base, 0, -int(number), ""
    return base, 1, 0, date


def is_parquet(path: str) -> bool:
    """A Parquet file, or a folder (or glob) of them, local or at a URL."""
    return is_parquet_name(path) or (is_dataset(path) and text_files(path) is None)


def is_parquet_name(name: str) -> bool:
    """A name ending ``.parquet`` or ``.pq``."""
    return file_name(name).lower().endswith(PARQUET_SUFFIXES)


_TEXT_NAME = re.compile(r"\.(csv|jsonl|ndjson|json|log)(\.\d+|-\d[\d-]*)?(\.(gz|zst|zstd))?$",
                        re.I)


def _is_text_name(name: str) -> bool:
    """Named as a text trace or log: ``.csv``, ``.jsonl``, ``.ndjson``, ``.json`` or ``.log``,
    with logrotate's number or date (``dateext``) after it or not, plain or compressed.

    >>> [_is_text_name(n) for n in ("a.jsonl.gz", "access.log.2.gz", "README.md", "a.csv",
    ...                             "access.log-20261101.gz")]
    [True, True, False, True, True]
    """
    return _TEXT_NAME.search(file_name(name).rsplit("/", 1)[-1]) is not None


def dataset_files(path: str) -> list[str]:
    """Every data file of a dataset (a folder: at any depth; a glob: its matches), in name
    order, without those named ``_...`` or ``....`` below the folder or the glob's first
    wildcard (see ``parquet_files``)."""
    if is_url(path):
        fs, inner = _filesystem(path)
        try:
            found = fs.glob(inner) if "*" in inner else fs.find(inner)
        except (OSError, ValueError) as exc:
            raise _cannot_read(path, exc) from exc
        root = _fixed_part(inner) if "*" in inner else inner.rstrip("/") + "/"
        names = sorted(str(f) for f in found if _is_data(str(f)[len(root):]))
        return [fs.unstrip_protocol(n) if not is_url(n) else n for n in names]
    if "*" in path:
        root = _fixed_part(path)
        return sorted(f for f in glob.glob(path, recursive=True)
                      if _is_data(f[len(root):]) and Path(f).is_file())
    return sorted(str(f) for f in Path(path).rglob("*")
                  if f.is_file() and _is_data(f.relative_to(path).as_posix()))


def _fixed_part(pattern: str) -> str:
    """The folders of a path or glob before its first wildcard: where the dataset starts.

    >>> _fixed_part("/data/llm/**/*.parquet"), _fixed_part("bucket/logs/"), _fixed_part("x")
    ('/data/llm/', 'bucket/logs/', '')
    """
    wild = min((i for i in (pattern.find(c) for c in "*?[") if i >= 0), default=len(pattern))
    return pattern[: pattern.rfind("/", 0, wild) + 1]


def _is_data(relative: str) -> bool:
    """Whether a dataset's file at ``relative`` (below the dataset's folder) holds data: no
    part of it starts with ``_`` or ``.``.

    >>> [_is_data(p) for p in ("date=2026-11-01/part-0.parquet", "_temporary/0/part-0.parquet",
    ...                        "/.part-0.parquet", "part-0.parquet")]
    [True, False, False, True]
    """
    return not any(part.startswith(("_", ".")) for part in relative.split("/") if part)


def read_raw(path: str) -> bytes:
    """The bytes of a remote file, as stored (compressed or not)."""
    fs, inner = _filesystem(path)
    try:
        data: bytes = fs.cat_file(inner)
    except (OSError, ValueError) as exc:
        raise _cannot_read(path, exc) from exc
    return data


def open_raw(path: str) -> IO[bytes]:
    """A binary stream of a local or remote file, as stored."""
    if not is_url(path):
        return open(path, "rb")
    fs, inner = _filesystem(path)
    try:
        stream = fs.open(inner, "rb")
    except (OSError, ValueError) as exc:
        raise _cannot_read(path, exc) from exc
    # A standard buffered stream: fsspec's files lack ``readlines(hint)``, which batches use.
    return io.BufferedReader(stream)


def trace_format(name: str) -> tuple[str, str | None]:
    """(``csv``, ``jsonl`` or ``parquet``; ``gzip``, ``zstd`` or ``None``) from the suffixes.

    >>> trace_format("day.csv.zst"), trace_format("t.jsonl"), trace_format("a.PARQUET")
    (('csv', 'zstd'), ('jsonl', None), ('parquet', None))
    """
    lower = file_name(name).lower()
    compression = None
    for suffix, kind in COMPRESSIONS.items():
        if lower.endswith(suffix):
            lower, compression = lower.removesuffix(suffix), kind
            break
    if lower.endswith(".csv"):
        return "csv", compression
    if lower.endswith(".parquet") or lower.endswith(".pq"):
        return "parquet", compression
    return "jsonl", compression


COMPRESSIONS = {".gz": "gzip", ".zst": "zstd", ".zstd": "zstd"}


def read_bytes(name: str) -> bytes:
    """The file's decompressed bytes (a local path or a URL)."""
    compression = trace_format(name)[1]
    if is_url(name):
        raw = read_raw(name)
        if compression == "gzip":
            return gzip.decompress(raw)
        if compression == "zstd":
            return ZstdStream(io.BytesIO(raw)).readall()
        return raw
    if compression == "gzip":
        with gzip.open(name, "rb") as stream:
            return stream.read()
    if compression == "zstd":
        with open(name, "rb") as raw_file:
            return ZstdStream(raw_file).readall()
    with open(name, "rb") as file:  # not Path(name): Path("") is the current folder
        return file.read()


def decompressed(name: str) -> bytes:
    """``read_bytes``, with what goes wrong as ``TraceError`` naming the file: it cannot be
    read, or its gzip or zstd stream is damaged or cut short."""
    try:
        return read_bytes(name)
    except OSError as exc:
        raise TraceError(f"cannot read: {exc.strerror or exc}", path=name) from exc
    except (EOFError, gzip.BadGzipFile, zlib.error, ValueError) as exc:
        raise TraceError(f"not a readable gzip or zstd file ({exc})", path=name) from exc


def decompressing(raw: IO[bytes], compression: str | None) -> Any:
    """A stream of ``raw``'s decompressed bytes (closing it leaves ``raw`` to its owner)."""
    if compression == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if compression == "zstd":
        return io.BufferedReader(ZstdStream(raw))  # lines, which the decompressor does not give
    return contextlib.nullcontext(raw)


class FileStarts:
    """Where each file of a dataset starts among its requests, noted as its files are read
    (streamed, or into one frame): a request's position in the dataset to its file and
    position there, for errors.

    >>> starts = FileStarts("logs")
    >>> starts.add(0, "logs/a.jsonl"); starts.add(600, "logs/b.jsonl")
    >>> starts.where(5), starts.where(600), starts.where(700)
    (('logs/a.jsonl', 5), ('logs/b.jsonl', 0), ('logs/b.jsonl', 100))
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.starts: list[int] = []
        self.files: list[str] = []
        self.noted: set[str] = set()

    def add(self, first_row: int, file: str) -> None:
        if file not in self.noted:  # each pass over the dataset notes its files again
            self.noted.add(file)
            self.starts.append(first_row)
            self.files.append(file)

    def where(self, row: int) -> tuple[str, int]:
        """(file, position in it) of the request at position ``row`` of the dataset (the
        dataset itself where no file is noted: a single file)."""
        i = bisect.bisect_right(self.starts, row) - 1
        return (self.path, row) if i < 0 else (self.files[i], row - self.starts[i])
