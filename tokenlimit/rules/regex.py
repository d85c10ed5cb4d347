"""Go-compatible regular expressions and first-match rule lookup: the one key matcher.

The service compiles every rule with Go's ``regexp`` and matches keys with ``MatchString``:
an unanchored search; the first rule in order wins. ``serve``, ``simulate``, ``gateway``,
``loadtest`` and ``validate`` all match through ``RuleMatcher`` here, which follows Go 1.22
(go1.22.10, Unicode 15.0.0): patterns are parsed by a port of Go's own parser
(``goparse``), so Go's accept/reject decisions and its messages are reproduced, and keys are
matched on Go's parse tree (``gomatch``).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from tokenlimit.rules.gomatch import GoPattern
from tokenlimit.rules.model import Rule

# The Go release whose regexp (and Unicode tables) the matcher follows; a test checks that the
# tables in go_unicode_tables.json come from it.
GO_VERSION = "go1.22.10"


@lru_cache(maxsize=4096)  # parsing is Go's algorithm in Python: do it once per pattern
def compile_go_regex(pattern: str) -> GoPattern:
    """Compile as the service does; ``ValueError`` with Go's own message when Go refuses.

    >>> compile_go_regex("regular-user.*").matches("irregular-user")
    True
    >>> compile_go_regex("a{1000000000}")
    Traceback (most recent call last):
    ...
    tokenlimit.rules.gotree.GoRegexError: error parsing regexp: invalid repeat count: `{1000000000}`
    """
    return GoPattern(pattern)


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
            if pattern.matches(key):
                found = index
                break
        if len(key) <= self.CACHED_KEY_CHARS:
            if len(self._cache) >= self.CACHED_KEYS:
                self._cache.clear()
            self._cache[key] = found
        return found

    def indices_for(self, keys: Sequence[str]) -> list[int]:
        """``index_for`` of each of ``keys`` (-1 for none), many at once: each rule's pattern
        against the keys no earlier rule matched, without the per-key cache."""
        found = [-1] * len(keys)
        left = list(range(len(keys)))
        for index, pattern in enumerate(self._patterns):
            if not left:
                break
            matches = pattern.matches
            missed = []
            for i in left:
                if matches(keys[i]):
                    found[i] = index
                else:
                    missed.append(i)
            left = missed
        return found

    def rule_for(self, key: str) -> Rule | None:
        index = self.index_for(key)
        return None if index is None else self.rules[index]
