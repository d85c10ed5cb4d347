"""A validation report and its machine formats: JSON, SARIF 2.1.0 and GitHub annotations.

Pure formatting (strings in, strings out); the Rich text report lives in the CLI.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from tokenlimit.errors import RuleError
from tokenlimit.rules.codes import CODES
from tokenlimit.rules.figures import RuleFigures, figures_of
from tokenlimit.rules.findings import Finding, Severity
from tokenlimit.rules.gomatch import go_string
from tokenlimit.rules.lint import lint
from tokenlimit.rules.model import Location, Rule
from tokenlimit.rules.regex import RuleMatcher
from tokenlimit.rules.sources import LoadedRules

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_SARIF_LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}
_GITHUB_LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "notice"}


@dataclass(frozen=True, slots=True)
class KeyMatch:
    """Which rule a key takes: ``outcome`` is ``limited``, ``unlimited`` or ``unknown``
    (``unknown`` when the rules cannot be matched at all: a regex RE2 refuses, no rules read).
    """

    key: str
    outcome: str
    rule: Rule | None = None

    @property
    def figures(self) -> RuleFigures | None:
        return figures_of(self.rule) if self.rule else None

    def to_dict(self) -> dict[str, object]:
        figures = self.figures
        return {
            "key": self.key,
            "outcome": self.outcome,
            "rule_index": self.rule.index if self.rule else None,
            "regex": self.rule.regex if self.rule else None,
            "figures": figures.to_dict() if figures else None,
        }


@dataclass(frozen=True, slots=True)
class ValidationReport:
    """Everything ``tokenlimit validate`` reports, in the order it reports it."""

    origin: str
    rules: tuple[Rule, ...]
    findings: tuple[Finding, ...]
    keys: tuple[KeyMatch, ...] = ()

    def count(self, severity: Severity) -> int:
        return sum(f.severity is severity for f in self.findings)

    def exit_status(self, strict: bool = False) -> int:
        """0 when nothing fails (errors; with ``strict`` warnings too), 1 otherwise."""
        failing = self.count(Severity.ERROR)
        if strict:
            failing += self.count(Severity.WARNING)
        return 1 if failing else 0

    def summary(self) -> dict[str, int]:
        return {"errors": self.count(Severity.ERROR), "warnings": self.count(Severity.WARNING),
                "infos": self.count(Severity.INFO)}

    def to_dict(self) -> dict[str, object]:
        return {
            "rules": [_rule_dict(rule) for rule in self.rules],
            "findings": [f.to_dict() for f in self.findings],
            "summary": self.summary(),
            "keys": [k.to_dict() for k in self.keys],
        }


def validate_rules(loaded: LoadedRules, keys: Sequence[str] = ()) -> ValidationReport:
    """Lint ``loaded`` and match ``keys`` against it as the service would.

    >>> from tokenlimit.rules.sources import parse_rules_text
    >>> rules = parse_rules_text('[{"rate_limit_key_regex": "^vip", "max_tokens": 10,'
    ...     ' "tokens_per_fill": 5, "fill_interval_second": 1, "redis_expired_seconds": 9}]', "x")
    >>> [(k.key, k.outcome) for k in validate_rules(rules, ["vip-1", "guest"]).keys]
    [('vip-1', 'limited'), ('guest', 'unlimited')]
    """
    findings = tuple(lint(loaded))
    try:
        matcher: RuleMatcher | None = RuleMatcher(loaded.rules)
    except ValueError:
        matcher = None
    matches = []
    for key in keys:
        if matcher is None:
            matches.append(KeyMatch(key, "unknown"))
            continue
        rule = matcher.rule_for(key)
        matches.append(KeyMatch(key, "unlimited" if rule is None else "limited", rule))
    return ValidationReport(loaded.origin, loaded.rules, findings, tuple(matches))


def failed_report(exc: RuleError, keys: Sequence[str] = ()) -> ValidationReport:
    """The report for rules that cannot be read at all: one TL100 finding."""
    origin = exc.path or "<rules>"
    where = Location(origin, exc.line, exc.column or 1) if exc.line else None
    hint = exc.hint or ("Fix it so the service can decode the configuration (it exits at "
                        "start-up otherwise).")
    finding = Finding("TL100", Severity.ERROR, exc.message, hint, None, None,
                      where or Location(origin, 1, 1))
    return ValidationReport(origin, (), (finding,),
                            tuple(KeyMatch(key, "unknown") for key in keys))


def _rule_dict(rule: Rule) -> dict[str, object]:
    figures = figures_of(rule)
    loc = rule.location
    return {
        "index": rule.index,
        **rule.to_config(),
        "location": {"path": loc.path, "line": loc.line, "column": loc.column} if loc else None,
        "figures": figures.to_dict() if figures else None,
    }


def format_json(report: ValidationReport) -> str:
    """The ``--format json`` document (see the README for every field)."""
    return go_string(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))


def relative_path(path: str, root: str | None = None) -> str:
    """``path`` relative to ``root`` (the working directory) when inside it, with ``/``.

    >>> relative_path("/repo/deploy/rules.json", "/repo"), relative_path("/etc/x", "/repo")
    ('deploy/rules.json', '/etc/x')
    """
    candidate = Path(path)
    if candidate.is_absolute():
        with contextlib.suppress(ValueError):
            candidate = candidate.relative_to(Path(root if root is not None else os.getcwd()))
    return candidate.as_posix()


def artifact_uri(path: str, root: str | None = None) -> str:
    """A SARIF artifact URI: the relative path, percent-encoded; a ``file:`` URI outside.

    >>> artifact_uri("/repo/my rules.json", "/repo"), artifact_uri("<stdin>", "/repo")
    ('my%20rules.json', '%3Cstdin%3E')
    >>> artifact_uri("/etc/rules.json", "/repo")
    'file:///etc/rules.json'
    >>> artifact_uri("/repo/team:a/bad\\udcffname.json", "/repo")
    'team%3Aa/bad%FFname.json'
    """
    relative = relative_path(path, root)
    if Path(relative).is_absolute():
        return Path(relative).as_uri()
    # The name's own bytes (one that is not UTF-8 keeps them), and ':' encoded: a first segment
    # such as 'a:b' would otherwise read as a URI scheme.
    return quote(relative.encode("utf-8", "surrogateescape"), safe="/@-._~")


def format_sarif(report: ValidationReport, version: str, root: str | None = None) -> str:
    """SARIF 2.1.0 as GitHub code scanning accepts it: one run, every code as a rule."""
    index = {code.code: position for position, code in enumerate(CODES)}
    results = []
    for finding in report.findings:
        where = finding.location or Location(report.origin, 1, 1)
        results.append({
            "ruleId": finding.code,
            "ruleIndex": index[finding.code],
            "level": _SARIF_LEVEL[finding.severity],
            "message": {"text": f"{finding.message}\n\nHint: {finding.hint}"},
            "locations": [{"physicalLocation": {
                "artifactLocation": {"uri": artifact_uri(where.path, root)},
                "region": {"startLine": max(where.line, 1),
                           "startColumn": max(where.column, 1)},
            }}],
        })
    rules = [{
        "id": code.code,
        "name": code.code,
        "shortDescription": {"text": code.title},
        "defaultConfiguration": {"level": _SARIF_LEVEL[code.severity]},
    } for code in CODES]
    document = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "tokenlimit", "version": version, "rules": rules}},
            "results": results,
        }],
    }
    return go_string(json.dumps(document, indent=2, ensure_ascii=False))


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def format_github(report: ValidationReport, root: str | None = None) -> str:
    """GitHub Actions workflow commands, one line per finding:
    ``::error file=rules.json,line=3,col=29::TL107 regex ...`` (no file for ``<stdin>``,
    ``<env:...>`` or ``<config-json>``, which are not files in the repository)."""
    lines = []
    for finding in report.findings:
        props = []
        if finding.location is not None and not finding.location.path.startswith("<"):
            loc = finding.location
            props = [f"file={_escape_property(relative_path(loc.path, root))}",
                     f"line={loc.line}", f"col={loc.column}"]
        head = f"::{_GITHUB_LEVEL[finding.severity]}"
        if props:
            head += " " + ",".join(props)
        lines.append(f"{head}::{_escape_data(f'{finding.code} {finding.message}')}")
    return "\n".join(lines) + ("\n" if lines else "")

