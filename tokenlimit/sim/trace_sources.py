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

import glob
import io
import re
from pathlib import Path
from typing import IO, Any

from tokenlimit.errors import ConfigError, TraceError

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
    if is_url(path):
        fs, inner = _filesystem(path)
        try:
            found = fs.glob(inner) if "*" in inner else fs.find(inner)
        except (OSError, ValueError) as exc:
            raise _cannot_read(path, exc) from exc
        root = _fixed_part(inner) if "*" in inner else inner.rstrip("/") + "/"
        names = sorted(str(f) for f in found if str(f).lower().endswith(PARQUET_SUFFIXES)
                       and _is_data(str(f)[len(root):]))
        files = [fs.unstrip_protocol(n) if not is_url(n) else n for n in names]
    elif "*" in path:
        root = _fixed_part(path)
        files = sorted(f for f in glob.glob(path, recursive=True)
                       if f.lower().endswith(PARQUET_SUFFIXES) and _is_data(f[len(root):]))
    else:
        files = sorted(str(f) for f in Path(path).rglob("*")
                       if f.name.lower().endswith(PARQUET_SUFFIXES) and f.is_file()
                       and _is_data(f.relative_to(path).as_posix()))
    if not files:
        raise TraceError("no Parquet files (.parquet or .pq) here: a folder or glob is read as "
                         "a Parquet dataset; give a text trace or log as one file (join "
                         "several with cat, or zcat for .gz)", path=path)
    return files


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
