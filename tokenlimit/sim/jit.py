"""numba compilation with the on-disk cache when it can be used, and without it otherwise.

``numba.njit(cache=True)`` raises ``RuntimeError("cannot cache function ...: no locator
available")`` at decoration time when neither the package's ``__pycache__`` nor a user cache
directory is writable (a read-only install, a user without a home). The functions then compile
in memory on each run instead of failing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def njit(function: Callable[..., Any], **options: Any) -> Any:
    """``numba.njit(cache=True, **options)(function)``, falling back to no cache."""
    import numba  # callers import this module only where they compile

    try:
        return numba.njit(cache=True, **options)(function)
    except RuntimeError:
        return numba.njit(**options)(function)
