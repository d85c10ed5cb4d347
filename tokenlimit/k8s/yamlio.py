"""Manifests as YAML: one stable multi-document stream, or one file per object, atomically.

Stable means byte-identical for the same objects: keys keep the order the renderer gave
them, long strings are never folded, sequences are indented under their key (kubectl's
style), and every document starts with ``---``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from tokenlimit.errors import ConfigError
from tokenlimit.files import publish, staged_file

# kubectl reads YAML with Go's yaml.v2 (through sigs.k8s.io/yaml), which resolves more plain
# scalars to booleans and numbers than PyYAML does: y/n, 1e3, 0o17, 0X1F, 1.5e3, 1_0. PyYAML
# quotes only what it would itself resolve, so `app: y` or `version: 1e3` would reach the API
# server as true or 1000 and be refused ("cannot unmarshal bool into ... string").
_GO_BOOLS = frozenset(("y", "Y", "n", "N"))
_GO_INT = re.compile(r"[-+]?(0[xX][0-9a-fA-F]+|0[bB][01]+|0[oO][0-7]+|0[0-7]*|[1-9][0-9]*)")
_GO_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")


def go_yaml_reads_as_string(text: str) -> bool:
    """Whether Go's yaml.v2 (kubectl's reader) takes ``text``, written plain, as a string.

    >>> [go_yaml_reads_as_string(s) for s in ("50m", "y", "1e3", "0o17", "v1")]
    [True, False, False, False, True]
    """
    if text in _GO_BOOLS:
        return False
    if text[:1] not in set("+-.0123456789"):
        return True
    plain = text.replace("_", "")  # yaml.v2 drops underscores before parsing numbers
    return not (_GO_INT.fullmatch(plain) or _GO_FLOAT.fullmatch(plain))


def go_yaml_value(text: str) -> bool | int | float | str:
    """What Go's yaml.v2 makes of ``text`` written plain (PyYAML having read it as a string).

    >>> [go_yaml_value(s) for s in ("y", "1e3", "0o17", "0755", "-0x1F", "v1")]
    [True, 1000.0, 15, 493, -31, 'v1']
    """
    if go_yaml_reads_as_string(text):
        return text
    if text in _GO_BOOLS:
        return text in ("y", "Y")
    plain = text.replace("_", "")
    if not _GO_INT.fullmatch(plain):
        return float(plain)
    sign = -1 if plain[0] == "-" else 1
    digits = plain.lstrip("+-")
    base = {"x": 16, "b": 2, "o": 8}.get(digits[1:2].lower(), 8 if digits[:1] == "0" else 10)
    if base != 10 and digits[1:2].isalpha():
        digits = digits[2:]
    return sign * int(digits or "0", base)


class _ManifestDumper(yaml.SafeDumper):
    """SafeDumper that indents block sequences under their parent key and quotes strings
    that kubectl's YAML reader would otherwise take for booleans or numbers."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


# Characters YAML reads as line breaks that PyYAML writes raw inside single quotes: NEL is
# then read back (by PyYAML and by kubectl) as a line break folded into a space, so a regex
# '^a\x85b$' reached the service as '^a b$'. Double quotes write them as escapes (\N, \L, \P).
_RAW_BREAKS = frozenset("\x85\u2028\u2029")


def _represent_str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = None if go_yaml_reads_as_string(text) else "'"
    if not _RAW_BREAKS.isdisjoint(text):
        style = '"'
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_ManifestDumper.add_representer(str, _represent_str)


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


# The names render gives its files: NN-kind-name.yaml for the kinds it renders.
_RENDERED_NAME = re.compile(r"[0-9]{2}-(serviceaccount|secret|service|deployment|wasmplugin)-"
                            r".+\.yaml")


def _refuse_stale_files(target: Path, names: Sequence[str]) -> None:
    """Files of an earlier render, of the kinds this one writes, that this one does not
    write would be applied too by ``kubectl apply -f DIR``, and after the new ones when the
    numbering moved (an old ``04-deployment-...`` with the old rules after the new
    ``03-deployment-...``). Other kinds are left alone: ``render wasmplugin -o DIR`` and
    ``render service -o DIR`` may share a directory."""
    kinds = {m.group(1) for m in map(_RENDERED_NAME.fullmatch, names) if m}
    stale = sorted(p.name for p in target.iterdir()
                   if (m := _RENDERED_NAME.fullmatch(p.name)) and m.group(1) in kinds
                   and p.name not in names)
    if stale:
        more = f" (and {len(stale) - 1} more)" if len(stale) > 1 else ""
        raise ConfigError(
            f"{target}: {stale[0]}{more} is from an earlier render and not written by this one; "
            f"kubectl apply -f {target} would apply it too: remove it, or write to an empty "
            "directory (nothing was written)")


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
    _refuse_stale_files(target, [manifest_filename(i, obj) for i, obj in enumerate(objects)])
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
