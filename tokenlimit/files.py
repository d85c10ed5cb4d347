"""Output files written whole or not at all, and checked before long work starts.

Every file a command writes (reports, decisions, traces, plots, manifests) goes through here: a
temporary file beside the target, renamed into place once complete, so no reader ever sees a
partial file and a failure leaves nothing behind. Failures are one ``ConfigError`` naming the
path: ``<path>: cannot write: <reason>``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from tokenlimit.errors import ConfigError


def _cannot_write(path: str | Path, exc: OSError) -> ConfigError:
    return ConfigError(f"{path}: cannot write: {exc.strerror or exc}")


def check_writable(path: str | Path) -> None:
    """``ConfigError`` unless ``path`` can be written (its folder exists and is writable, and
    it is not a folder): checked before a run, so a bad output path fails at once."""
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise ConfigError(f"{path}: cannot write: Is a directory")
    if not folder.is_dir():
        raise ConfigError(f"{path}: cannot write: No such directory {str(folder)!r}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"{path}: cannot write: Permission denied")


def publish(temp: str | Path, target: str | Path, mode: int | None = None) -> None:
    """Rename ``temp`` onto ``target`` with ``mode`` (default: what ``open()`` would give a new
    file under the umask; ``mkstemp`` makes files private)."""
    if mode is None:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    os.chmod(temp, mode)
    os.replace(temp, target)


@contextlib.contextmanager
def staged_file(target: str | Path) -> Iterator[tuple[BinaryIO, Path]]:
    """A binary stream to a new temporary file beside ``target``, and that file's path; the
    caller publishes it. The file is removed if the block fails."""
    target = Path(target)
    directory = target.parent if str(target.parent) else Path(".")
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise _cannot_write(target, exc) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle, Path(temp)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_writer(path: str | Path, mode: int | None = None) -> Iterator[BinaryIO]:
    """A binary stream that becomes ``path`` when the block ends without error.

    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "x.txt"
    >>> with atomic_writer(out) as handle:
    ...     _ = handle.write(b"whole")
    >>> out.read_bytes()
    b'whole'
    """
    try:
        with staged_file(path) as (handle, temp):
            yield handle
            handle.close()
            publish(temp, path, mode)
    except OSError as exc:
        raise _cannot_write(path, exc) from None


def write_atomic(path: str | Path, data: bytes, mode: int | None = None) -> None:
    """Write ``data`` to ``path`` whole or not at all."""
    with atomic_writer(path, mode) as handle:
        handle.write(data)
