"""Rate-limit key templates in the plug-in's ``rateLimitKeys`` syntax.

A template is literal text with Envoy-attribute placeholders such as
``{{request.headers.user-type}}``; the only attribute family a recorded request carries is
``request.headers.<name>`` (header names are case-insensitive, as in HTTP). A header the
request does not carry renders as the empty string (what the plug-in sends for a missing
attribute is not documented; an empty key matches only rules whose regex accepts it).

>>> template = KeyTemplate.parse("{{request.headers.user-type}}")
>>> template.render({"User-Type": "regular-user"})
'regular-user'
>>> render_keys([KeyTemplate.parse("tier-{{ request.headers.x-tier }}")], {"x-tier": "gold"})
('tier-gold',)
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tokenlimit.errors import ConfigError

_PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}")
_HEADER_PREFIX = "request.headers."


@dataclass(frozen=True, slots=True)
class KeyTemplate:
    """A parsed template: ``parts`` alternate literal text and lower-cased header names.

    ``parts[0]``, ``parts[2]``, ... are literal; ``parts[1]``, ``parts[3]``, ... are header
    names. Build one with ``KeyTemplate.parse``.
    """

    source: str
    parts: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> KeyTemplate:
        """Parse ``text``; ``ConfigError`` for a placeholder that is not a request header."""
        parts: list[str] = []
        position = 0
        for match in _PLACEHOLDER.finditer(text):
            attribute = match.group(1).strip()
            if not attribute.startswith(_HEADER_PREFIX) or len(attribute) == len(_HEADER_PREFIX):
                raise ConfigError(
                    f"key template {text!r}: {{{{{attribute}}}}} is not supported; a trace "
                    "carries request headers only, so use {{request.headers.NAME}}")
            parts.append(text[position:match.start()])
            parts.append(attribute[len(_HEADER_PREFIX):].lower())
            position = match.end()
        rest = text[position:]
        if "{{" in rest or "}}" in rest:
            raise ConfigError(f"key template {text!r}: unbalanced '{{{{' or '}}}}'")
        parts.append(rest)
        return cls(text, tuple(parts))

    @property
    def header_names(self) -> tuple[str, ...]:
        """The (lower-cased) header names the template reads."""
        return self.parts[1::2]

    def render(self, headers: Mapping[str, str]) -> str:
        """The key for a request with ``headers`` (any case); missing headers render empty."""
        lowered = {str(name).lower(): value for name, value in headers.items()}
        return self.render_lowered(lowered)

    def render_lowered(self, lowered: Mapping[str, str]) -> str:
        """Like ``render`` for headers whose names are already lower-case (faster in loops)."""
        out = []
        for index, part in enumerate(self.parts):
            if index % 2:
                value = lowered.get(part)
                out.append("" if value is None else str(value))
            else:
                out.append(part)
        return "".join(out)


def parse_key_templates(texts: Sequence[str]) -> tuple[KeyTemplate, ...]:
    """Parse several templates (one per ``rateLimitKeys`` entry), in order."""
    return tuple(KeyTemplate.parse(text) for text in texts)


def render_keys(templates: Sequence[KeyTemplate], headers: Mapping[str, str]) -> tuple[str, ...]:
    """The request's rate-limit keys, one per template, in the plug-in's order."""
    lowered = {str(name).lower(): value for name, value in headers.items()}
    return tuple(template.render_lowered(lowered) for template in templates)
