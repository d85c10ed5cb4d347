"""Kubernetes objects read from a file, with positions, and findings from schema errors.

Shared by the WasmPlugin check (``check.py``) and the core-kind check (``core.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import jsonschema

from tokenlimit.rules import Finding, Location, Severity

JsonPath = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class ManifestObject:
    """One Kubernetes object from a file, with where each of its values and keys stands."""

    data: Any
    path: str
    values: dict[JsonPath, tuple[int, int]]
    keys: dict[JsonPath, tuple[int, int]]
    # Plain scalars that kubectl's YAML reader (Go's yaml.v2) takes for a boolean or a number
    # although PyYAML reads a string (`y`, `1e3`): the data holds Go's value.
    coerced: dict[JsonPath, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        kind = self.data.get("kind", "?") if isinstance(self.data, dict) else "?"
        meta = self.data.get("metadata") if isinstance(self.data, dict) else None
        name = meta.get("name", "?") if isinstance(meta, dict) else "?"
        return f"{kind}/{name}"

    def where(self, at: JsonPath, *, key: bool = False) -> Location:
        """The position of the value (or key) at ``at``, or of its nearest existing parent."""
        if key and at in self.keys:
            line, column = self.keys[at]
            return Location(self.path, line, column)
        for cut in range(len(at), -1, -1):
            if at[:cut] in self.values:
                line, column = self.values[at[:cut]]
                return Location(self.path, line, column)
        return Location(self.path, 1, 1)


def field_name(at: JsonPath) -> str:
    """``("spec", "match", 0, "mode")`` as ``spec.match[0].mode``.

    >>> field_name(("spec", "match", 0, "mode"))
    'spec.match[0].mode'
    """
    out = ""
    for part in at:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(object)"


def schema_findings(obj: ManifestObject, error: jsonschema.ValidationError, code: str, *,
                    plugin: bool = False) -> Iterator[Finding]:
    """One finding per offending field of a schema error (unknown fields one by one)."""
    at: JsonPath = tuple(error.absolute_path)
    instance = error.instance
    if error.validator == "additionalProperties" and isinstance(instance, dict):
        schema = error.schema if isinstance(error.schema, dict) else {}
        known = set(schema.get("properties", {}))
        for extra in [k for k in instance if k not in known]:
            where: JsonPath = (*at, extra)
            in_config = plugin and at[:2] == ("spec", "pluginConfig")
            yield Finding(
                "TL403" if in_config else code,
                Severity.WARNING if in_config else Severity.ERROR,
                f"{obj.label}: {field_name(where)}: unknown field"
                + (" (not a setting of ASM's rate-limit plug-in; it is ignored at best)"
                   if in_config else ""),
                suggest_field(extra, sorted(known)), None, field_name(where),
                obj.where(where, key=True))
        return
    if error.validator == "required" and isinstance(instance, dict):
        wanted = error.validator_value if isinstance(error.validator_value, list) else []
        missing = [k for k in wanted if k not in instance]
        for name in missing:
            where = (*at, name)
            yield Finding(code, Severity.ERROR,
                          f"{obj.label}: {field_name(where)}: required field is missing",
                          f"Add {name}.", None, field_name(where), obj.where(at))
        return
    message = error.message
    secret = obj.data.get("kind") == "Secret" or "env" in at
    if at in obj.coerced:
        kind = "boolean" if isinstance(error.instance, bool) else "number"
        # Env values and Secret data may be passwords: never shown.
        quoted = "Quote it." if secret else f"Quote it: '{obj.coerced[at]}'."
        yield Finding(code, Severity.ERROR,
                      f"{obj.label}: {field_name(at)}: kubectl reads this plain value as a "
                      f"{kind} (Go's YAML 1.1), not the string it looks like",
                      quoted, None, field_name(at), obj.where(at))
        return
    if secret:
        # Secret data and env values may be passwords: say what is wrong, never the value.
        message = f"the value fails the schema's {error.validator!r} rule (value not shown)"
    elif len(message) > 200:
        message = message[:197] + "..."
    yield Finding(code, Severity.ERROR, f"{obj.label}: {field_name(at)}: {message}",
                  "See the schema of this kind for the allowed values.", None, field_name(at),
                  obj.where(at))


def suggest_field(name: str, known: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, known, n=1)
    if close:
        return f"Did you mean {close[0]!r}?"
    return f"Known fields here: {', '.join(known)}." if known else "Remove it."
