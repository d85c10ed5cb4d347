"""Values of the rule model: where a thing stands in its file, and one token-bucket rule."""

from __future__ import annotations

from dataclasses import dataclass, field

# The fields of the ASM service's Go struct, in the order its documentation lists them.
REGEX_FIELD = "rate_limit_key_regex"
INT_FIELDS: tuple[str, ...] = (
    "max_tokens",
    "tokens_per_fill",
    "fill_interval_second",
    "redis_expired_seconds",
)
RULE_FIELDS: tuple[str, ...] = (REGEX_FIELD, *INT_FIELDS)


@dataclass(frozen=True, slots=True)
class Location:
    """A place in a source: 1-based line and column; ``path`` is ``<stdin>``, ``<env>``, ..."""

    path: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}"


@dataclass(frozen=True, slots=True)
class Rule:
    """One entry of ``RATE_LIMIT_CONFIG``, with the values the Go service would decode.

    ``field_locations`` maps a field name to where its value stands (absent when the field is
    missing); ``location`` is where the rule object starts.

    >>> Rule(0, "regular-user.*", 200, 50, 30, 300).sustained_tokens_per_second
    1.6666666666666667
    """

    index: int
    regex: str
    max_tokens: int
    tokens_per_fill: int
    fill_interval_second: int
    redis_expired_seconds: int
    location: Location | None = None
    field_locations: tuple[tuple[str, Location], ...] = field(default=(), compare=False)

    def location_of(self, name: str) -> Location | None:
        """Where field ``name`` stands, or where the rule starts when the field is missing."""
        for field_name, where in self.field_locations:
            if field_name == name:
                return where
        return self.location

    def to_config(self) -> dict[str, str | int]:
        """The rule as the service's JSON object (field order as documented)."""
        return {
            REGEX_FIELD: self.regex,
            "max_tokens": self.max_tokens,
            "tokens_per_fill": self.tokens_per_fill,
            "fill_interval_second": self.fill_interval_second,
            "redis_expired_seconds": self.redis_expired_seconds,
        }

    @property
    def sustained_tokens_per_second(self) -> float:
        """Long-run refill rate when checks arrive exactly on interval boundaries."""
        if self.fill_interval_second <= 0:
            return 0.0
        return self.tokens_per_fill / self.fill_interval_second
