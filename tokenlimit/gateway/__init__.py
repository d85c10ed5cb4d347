"""The plug-in's behaviour (check, forward, report) and a mock OpenAI-style upstream.

``Gateway`` and ``MockLLM`` are raw ASGI apps; ``server`` serves them on loopback with uvicorn,
in the foreground (``run_foreground``) or in a background thread (``BackgroundServers``).
"""

from __future__ import annotations

from tokenlimit.gateway.attributes import KeyTemplate, RequestAttributes, render_keys
from tokenlimit.gateway.config import GatewayConfig, PluginSettings, build_config, load_plugin
from tokenlimit.gateway.health import GatewayEvent, GatewayStats
from tokenlimit.gateway.mock_llm import MockLLM, MockSettings, TokenDraw, prompt_tokens
from tokenlimit.gateway.proxy import Gateway
from tokenlimit.gateway.server import (
    LOOPBACK,
    BackgroundServers,
    Listener,
    bind,
    run_foreground,
)
from tokenlimit.gateway.usage import Usage, UsageReader

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
