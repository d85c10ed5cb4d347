"""Rate-limit key templates in the plug-in's ``rateLimitKeys`` syntax: the one implementation.

A template is literal text with ``{{attribute}}`` placeholders in Envoy's attribute names, e.g.
``{{request.headers.user-type}}`` or ``tier-{{request.headers.x-tier}}@{{request.host}}``.
Supported attributes (``ATTRIBUTES``; the README's table says the same):

    request.headers.NAME   a request header (NAME case-insensitive; several values joined by ",");
                           also written request.headers['NAME'] as in CEL
    request.path           the path with its query string
    request.url_path       the path without the query string
    request.query          the query string (without "?")
    request.host           the Host / :authority header
    request.method         GET, POST, ...
    request.scheme         http or https
    request.protocol       HTTP/1.1, HTTP/2, ...
    request.id             the x-request-id header
    request.referer        the referer header
    request.useragent      the user-agent header
    source.address         the client's address as host:port; source.port the port alone
    destination.address    the proxy's address as host:port; destination.port the port alone

An unknown attribute is a :class:`~tokenlimit.errors.ConfigError` when the template is parsed,
so a typo is found at start-up and not at the first request. Parsing also resolves the
attributes that are other attributes in disguise: ``request.id``, ``request.referer`` and
``request.useragent`` read headers, ``request.url_path`` and ``request.query`` are cut from
``request.path``. What is left, ``KeyTemplate.attributes``, are *base* attributes
(``BASE_ATTRIBUTES`` or ``request.headers.<lower-case name>``).

Rendering takes a lookup (a ``Mapping``) from base attribute names to values: the gateway's
lookup is the live request, the simulator's is built from a trace line. An attribute the lookup
does not hold (a header not sent) renders as the empty string.

>>> template = KeyTemplate.parse("tier-{{ request.headers.User-Type }}@{{request.url_path}}")
>>> template.attributes
('request.headers.user-type', 'request.path')
>>> template.render({"request.headers.user-type": "gold", "request.path": "/v1/chat?x=1"})
'tier-gold@/v1/chat'
>>> render_keys([template], header_values({"X-Other": "1"}))
('tier-@',)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from tokenlimit.errors import ConfigError

HEADER_PREFIX = "request.headers."
BASE_ATTRIBUTES = frozenset({
    "request.path", "request.host", "request.method", "request.scheme", "request.protocol",
    "source.address", "source.port", "destination.address", "destination.port",
})
# Attributes resolved at parse time: (the base attribute read, how: _WHOLE, _BEFORE_QUERY, _QUERY).
_WHOLE, _BEFORE_QUERY, _QUERY = 0, 1, 2
_DERIVED = {
    "request.id": (HEADER_PREFIX + "x-request-id", _WHOLE),
    "request.referer": (HEADER_PREFIX + "referer", _WHOLE),
    "request.useragent": (HEADER_PREFIX + "user-agent", _WHOLE),
    "request.url_path": ("request.path", _BEFORE_QUERY),
    "request.query": ("request.path", _QUERY),
}
ATTRIBUTES = (*sorted(BASE_ATTRIBUTES | _DERIVED.keys()), "request.headers.NAME")

_PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_BRACKETED = re.compile(r"""^request\.headers\[\s*(['"])(.+)\1\s*\]$""")


def _normalise(attribute: str, text: str) -> str:
    """The attribute's one spelling: headers as ``request.headers.<lower>``; else unchanged."""
    if bracketed := _BRACKETED.match(attribute):  # CEL's request.headers['name']
        attribute = HEADER_PREFIX + bracketed.group(2)
    if attribute.startswith(HEADER_PREFIX) and attribute[len(HEADER_PREFIX):].strip():
        return HEADER_PREFIX + attribute[len(HEADER_PREFIX):].lower()
    if attribute in BASE_ATTRIBUTES or attribute in _DERIVED:
        return attribute
    raise ConfigError(f"key template {text!r}: unknown attribute {attribute!r} "
                      f"(known: {', '.join(ATTRIBUTES)})")


@dataclass(frozen=True, slots=True)
class KeyTemplate:
    """A parsed template. Build one with ``KeyTemplate.parse``.

    ``parts`` alternate literal text and attribute names as written (normalised: headers
    lower-cased, CEL brackets removed): ``parts[0]``, ``parts[2]``, ... are literal,
    ``parts[1]``, ``parts[3]``, ... attributes. The rest is precompiled for ``render``.
    """

    text: str
    parts: tuple[str, ...]
    _steps: tuple[tuple[str, str, int], ...] = field(init=False, repr=False, compare=False)
    _only: str | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        steps = tuple((self.parts[i - 1], *_DERIVED.get(self.parts[i], (self.parts[i], _WHOLE)))
                      for i in range(1, len(self.parts), 2))
        object.__setattr__(self, "_steps", steps)
        whole = len(steps) == 1 and steps[0][2] == _WHOLE and not self.parts[0] + self.parts[2]
        object.__setattr__(self, "_only", steps[0][1] if whole else None)

    @classmethod
    def parse(cls, text: str) -> KeyTemplate:
        """Parse ``text``; ``ConfigError`` for an unknown attribute or a stray ``{{``/``}}``."""
        parts: list[str] = []
        position = 0
        for match in _PLACEHOLDER.finditer(text):
            parts.append(text[position:match.start()])
            parts.append(_normalise(match.group(1), text))
            position = match.end()
        parts.append(text[position:])
        if any("{{" in part or "}}" in part for part in parts[::2]):
            raise ConfigError(f"key template {text!r}: unbalanced '{{{{' or '}}}}'")
        return cls(text, tuple(parts))

    @property
    def attributes(self) -> tuple[str, ...]:
        """The base attributes ``render`` looks up, each once, in order of first use."""
        return tuple(dict.fromkeys(base for _, base, _ in self._steps))

    @property
    def header_names(self) -> tuple[str, ...]:
        """The (lower-cased) request headers the template reads."""
        return tuple(name[len(HEADER_PREFIX):] for name in self.attributes
                     if name.startswith(HEADER_PREFIX))

    def render(self, values: Mapping[str, str]) -> str:
        """The key for a request whose base attributes are ``values`` (absent: empty)."""
        if self._only is not None:
            return values.get(self._only) or ""
        out = []
        for literal, base, how in self._steps:
            value = values.get(base) or ""
            if how == _BEFORE_QUERY:
                value = value.partition("?")[0]
            elif how == _QUERY:
                value = value.partition("?")[2]
            out.append(literal)
            out.append(value)
        out.append(self.parts[-1])
        return "".join(out)


def parse_key_templates(texts: Sequence[str]) -> tuple[KeyTemplate, ...]:
    """Parse several templates (one per ``rateLimitKeys`` entry), in order."""
    return tuple(KeyTemplate.parse(text) for text in texts)


def template_attributes(templates: Iterable[KeyTemplate]) -> tuple[str, ...]:
    """The base attributes any of ``templates`` reads, each once, in order of first use."""
    return tuple(dict.fromkeys(name for t in templates for name in t.attributes))


def header_values(headers: Mapping[str, object]) -> dict[str, str]:
    """A lookup for ``render`` from request headers (names in any case). A list of values, or
    names that differ only in case, are one repeated header: values joined by ``,``.

    >>> header_values({"X-Tag": ["a", "b"], "x-tag": "c", "Accept": "*/*"})
    {'request.headers.x-tag': 'a,b,c', 'request.headers.accept': '*/*'}
    """
    values: dict[str, str] = {}
    for name, value in headers.items():
        attribute, text = HEADER_PREFIX + str(name).lower(), header_text(value)
        values[attribute] = f"{values[attribute]},{text}" if attribute in values else text
    return values


def header_text(value: object) -> str:
    """One header's value as text: a list (a repeated header) joined by ``,``."""
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def render_keys(templates: Sequence[KeyTemplate], values: Mapping[str, str]) -> tuple[str, ...]:
    """The request's rate-limit keys, one per template, in the plug-in's order."""
    return tuple(template.render(values) for template in templates)
