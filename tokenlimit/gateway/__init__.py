"""The plug-in's behaviour (check, forward, report) and a mock OpenAI-style upstream.

``Gateway`` and ``MockLLM`` are raw ASGI apps; ``server`` serves them on loopback with the
package's own HTTP server (``http_server``), in the foreground (``run_foreground``) or in a
background thread (``BackgroundServers``).

The names below are imported on first use (httptools loads only when needed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tokenlimit._lazy import lazy_exports

if TYPE_CHECKING:
    from tokenlimit.bucket.key_templates import KeyTemplate, render_keys
    from tokenlimit.bucket.types import Usage
    from tokenlimit.gateway.addresses import LOOPBACK
    from tokenlimit.gateway.attributes import RequestAttributes
    from tokenlimit.gateway.config import (
        GatewayConfig,
        PluginSettings,
        build_config,
        load_plugin,
    )
    from tokenlimit.gateway.health import GatewayEvent, GatewayStats
    from tokenlimit.gateway.mock_llm import MockLLM, MockSettings, TokenDraw, prompt_tokens
    from tokenlimit.gateway.proxy import Gateway
    from tokenlimit.gateway.server import BackgroundServers, Listener, bind, run_foreground
    from tokenlimit.gateway.usage import UsageReader
else:
    __getattr__, __dir__ = lazy_exports(__name__, {
        "tokenlimit.gateway.attributes": ("RequestAttributes",),
        "tokenlimit.gateway.config": ("GatewayConfig", "PluginSettings", "build_config",
                                      "load_plugin"),
        "tokenlimit.gateway.addresses": ("LOOPBACK",),
        "tokenlimit.gateway.health": ("GatewayEvent", "GatewayStats"),
        "tokenlimit.gateway.mock_llm": ("MockLLM", "MockSettings", "TokenDraw", "prompt_tokens"),
        "tokenlimit.gateway.proxy": ("Gateway",),
        "tokenlimit.gateway.server": ("BackgroundServers", "Listener", "bind", "run_foreground"),
        "tokenlimit.gateway.usage": ("UsageReader",),
        "tokenlimit.bucket.types": ("Usage",),
        "tokenlimit.bucket.key_templates": ("KeyTemplate", "render_keys"),
    })

__all__ = [
    "LOOPBACK",
    "BackgroundServers",
    "Gateway",
    "GatewayConfig",
    "GatewayEvent",
    "GatewayStats",
    "KeyTemplate",
    "Listener",
    "MockLLM",
    "MockSettings",
    "PluginSettings",
    "RequestAttributes",
    "TokenDraw",
    "Usage",
    "UsageReader",
    "bind",
    "build_config",
    "load_plugin",
    "prompt_tokens",
    "render_keys",
    "run_foreground",
]
