"""numba compilation with the on-disk cache when it can be used, and without it otherwise.

numba's cache goes to the user's cache directory (``<user cache dir>/tokenlimit/numba``, e.g.
``~/.cache/tokenlimit/numba`` on Linux), never inside the installed package: files numba left
in ``site-packages/tokenlimit/`` are not in pip's record, survive an uninstall and then turn
``tokenlimit`` into a namespace package that shadows the next install. ``NUMBA_CACHE_DIR``, when
the user sets it, wins.

``numba.njit(cache=True)`` raises ``RuntimeError("cannot cache function ...: no locator
available")`` at decoration time when no cache directory is writable (a read-only home, a user
without one). The functions then compile in memory on each run instead of failing.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import platformdirs


def numba_cache_dir() -> Path:
    """Where tokenlimit's compiled functions are cached: ``NUMBA_CACHE_DIR`` or the user's cache.

    >>> os.environ.get("NUMBA_CACHE_DIR") is not None or "tokenlimit" in numba_cache_dir().parts
    True
    """
    chosen = os.environ.get("NUMBA_CACHE_DIR")
    if chosen:
        return Path(chosen)
    return Path(platformdirs.user_cache_dir("tokenlimit", appauthor=False)) / "numba"


def _point_numba_at_user_cache() -> None:
    # numba reads NUMBA_CACHE_DIR when it is first imported; if someone imported it already,
    # its config attribute is what its cache locator reads.
    if not os.environ.get("NUMBA_CACHE_DIR"):
        os.environ["NUMBA_CACHE_DIR"] = str(numba_cache_dir())
    import numba

    if not getattr(numba.config, "CACHE_DIR", ""):
        numba.config.CACHE_DIR = os.environ["NUMBA_CACHE_DIR"]  # type: ignore[attr-defined]


def njit(function: Callable[..., Any], **options: Any) -> Any:
    """``numba.njit(cache=True, **options)(function)``, cached in the user's cache directory.

    Falls back to compiling without a cache when no cache directory can be written.
    """
    _point_numba_at_user_cache()
    import numba  # callers import this module only where they compile

    try:
        return numba.njit(cache=True, **options)(function)
    except RuntimeError:
        return numba.njit(**options)(function)


def trailing_zeros_intrinsic() -> Any:
    """numba's count of an integer's trailing zero bits (one instruction), for compiled code."""
    _point_numba_at_user_cache()
    from numba.cpython.unsafe.numbers import trailing_zeros

    return trailing_zeros
