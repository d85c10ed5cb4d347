"""Completion tokens for requests recorded without usage (limited when recorded, or a log line
of a request the gateway answered 429): drawn, with a seeded generator, from the completion
tokens recorded for the same first key (all recorded requests when that key has none)."""

from __future__ import annotations

from typing import Any

import numpy as np

from tokenlimit.errors import ConfigError

MISSING = -1  # a token count the trace does not give


def impute_completion(completion: Any, ptr: Any, index: Any, seed: int) -> Any:
    """Fill ``MISSING`` completion counts in place from each first key's recorded counts.

    Returns the mask of imputed requests. Groups are drawn in first-key order with one
    generator seeded by ``seed``, so a run is reproducible.
    """
    missing = completion == MISSING
    if not missing.any():
        return missing
    if seed < 0:
        raise ConfigError(f"seed must be a whole number >= 0, got {seed}")
    rng = np.random.default_rng(seed)
    n = completion.shape[0]
    has_key = ptr[1:] > ptr[:-1]
    first = np.full(n, -1, dtype=np.int64)
    first[has_key] = index[ptr[:-1][has_key]]
    recorded = completion[~missing]
    # Rows grouped by first key (stable: file order within a key), once: one pass per key
    # over the whole trace would cost keys x requests on a log with many limited keys.
    wanting = np.flatnonzero(missing)
    wanting = wanting[np.argsort(first[wanting], kind="stable")]
    pools = np.flatnonzero(~missing)
    pools = pools[np.argsort(first[pools], kind="stable")]
    pool_keys = first[pools]
    keys, starts = np.unique(first[wanting], return_index=True)
    stops = np.append(starts[1:], wanting.size)
    pool_starts = np.searchsorted(pool_keys, keys, side="left")
    pool_stops = np.searchsorted(pool_keys, keys, side="right")
    for start, stop, pool_start, pool_stop in zip(starts.tolist(), stops.tolist(),
                                                  pool_starts.tolist(), pool_stops.tolist(),
                                                  strict=True):
        rows = wanting[start:stop]
        pool = completion[pools[pool_start:pool_stop]]
        if pool.size == 0:
            pool = recorded
        completion[rows] = rng.choice(pool, size=rows.size) if pool.size else 0
    return missing
