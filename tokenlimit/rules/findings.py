"""Findings: what a rule will really do, with a stable code, a severity and a hint."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from tokenlimit.rules.model import Location


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing the linter has to say about the rules.

    ``rule_index`` is 0-based and ``None`` where no single rule applies (a file that does not
    parse, a missing catch-all); ``field`` names the offending field when there is one.
    """

    code: str
    severity: Severity
    message: str
    hint: str
    rule_index: int | None = None
    field: str | None = None
    location: Location | None = None

    def one_line(self) -> str:
        """``path:line:col: error TL103 message`` for logs and the CLI's stderr."""
        where = str(self.location) if self.location else "<rules>"
        return f"{where}: {self.severity.value} {self.code} {self.message}"

    def to_dict(self) -> dict[str, object]:
        loc = self.location
        return {
            "code": self.code,
            "severity": self.severity.value,
            "message": self.message,
            "hint": self.hint,
            "rule_index": self.rule_index,
            "field": self.field,
            "path": loc.path if loc else None,
            "line": loc.line if loc else None,
            "column": loc.column if loc else None,
        }
