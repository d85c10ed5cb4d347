"""PNG charts of a replay and of a sweep (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tokenlimit.bucket.types import Charge
from tokenlimit.files import atomic_writer
from tokenlimit.rules.model import Rule
from tokenlimit.sim.engine import ALLOW, DENY, Replay
from tokenlimit.sim.trace_table import Trace, key_label


def pyplot() -> Any:
    """matplotlib's pyplot on the file-only Agg backend, imported when a chart is drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(figure: Any, path: str | Path) -> None:
    """Write ``figure`` to ``path`` as PNG, whole or not at all."""
    with atomic_writer(path) as handle:
        figure.savefig(handle, format="png", dpi=110)


MAX_KEYS = 4  # rows of a replay plot: more would make a poster, not a chart


def replay_figure(rules: Sequence[Rule], trace: Trace, replay: Replay, keys: Sequence[str],
                  charge: Charge = "completion", *, rules_origin: str = "the rules",
                  top: int | None = None, semantics: str = "asm", speed: float = 1.0) -> Any:
    """The replay's figure (a matplotlib ``Figure``): per key in ``keys`` (at most
    ``MAX_KEYS``), the balance at each check with limited checks marked, and the charged tokens
    admitted per minute against the rule's sustained rate. Time runs in seconds, minutes,
    hours or days since the first request, as ``time_unit`` picks for the trace's length; in
    hours or days a bar is an hour or a day, at its mean per minute. Titled with the trace,
    ``rules_origin``, ``semantics`` (when it is not ``asm``) and ``speed`` (when it is not 1:
    ``trace`` is then the sped-up one, and its times are drawn); one legend below the panels,
    none on the data; a note when fewer keys are drawn than ``top`` (the ``--top`` asked for)
    or than ``keys``.
    """
    plt = pyplot()
    index = {name: i for i, name in enumerate(trace.key_names)}
    shown = [k for k in keys if k in index][:MAX_KEYS]
    title = (f"simulate {trace.path} with {rules_origin} "
             f"({_options(semantics, speed, f'{charge} tokens charged')})")
    if not shown:  # no key decided a request: there is no balance, nothing was limited
        return _no_keys_figure(plt, title)
    rows = len(shown)
    figure, axes = plt.subplots(rows, 2, figsize=(12, 1.2 + 2.8 * rows), squeeze=False,
                                layout="constrained")
    start = float(trace.ts.min()) if len(trace) else 0.0
    span = float(trace.ts.max()) - start if len(trace) else 0.0
    unit, unit_name = time_unit(span)
    binned = max(60.0, unit)  # seconds of traffic a bar adds up
    bin_name = "minute" if binned == 60 else unit_name.removesuffix("s")
    per = "in the minute" if binned == 60 else f"per minute, mean over each {bin_name}"
    charged = trace.charged(charge)
    handles: dict[str, Any] = {}
    for row, name in enumerate(shown):
        k = index[name]
        mine = np.flatnonzero(replay.key == k)
        since = (trace.ts[mine] - start) / unit
        left, right = axes[row]
        handles["balance at check"] = left.step(
            since, replay.balance[mine], where="post", color="tab:blue", lw=1)[0]
        denied = replay.outcome[mine] == DENY
        handles["limited check"] = left.scatter(
            since[denied], replay.balance[mine][denied], marker="x", color="red", s=18,
            zorder=3)
        left.axhline(0, color="grey", lw=0.6)
        label = short_label(key_label(name))
        left.set_title(f"{label}: balance", fontsize=9)
        left.set_ylabel("balance (tokens)", fontsize=8)
        admitted = mine[replay.outcome[mine] == ALLOW]
        bins = np.floor((trace.ts[admitted] - start) / binned).astype(np.int64)
        per_bin = np.bincount(bins, weights=charged[admitted]) if bins.size else np.zeros(1)
        handles[f"{charge} tokens admitted {per}"] = right.bar(
            np.arange(per_bin.size) * (binned / unit), per_bin / (binned / 60.0),
            width=binned / unit, align="edge", color="tab:green")
        rule_index = int(replay.rule[mine[0]]) if mine.size else -1
        rule_text = "no rule"
        if rule_index >= 0:
            rate = rules[rule_index].sustained_tokens_per_second * 60
            handles["the rule's sustained rate"] = right.axhline(rate, color="black", ls="--",
                                                                 lw=1)
            rule_text = f"rule {rule_index}, sustained {rate:,.0f}/min"
        right.set_title(f"{label}: tokens admitted per minute ({rule_text})",
                        fontsize=9)
        mean = "" if binned == 60 else f", {'daily' if bin_name == 'day' else 'hourly'} mean"
        right.set_ylabel(f"tokens per minute{mean}", fontsize=8)
        for axis in (left, right):  # one time range for every panel: the whole trace
            axis.set_xlim(0, math.floor(span / unit) + 1)
            axis.tick_params(labelsize=8)
        if row == rows - 1:
            for axis in (left, right):
                axis.set_xlabel(f"{unit_name} since the first request", fontsize=8)
    wanted = len(keys) if top is None else top
    if len(shown) < wanted and len(keys) > len(shown):
        title += (f"\n{len(shown)} of the {wanted} keys --top asks for are drawn (a plot "
                  f"draws at most {MAX_KEYS})")
    elif len(shown) < wanted:
        which = "the only key" if len(shown) == 1 else f"all {len(shown)} keys"
        verb = "is" if len(shown) == 1 else "are"
        title += f"\n{which} that a rule matches {verb} drawn (--top {wanted})"
    figure.suptitle(title, fontsize=10)
    figure.legend(list(handles.values()), list(handles), loc="outside lower center",
                  ncols=len(handles), fontsize=8, frameon=False)
    return figure


_TIME_UNITS = ((120.0, 1.0, "seconds"), (6 * 3600.0, 60.0, "minutes"),
               (7 * 86400.0, 3600.0, "hours"), (math.inf, 86400.0, "days"))


def time_unit(span: float) -> tuple[float, str]:
    """The unit of a chart's time axis for a trace lasting ``span`` seconds: its length in
    seconds and its name. A minute of ticks for one second of traffic drew the whole trace in
    a sliver at 0, and 43,200 minutes for a month drew bars too thin to see.

    >>> time_unit(30), time_unit(3600), time_unit(86400), time_unit(30 * 86400)
    ((1.0, 'seconds'), (60.0, 'minutes'), (3600.0, 'hours'), (86400.0, 'days'))
    """
    return next((size, name) for limit, size, name in _TIME_UNITS if span <= limit)


def short_label(key: str, width: int = 24) -> str:
    """A key cut in the middle to ``width`` characters for a panel's title: a long key's title
    ran over the next panel's and hid it.

    >>> short_label("regular-user-00005"), short_label("tenant-" + "x" * 40 + "-00005")
    ('regular-user-00005', 'tenant-xxxxxxxxx…x-00005')
    """
    if len(key) <= width:
        return key
    tail = (width - 1) // 3
    return f"{key[:width - 1 - tail]}…{key[-tail:]}"


def _options(semantics: str, speed: float, *more: str) -> str:
    """A chart title's options: the limiter when it is not the service's own (the charts of
    ``--semantics gcra`` and of ``asm`` looked alike), ``--speed`` when it is not 1, then
    ``more``.

    >>> _options("asm", 1.0), _options("gcra", 100.0, "total tokens charged")
    ('', '--semantics gcra, --speed 100, total tokens charged')
    """
    return ", ".join(option for option in (
        "" if semantics == "asm" else f"--semantics {semantics}",
        f"--speed {speed:g}" if speed != 1 else "", *more) if option)


def _no_keys_figure(plt: Any, title: str) -> Any:
    """A figure that says there is nothing to draw: no request's key matches a rule (empty
    axes would look like a chart of a key that was never limited)."""
    figure, axis = plt.subplots(figsize=(12, 2.0), layout="constrained")
    axis.set_axis_off()
    axis.text(0.5, 0.5, "no request's key matches a rule: no balance or admitted tokens to "
              "draw", ha="center", va="center", fontsize=10)
    figure.suptitle(title, fontsize=10)
    return figure


def plot_replay(path: str | Path, rules: Sequence[Rule], trace: Trace, replay: Replay,
                keys: Sequence[str], charge: Charge = "completion", *,
                rules_origin: str = "the rules", top: int | None = None,
                semantics: str = "asm", speed: float = 1.0) -> None:
    """Write ``replay_figure`` as a PNG at ``path`` (atomically)."""
    plt = pyplot()
    figure = replay_figure(rules, trace, replay, keys, charge, rules_origin=rules_origin,
                           top=top, semantics=semantics, speed=speed)
    save_png(figure, path)
    plt.close(figure)


def plot_sweep(path: str | Path, labels: Sequence[str], limited_pct: Sequence[float],
               tokens: Sequence[int], *, trace_path: str, rules_origin: str,
               semantics: str = "asm", charge: Charge = "completion",
               speed: float = 1.0) -> None:
    """Limited % and tokens admitted for each setting of a sweep (one bar row per setting)
    of the trace at ``trace_path`` through the rules from ``rules_origin``."""
    plt = pyplot()
    height = 1.2 + 0.45 * len(labels)
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, height), sharey=True)
    positions = np.arange(len(labels))
    left.barh(positions, limited_pct, color="tab:red")
    left.set_xlabel("limited %")
    right.barh(positions, tokens, color="tab:green")
    right.set_xlabel(f"{charge} tokens admitted")
    right.xaxis.set_major_formatter("{x:,.0f}")  # 140,000, as the bars' labels
    left.set_yticks(positions, [label.replace(" ", "\n") for label in labels], fontsize=8)
    left.invert_yaxis()
    for axis, values in ((left, limited_pct), (right, tokens)):
        for y, value in zip(positions, values, strict=True):
            text = f"{value:.1f}%" if axis is left else f"{int(value):,}"
            axis.text(value, y, f" {text}", va="center", fontsize=7)
        axis.margins(x=0.15)
    options = _options(semantics, speed)
    limiter = f" ({options})" if options else ""
    figure.suptitle(f"simulate {trace_path} with {rules_origin}{limiter}: each --set setting",
                    fontsize=10)
    figure.tight_layout()
    save_png(figure, path)
    plt.close(figure)
