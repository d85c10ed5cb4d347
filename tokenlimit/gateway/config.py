"""What the gateway does, from command-line options or a WasmPlugin manifest's pluginConfig.

The manifest is the one ASM applies (see ``samples/wasmplugin.yaml``)::

    pluginConfig:
      matches: [{host: {exact: "dashscope.aliyuncs.com"}}]
      rateLimitKeys: ["{{request.headers.user-type}}"]
      rateLimitService: {service: asm-llm-token-rate-limit-example.default.svc.cluster.local,
                         port: 80}
    failStrategy: FAIL_OPEN

``matches`` absent or empty means every host is limited. ``failStrategy`` is Istio's
``FAIL_OPEN`` / ``FAIL_CLOSE`` (Istio's default is ``FAIL_CLOSE``).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from tokenlimit.bucket.key_templates import KeyTemplate, parse_key_templates
from tokenlimit.errors import ConfigError

DEFAULT_KEY_TEMPLATE = "{{request.headers.user-type}}"
FAIL_STRATEGIES = {"FAIL_OPEN": True, "FAIL_CLOSE": False}


def host_name(host: str) -> str:
    """A Host header's name alone, for matching: lower case, no port, no trailing dot.

    >>> host_name("DashScope.aliyuncs.com.:8080"), host_name("[::1]:80")
    ('dashscope.aliyuncs.com', '[::1]')
    """
    name = host.strip().lower()
    if name.startswith("["):  # an IPv6 literal: the port, if any, follows the bracket
        end = name.find("]")
        name = name[:end + 1] if end > 0 else name
    else:
        base, sep, port = name.rpartition(":")
        if sep and port.isdigit():
            name = base
    return name.rstrip(".")


_host_name_cached = functools.lru_cache(maxsize=1024)(host_name)  # clients repeat their Host


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """Everything the gateway needs. ``hosts`` empty: every request is limited."""

    upstream: str
    service: str
    templates: tuple[KeyTemplate, ...]
    hosts: tuple[str, ...] = ()
    fail_open: bool = True
    service_timeout: float = 2.0
    upstream_timeout: float = 600.0
    drain_seconds: float = 30.0  # after a client hangs up, read its answer on this long at most
    drain_bytes: int = 16 * 1024 * 1024  # ... and this many bytes at most

    def __post_init__(self) -> None:
        for name, url in (("upstream", self.upstream), ("service", self.service)):
            if not url.startswith(("http://", "https://")):
                raise ConfigError(f"--{name} {url!r}: give a URL starting with http:// or https://")
            _check_url(name, url)
        for host in self.hosts:
            if not host or any(c in host for c in "/ \t"):
                raise ConfigError(f"--host-match {host!r}: give a host name such as "
                                  "dashscope.aliyuncs.com (no scheme, path or spaces)")
        if not self.templates:
            raise ConfigError("no rate-limit key template: give at least one --key-template")

    def matches(self, host: str) -> bool:
        """Whether requests to ``host`` are limited: the names compared without case, a port or
        a trailing dot (``Dashscope.Aliyuncs.com.:80`` is ``dashscope.aliyuncs.com``)."""
        return not self.hosts or _host_name_cached(host) in self.hosts

    @property
    def key_templates(self) -> list[str]:
        """The templates as text."""
        return [t.text for t in self.templates]


@dataclass(frozen=True, slots=True)
class PluginSettings:
    """The parts of a WasmPlugin that the gateway reproduces."""

    path: str
    hosts: tuple[str, ...]
    key_templates: tuple[str, ...]
    service: str | None
    fail_open: bool


def _field(path: str, where: str, message: str) -> ConfigError:
    return ConfigError(f"{path}: {where}: {message}")


def _find_wasmplugin(path: str, documents: list[Any]) -> dict[str, Any]:
    plugins = [d for d in documents if isinstance(d, dict) and d.get("kind") == "WasmPlugin"]
    if not plugins:
        raise ConfigError(f"{path}: no document of kind WasmPlugin")
    if len(plugins) > 1:
        raise ConfigError(f"{path}: {len(plugins)} WasmPlugin documents; keep one in the file")
    return plugins[0]


def _hosts(path: str, config: dict[str, Any]) -> tuple[str, ...]:
    matches = config.get("matches") or []
    if not isinstance(matches, list):
        raise _field(path, "spec.pluginConfig.matches", "must be a list")
    hosts: list[str] = []
    for index, match in enumerate(matches):
        where = f"spec.pluginConfig.matches[{index}].host.exact"
        host = match.get("host") if isinstance(match, dict) else None
        exact = host.get("exact") if isinstance(host, dict) else None
        if not isinstance(exact, str) or not exact:
            raise _field(path, where, "must be a non-empty string")
        hosts.append(host_name(exact))
    return tuple(hosts)


def _keys(path: str, config: dict[str, Any]) -> tuple[str, ...]:
    keys = config.get("rateLimitKeys")
    where = "spec.pluginConfig.rateLimitKeys"
    if not isinstance(keys, list) or not keys:
        raise _field(path, where, "must be a non-empty list of key templates")
    for index, key in enumerate(keys):
        if not isinstance(key, str):
            raise _field(path, f"{where}[{index}]", "must be a string")
    return tuple(keys)


def _service(path: str, config: dict[str, Any]) -> str | None:
    service = config.get("rateLimitService")
    if service is None:
        return None
    where = "spec.pluginConfig.rateLimitService"
    if not isinstance(service, dict) or not isinstance(service.get("service"), str):
        raise _field(path, f"{where}.service", "must be a host name")
    port = service.get("port", 80)
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise _field(path, f"{where}.port", "must be a port number")
    return f"http://{service['service']}:{port}"


def _check_url(name: str, url: str) -> None:
    """A ``ConfigError`` for a URL httpx would refuse at the first request (bad host or port)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"--{name} {url!r}: not a valid URL ({exc})") from exc
    if not parts.hostname:
        raise ConfigError(f"--{name} {url!r}: the URL has no host")
    if port == 0:
        raise ConfigError(f"--{name} {url!r}: port 0 is not a port to connect to")
    if parts.path.strip("/") or parts.query or parts.fragment or "@" in parts.netloc:
        # a path was dropped without a word: a base URL such as .../compatible-mode/v1 sent
        # the client's /chat/completions to the upstream's /chat/completions, a 404
        why = ("a path belongs in the client's base URL: each request's path goes upstream as "
               "the client sent it, as through the sidecar" if name == "upstream"
               else "the service answers at /ratelimit and /update_ratelimit_record")
        origin = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
        raise ConfigError(f"--{name} {url!r}: give only the scheme, host and port ({origin}); "
                          f"{why}")


def load_plugin(path: str | Path) -> PluginSettings:
    """Read a WasmPlugin manifest (YAML, one or several documents)."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
        documents = list(yaml.safe_load_all(text))
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{name}: not UTF-8 text (byte {exc.start})") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{name}:{mark.line + 1}" if mark is not None else name
        raise ConfigError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from exc
    plugin = _find_wasmplugin(name, documents)
    spec = plugin.get("spec")
    config = spec.get("pluginConfig") if isinstance(spec, dict) else None
    if not isinstance(config, dict):
        raise _field(name, "spec.pluginConfig", "missing or not a mapping")
    strategy = spec.get("failStrategy", "FAIL_CLOSE") if isinstance(spec, dict) else "FAIL_CLOSE"
    if strategy not in FAIL_STRATEGIES:
        raise _field(name, "spec.failStrategy", f"{strategy!r} is not FAIL_OPEN or FAIL_CLOSE")
    return PluginSettings(name, _hosts(name, config), _keys(name, config),
                          _service(name, config), FAIL_STRATEGIES[strategy])


def build_config(
    *,
    upstream: str,
    service: str | None,
    key_templates: Sequence[str] = (),
    hosts: Sequence[str] = (),
    fail_open: bool | None = None,
    plugin: PluginSettings | None = None,
    service_timeout: float = 2.0,
) -> GatewayConfig:
    """Options given on the command line win over the plug-in manifest's settings."""
    if plugin is not None:
        key_templates = key_templates or plugin.key_templates
        hosts = hosts or plugin.hosts
        service = service or plugin.service
        fail_open = plugin.fail_open if fail_open is None else fail_open
    if service is None:
        raise ConfigError("no rate-limit service: give --service URL (or --plugin with "
                          "pluginConfig.rateLimitService)")
    return GatewayConfig(
        upstream=upstream.rstrip("/"),
        service=service.rstrip("/"),
        templates=parse_key_templates(list(key_templates) or [DEFAULT_KEY_TEMPLATE]),
        hosts=tuple(host_name(h) for h in hosts),
        fail_open=True if fail_open is None else fail_open,
        service_timeout=service_timeout,
    )
