"""tokenlimit: author, test and operate LLM token rate-limiting rules for ASM and Istio.

The public API; the command line lives in ``tokenlimit.cli``.
"""

from __future__ import annotations

__version__ = "0.1.0"

from tokenlimit.bucket import AsmLimiter, CheckResult
from tokenlimit.errors import (
    ConfigError,
    RemoteError,
    RuleError,
    RulesRejected,
    StoreError,
    TokenlimitError,
    TraceError,
)
from tokenlimit.rules import Finding, LoadedRules, Rule, RuleMatcher, Severity, lint, load_rules

__all__ = [
    "AsmLimiter",
    "CheckResult",
    "ConfigError",
    "Finding",
    "LoadedRules",
    "RemoteError",
    "Rule",
    "RuleError",
    "RuleMatcher",
    "RulesRejected",
    "Severity",
    "StoreError",
    "TokenlimitError",
    "TraceError",
    "__version__",
    "lint",
    "load_rules",
]
