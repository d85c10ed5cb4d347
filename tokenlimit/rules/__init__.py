"""The rule model: loading ``RATE_LIMIT_CONFIG`` from any source, matching keys, linting.

Pure: no terminal, HTTP or Redis libraries here (a test walks the imports).
"""

from __future__ import annotations

from tokenlimit.rules.codes import CODES, Code
from tokenlimit.rules.figures import RuleFigures, figures_of
from tokenlimit.rules.findings import Finding, Severity
from tokenlimit.rules.formats import KeyMatch, ValidationReport, validate_rules
from tokenlimit.rules.lint import lint, require_valid
from tokenlimit.rules.model import INT_FIELDS, REGEX_FIELD, RULE_FIELDS, Location, Rule
from tokenlimit.rules.regex import RuleMatcher, compile_go_regex
from tokenlimit.rules.sources import ENV_VAR, LoadedRules, load_rules, parse_rules_text

__all__ = [
    "CODES",
    "ENV_VAR",
    "INT_FIELDS",
    "REGEX_FIELD",
    "RULE_FIELDS",
    "Code",
    "Finding",
    "KeyMatch",
    "LoadedRules",
    "Location",
    "Rule",
    "RuleFigures",
    "RuleMatcher",
    "Severity",
    "ValidationReport",
    "compile_go_regex",
    "figures_of",
    "lint",
    "load_rules",
    "parse_rules_text",
    "require_valid",
    "validate_rules",
]
