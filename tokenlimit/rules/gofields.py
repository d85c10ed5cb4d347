"""How Go's encoding/json maps JSON onto a struct's fields: shared by the rule loader
(``RATE_LIMIT_CONFIG`` into the service's config struct) and the service's request decoder
(``/update_ratelimit_record`` bodies).
"""

from __future__ import annotations

from collections.abc import Iterable

# A Go ``int`` on the 64-bit platforms the service runs on.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def go_fold(name: str) -> str:
    """A field name folded as Go matches it: simple Unicode case folding, which also maps the
    Kelvin sign to k, the long s to s, and the dotted and dotless capital/small I to i (Go
    folds with ``ToUpper(ToLower(r))``, where ``ToLower`` of U+0130 is a plain i).

    >>> go_fold("Max_\u212aTokens") == go_fold("max_ktokens") == go_fold("Max_KTokens")
    True
    >>> go_fold("rateL\u0130mit") == go_fold("ratel\u0131mit") == go_fold("ratelimit")
    True
    """
    return name.translate(_GO_FOLDS).lower()


_GO_FOLDS = str.maketrans({"\u212a": "k", "\u017f": "s", "\u0130": "i", "\u0131": "i"})


class FieldNames:
    """The struct field a JSON object key decodes into: the exact name first, else the
    first field whose name folds to the same text (Go's rule); ``None`` for no field."""

    def __init__(self, fields: Iterable[str]) -> None:
        self.exact = tuple(fields)
        self.folded: dict[str, str] = {}
        for field in self.exact:
            self.folded.setdefault(go_fold(field), field)

    def field_for(self, key: str) -> str | None:
        """The field ``key`` decodes into.

        >>> FieldNames(["total_tokens"]).field_for("TOTAL_Tokens")
        'total_tokens'
        """
        if key in self.exact:
            return key
        return self.folded.get(go_fold(key))
