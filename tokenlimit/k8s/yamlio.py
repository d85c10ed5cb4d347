"""Manifests as YAML: one stable multi-document stream, or one file per object, atomically.

Stable means byte-identical for the same objects: keys keep the order the renderer gave
them, long strings are never folded, sequences are indented under their key (kubectl's
style), and every document starts with ``---``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from tokenlimit.errors import ConfigError
from tokenlimit.files import publish, staged_file


class _ManifestDumper(yaml.SafeDumper):
    """SafeDumper that indents block sequences under their parent key."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def format_manifests(objects: Sequence[dict[str, Any]]) -> str:
    """A multi-document YAML stream for ``kubectl apply -f -``.

    >>> print(format_manifests([{"apiVersion": "v1", "kind": "ServiceAccount",
    ...                          "metadata": {"name": "x"}}]), end="")
    ---
    apiVersion: v1
    kind: ServiceAccount
    metadata:
      name: x
    """
    return "".join(_dump(obj) for obj in objects)


def _dump(obj: dict[str, Any]) -> str:
    return yaml.dump(obj, Dumper=_ManifestDumper, sort_keys=False, explicit_start=True,
                     default_flow_style=False, allow_unicode=True, width=2**20)


def manifest_filename(index: int, obj: dict[str, Any]) -> str:
    """``01-deployment-NAME.yaml``: the number keeps ``kubectl apply -f DIR`` in order."""
    kind = str(obj.get("kind", "object")).lower()
    name = str(obj.get("metadata", {}).get("name", "unnamed"))
    return f"{index + 1:02d}-{kind}-{name}.yaml"


def write_manifests(objects: Sequence[dict[str, Any]], directory: str | os.PathLike[str]
                    ) -> list[Path]:
    """One file per object in ``directory`` (created if missing); returns the paths.

    Each file is written to a temporary name and renamed, so a reader never sees half a
    manifest. Secrets are written readable by the owner only.
    """
    target = Path(directory)
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{target}: cannot create the directory: "
                          f"{exc.strerror or exc}") from exc
    if not target.is_dir():
        raise ConfigError(f"{target}: not a directory")
    # Every file goes to a temporary name first; only when all are written are they renamed,
    # so a failure part-way leaves the directory as it was.
    staged: list[tuple[Path, Path, int]] = []
    try:
        for i, obj in enumerate(objects):
            mode = 0o600 if obj.get("kind") == "Secret" else 0o644
            path = target / manifest_filename(i, obj)
            with staged_file(path) as (handle, temp):
                os.fchmod(handle.fileno(), mode)  # private before a byte of a Secret lands
                handle.write(_dump(obj).encode("utf-8"))
            staged.append((temp, path, mode))
        for temp, path, mode in staged:
            publish(temp, path, mode)
    except OSError as exc:
        raise ConfigError(f"{target}: cannot write: {exc.strerror or exc}") from exc
    finally:
        for temp, _, _ in staged:
            temp.unlink(missing_ok=True)
    return [path for _, path, _ in staged]
