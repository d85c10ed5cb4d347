"""A positioned document tree shared by the JSON and YAML readers.

Both readers produce ``Node`` values so that decoding rules (``rules.decode``) applies Go's
strictness once, whatever the file format, and every finding can point at a line and column.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tokenlimit.rules.model import Location

NodeKind = Literal["object", "array", "string", "number", "bool", "null"]


@dataclass(frozen=True, slots=True)
class Node:
    """A value with its location.

    ``value`` is: ``str`` for strings; the literal text for numbers (``"60"``, ``"60.5"``,
    ``"1e3"``), so integer strictness is decided on what was written; ``bool``; ``None``;
    ``tuple[Node, ...]`` for arrays; ``tuple[tuple[Node, Node], ...]`` for objects (key nodes
    are strings, duplicates kept in order, as Go sees them).
    """

    kind: NodeKind
    value: object
    location: Location

    def describe(self) -> str:
        """How Go's decoder names this value in its errors: ``number 60.5``, ``string``..."""
        if self.kind == "number":
            return f"number {self.value}"
        if self.kind == "bool":
            return "bool"
        if self.kind == "string":
            return "string"
        return self.kind

    def items(self) -> tuple[Node, ...]:
        assert self.kind == "array"
        return self.value  # type: ignore[return-value]

    def pairs(self) -> tuple[tuple[Node, Node], ...]:
        assert self.kind == "object"
        return self.value  # type: ignore[return-value]
