"""What a key template sees of a live request: ``RequestAttributes``, a lookup of its attributes.

The templates themselves (parsing, the attribute names, rendering) live in
:mod:`tokenlimit.bucket.key_templates`, shared with the simulator; this module only answers, for one
request, the base attributes a template asks for.

>>> from tokenlimit.bucket.key_templates import KeyTemplate
>>> request = RequestAttributes("POST", "/v1?a=1", "h", headers=(("user-type", "subscriber"),))
>>> KeyTemplate.parse("{{request.headers.User-Type}}@{{request.host}}{{request.url_path}}").render(
...     request)
'subscriber@h/v1'
>>> request["request.query"]
Traceback (most recent call last):
...
KeyError: 'request.query'
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from tokenlimit.bucket.key_templates import HEADER_PREFIX


def _peer(peer: tuple[str, int] | None, address: bool) -> str:
    if peer is None:
        return ""
    return f"{peer[0]}:{peer[1]}" if address else str(peer[1])


_VALUES: dict[str, Callable[[RequestAttributes], str]] = {
    "request.path": lambda r: r.path,
    "request.host": lambda r: r.host,
    "request.method": lambda r: r.method,
    "request.scheme": lambda r: r.scheme,
    "request.protocol": lambda r: r.protocol,
    "source.address": lambda r: _peer(r.source, True),
    "source.port": lambda r: _peer(r.source, False),
    "destination.address": lambda r: _peer(r.destination, True),
    "destination.port": lambda r: _peer(r.destination, False),
}


@dataclass(frozen=True, slots=True)
class RequestAttributes(Mapping[str, str]):
    """One request, as a lookup of its base attributes (``tokenlimit.bucket.key_templates``):
    the names in ``BASE_ATTRIBUTES`` and ``request.headers.<name>`` for each header it carries
    (several values joined by ``,``). ``headers`` hold lower-case names; ``path`` holds
    the query."""

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

    def __getitem__(self, attribute: str) -> str:
        if attribute.startswith(HEADER_PREFIX):
            return self.header(attribute[len(HEADER_PREFIX):])
        return _VALUES[attribute](self)

    def __iter__(self) -> Iterator[str]:
        yield from _VALUES
        yield from dict.fromkeys(HEADER_PREFIX + key for key, _ in self.headers)

    def __len__(self) -> int:
        return len(_VALUES) + len({key for key, _ in self.headers})
