"""Rate-limit key templates over Envoy request attributes, as the plug-in renders them.

A template is literal text with ``{{attribute}}`` placeholders, e.g.
``{{request.headers.user-type}}`` or ``tier-{{request.headers.x-tier}}@{{request.host}}``.
Supported attributes (Envoy's names):

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

An attribute that is absent (a header not sent) renders as the empty string. An unknown attribute
is a :class:`~tokenlimit.errors.ConfigError` when the template is parsed, so a typo is found at
start-up and not at the first request.

>>> template = KeyTemplate.parse("{{request.headers.User-Type}}")
>>> template.render(RequestAttributes("POST", "/v1", "h", headers=(("user-type", "subscriber"),)))
'subscriber'
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from tokenlimit.errors import ConfigError

_PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_BRACKETED = re.compile(r"""^request\.headers\[\s*(['"])(.+)\1\s*\]$""")
_HEADER_PREFIX = "request.headers."
_SIMPLE = frozenset({
    "request.path", "request.url_path", "request.query", "request.host", "request.method",
    "request.scheme", "request.protocol", "request.id", "request.referer", "request.useragent",
    "source.address", "source.port", "destination.address", "destination.port",
})
ATTRIBUTES = (*sorted(_SIMPLE), "request.headers.NAME")


@dataclass(frozen=True, slots=True)
class RequestAttributes:
    """What a key template can see of one request. ``headers`` hold lower-case names."""

    method: str
    path: str
    host: str
    scheme: str = "http"
    protocol: str = "HTTP/1.1"
    headers: tuple[tuple[str, str], ...] = ()
    source: tuple[str, int] | None = None
    destination: tuple[str, int] | None = None

    def header(self, name: str) -> str:
        """All values of header ``name`` (case-insensitive) joined by ``,``; '' when absent."""
        wanted = name.lower()
        return ",".join(value for key, value in self.headers if key == wanted)

    def value(self, attribute: str) -> str:
        """The string value of one attribute (see the module docstring for the names)."""
        if attribute.startswith(_HEADER_PREFIX):
            return self.header(attribute[len(_HEADER_PREFIX):])
        url_path, _, query = self.path.partition("?")
        values = {
            "request.path": self.path,
            "request.url_path": url_path,
            "request.query": query,
            "request.host": self.host,
            "request.method": self.method,
            "request.scheme": self.scheme,
            "request.protocol": self.protocol,
            "request.id": self.header("x-request-id"),
            "request.referer": self.header("referer"),
            "request.useragent": self.header("user-agent"),
        }
        if attribute in values:
            return values[attribute]
        peer = self.source if attribute.startswith("source.") else self.destination
        if peer is None:
            return ""
        return f"{peer[0]}:{peer[1]}" if attribute.endswith(".address") else str(peer[1])


def _check_attribute(attribute: str, template: str) -> None:
    if attribute in _SIMPLE:
        return
    if attribute.startswith(_HEADER_PREFIX) and attribute[len(_HEADER_PREFIX):].strip():
        return
    raise ConfigError(
        f"key template {template!r}: unknown attribute {attribute!r} "
        f"(known: {', '.join(ATTRIBUTES)})"
    )


@dataclass(frozen=True, slots=True)
class KeyTemplate:
    """A parsed template: literal text and attribute names, alternating."""

    text: str
    parts: tuple[tuple[bool, str], ...] = field(default=())  # (is_attribute, literal or name)

    @classmethod
    def parse(cls, text: str) -> KeyTemplate:
        """Parse ``text``; unknown attributes raise :class:`ConfigError`."""
        parts: list[tuple[bool, str]] = []
        position = 0
        for match in _PLACEHOLDER.finditer(text):
            if match.start() > position:
                parts.append((False, text[position:match.start()]))
            attribute = match.group(1)
            if bracketed := _BRACKETED.match(attribute):  # CEL's request.headers['name']
                attribute = _HEADER_PREFIX + bracketed.group(2)
            _check_attribute(attribute, text)
            parts.append((True, attribute))
            position = match.end()
        if position < len(text):
            parts.append((False, text[position:]))
        return cls(text, tuple(parts))

    def render(self, request: RequestAttributes) -> str:
        """The key string for ``request``."""
        return "".join(request.value(part) if is_attr else part for is_attr, part in self.parts)


def parse_templates(texts: Sequence[str]) -> tuple[KeyTemplate, ...]:
    """Parse several templates, in order."""
    return tuple(KeyTemplate.parse(text) for text in texts)


def render_keys(templates: Sequence[KeyTemplate], request: RequestAttributes) -> list[str]:
    """The rate-limit keys of ``request``, one per template, in template order."""
    return [template.render(request) for template in templates]
