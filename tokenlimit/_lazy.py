"""Lazy package namespaces (PEP 562): a package's public names, imported on first use.

``tokenlimit.gateway``, ``load``, ``k8s`` and ``service`` export names from modules that import
httptools, redis, numpy or jsonschema. Importing those modules only when a name is first used
keeps every command's start-up (``tokenlimit --version``, ``validate``) free of them.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, Sequence[str]]
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A module ``__getattr__`` and ``__dir__`` for ``package``.

    ``exports`` maps each submodule to the names the package takes from it. A name, once
    imported, is stored in the package's namespace, so later lookups are plain attribute reads.
    """
    namespace = sys.modules[package].__dict__
    origin = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str) -> Any:
        module = origin.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(origin))

    return __getattr__, __dir__
