"""The one error tree of tokenlimit.

    TokenlimitError                 anything a user can cause; the CLI prints one line, exits 1
    ├── RuleError                   rules that cannot be read (file, line, column, message)
    ├── RulesRejected               rules that load but carry error findings
    ├── TraceError                  a trace file or line that cannot be read
    ├── StoreError                  a bucket store (memory, Redis, Redis Cluster) failed
    ├── ConfigError                 a bad option, environment variable or manifest
    └── RemoteError                 a peer over HTTP answered badly or not at all

Foreign exceptions (json, yaml, re2, redis, httpx, OSError) are translated at the boundary
with ``raise ... from exc`` so that nothing else ever reaches a user.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tokenlimit.rules.findings import Finding


class TokenlimitError(Exception):
    """Base of every error tokenlimit raises on purpose."""


def _where(path: str | None, line: int | None, column: int | None) -> str:
    parts = ["<input>" if path is None else path or "''"]  # '': an empty path was given
    if line is not None:
        parts.append(str(line))
        if column is not None:
            parts.append(str(column))
    return ":".join(parts)


class RuleError(TokenlimitError):
    """Rules that cannot be read at all: a missing file, broken JSON or YAML, no rules found."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        column: int | None = None,
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.path = path
        self.line = line
        self.column = column
        self.hint = hint  # what to do about it, where the generic advice would mislead
        super().__init__(f"{_where(path, line, column)}: {message}")


class RulesRejected(TokenlimitError):
    """Rules that load but that the service would refuse or fail on (error findings)."""

    def __init__(self, findings: Sequence[Finding]) -> None:
        self.findings = tuple(findings)
        first = self.findings[0] if self.findings else None
        more = f" (and {len(self.findings) - 1} more; run `tokenlimit validate`)" if (
            len(self.findings) > 1
        ) else ""
        # The CLI writes "error: " before this; the finding's own severity would say it twice.
        text = (f"{first.location or '<rules>'}: {first.code} {first.message}" if first
                else "rules rejected")
        super().__init__(f"{text}{more}")


class TraceError(TokenlimitError):
    """A trace that cannot be read: names the file, the line (1-based) and the field."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.message = message
        self.path = path
        self.line = line
        self.field = field
        where = _where(path, line, None)
        what = f"field {field!r}: " if field else ""
        super().__init__(f"{where}: {what}{message}")


class StoreError(TokenlimitError):
    """A bucket store failed (Redis down, script error, timeout)."""


class ConfigError(TokenlimitError):
    """A bad option, environment variable or manifest that is not a rule file."""


class RemoteError(TokenlimitError):
    """A peer over HTTP (service, upstream, target) answered badly or not at all."""
