"""PNG charts of a replay and of a sweep (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tokenlimit.bucket.types import Charge
from tokenlimit.files import atomic_writer
from tokenlimit.rules.model import Rule
from tokenlimit.sim.engine import ALLOW, DENY, Replay
from tokenlimit.sim.trace_table import Trace


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure: Any, path: str | Path) -> None:
    with atomic_writer(path) as handle:
        figure.savefig(handle, format="png", dpi=110)


def plot_replay(path: str | Path, rules: Sequence[Rule], trace: Trace, replay: Replay,
                keys: Sequence[str], charge: Charge = "completion") -> None:
    """Per key in ``keys``: balance at each check (limited checks marked) and charged tokens
    admitted per minute against the rule's sustained rate."""
    plt = _pyplot()
    index = {name: i for i, name in enumerate(trace.key_names)}
    shown = [k for k in keys if k in index][:4] or list(trace.key_names[:1])
    figure, axes = plt.subplots(max(len(shown), 1), 2, figsize=(12, 2.8 * max(len(shown), 1)),
                                squeeze=False)
    start = float(trace.ts.min()) if len(trace) else 0.0
    charged = trace.charged(charge)
    for row, name in enumerate(shown):
        k = index[name]
        mine = np.flatnonzero(replay.key == k)
        minutes = (trace.ts[mine] - start) / 60.0
        left, right = axes[row]
        left.step(minutes, replay.balance[mine], where="post", color="tab:blue", lw=1,
                  label="balance at check")
        denied = replay.outcome[mine] == DENY
        left.scatter(minutes[denied], replay.balance[mine][denied], marker="x", color="red",
                     s=18, label="limited", zorder=3)
        left.axhline(0, color="grey", lw=0.6)
        left.set_title(f"{name}: balance", fontsize=9)
        left.set_xlabel("minutes since first request", fontsize=8)
        left.legend(fontsize=7, loc="lower left")
        admitted = mine[replay.outcome[mine] == ALLOW]
        bins = np.floor((trace.ts[admitted] - start) / 60.0).astype(np.int64)
        per_minute = np.bincount(bins, weights=charged[admitted]) if bins.size else np.zeros(1)
        right.bar(np.arange(per_minute.size), per_minute, width=1.0, color="tab:green",
                  label=f"{charge} tokens admitted / min")
        rule_index = int(replay.rule[mine[0]]) if mine.size else -1
        if rule_index >= 0:
            rate = rules[rule_index].sustained_tokens_per_second * 60
            right.axhline(rate, color="black", ls="--", lw=1,
                          label=f"rule {rule_index} sustained {rate:.0f}/min")
        right.set_title(f"{name}: tokens admitted per minute", fontsize=9)
        right.set_xlabel("minute", fontsize=8)
        right.legend(fontsize=7, loc="upper right")
    figure.tight_layout()
    _save(figure, path)
    plt.close(figure)


def plot_sweep(path: str | Path, labels: Sequence[str], limited_pct: Sequence[float],
               tokens: Sequence[int]) -> None:
    """Limited % and tokens admitted for each setting of a sweep (one bar row per setting)."""
    plt = _pyplot()
    height = 1.2 + 0.45 * len(labels)
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, height), sharey=True)
    positions = np.arange(len(labels))
    left.barh(positions, limited_pct, color="tab:red")
    left.set_xlabel("limited %")
    right.barh(positions, tokens, color="tab:green")
    right.set_xlabel("tokens admitted")
    left.set_yticks(positions, [label.replace(" ", "\n") for label in labels], fontsize=8)
    left.invert_yaxis()
    for axis, values in ((left, limited_pct), (right, tokens)):
        for y, value in zip(positions, values, strict=True):
            text = f"{value:.1f}%" if axis is left else f"{int(value):,}"
            axis.text(value, y, f" {text}", va="center", fontsize=7)
        axis.margins(x=0.15)
    figure.suptitle("sweep: the same trace under each setting", fontsize=10)
    figure.tight_layout()
    _save(figure, path)
    plt.close(figure)
