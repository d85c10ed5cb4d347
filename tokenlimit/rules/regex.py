"""Go-compatible regular expressions through RE2, and first-match rule lookup.

Go's ``regexp`` is RE2: the same engine tells exactly which patterns the service refuses
(lookaround, backreferences, possessive quantifiers...) even when Python's ``re`` accepts them.
The service matches with ``MatchString``: an unanchored search; the first rule in order wins.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import re2

from tokenlimit.rules.model import Rule

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # RE2 would otherwise print every refused pattern to stderr


def compile_go_regex(pattern: str) -> Any:
    """Compile as the service does; ``ValueError`` with RE2's own reason when Go would refuse.

    >>> compile_go_regex("regular-user.*").search("irregular-user") is not None
    True
    """
    try:
        compiled = re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise ValueError(str(reason)) from exc
    if _has_any_byte_escape(pattern):
        # C++ RE2 accepts \C (any byte); Go's regexp refuses it.
        raise ValueError("invalid escape sequence: \\C (Go has no any-byte escape)")
    return compiled


def _has_any_byte_escape(pattern: str) -> bool:
    """Whether ``pattern`` uses ``\\C`` outside a ``\\Q...\\E`` literal.

    >>> [_has_any_byte_escape(p) for p in (r"a\\Cb", r"\\\\C", r"\\Q\\C\\E")]
    [True, False, False]
    """
    index = 0
    while index < len(pattern) - 1:
        if pattern[index] != "\\":
            index += 1
            continue
        escaped = pattern[index + 1]
        if escaped == "C":
            return True
        if escaped == "Q":
            end = pattern.find("\\E", index + 2)
            if end < 0:
                return False
            index = end + 2
            continue
        index += 2
    return False


class RuleMatcher:
    """Which rule a key hits: the first whose regex matches anywhere in the key.

    Lookups are cached per key (traces repeat keys millions of times). The cache is bounded
    in bytes: keys longer than ``CACHED_KEY_CHARS`` are matched every time, and the cache
    starts over once it holds ``CACHED_KEYS`` keys, so hostile keys cannot grow it.
    """

    CACHED_KEY_CHARS = 512
    CACHED_KEYS = 65_536

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules = tuple(rules)
        self._patterns = [compile_go_regex(rule.regex) for rule in self.rules]
        self._cache: dict[str, int | None] = {}

    def index_for(self, key: str) -> int | None:
        """Index of the rule that limits ``key``, or ``None`` when the key is unlimited."""
        try:
            return self._cache[key]
        except KeyError:
            pass
        found = None
        for index, pattern in enumerate(self._patterns):
            if pattern.search(key) is not None:
                found = index
                break
        if len(key) <= self.CACHED_KEY_CHARS:
            if len(self._cache) >= self.CACHED_KEYS:
                self._cache.clear()
            self._cache[key] = found
        return found

    def rule_for(self, key: str) -> Rule | None:
        index = self.index_for(key)
        return None if index is None else self.rules[index]
