"""``--plot report.png``: throughput and latency over time, tokens admitted per key.

matplotlib with the Agg backend (no display needed); imported only when a plot is asked for.
"""

from __future__ import annotations

import io
import math
import textwrap
from typing import Any

from tokenlimit.files import write_atomic
from tokenlimit.load.run_report import LoadReport
from tokenlimit.rules.model import Rule
from tokenlimit.rules.regex import RuleMatcher

TOP_KEYS = 6


def budget_line(rule: Rule, seconds: list[float]) -> list[float]:
    """Most tokens the rule can admit by each second: the first fill plus every refill.

    >>> budget_line(Rule(0, "u", 200, 50, 30, 300), [0.0, 29.0, 30.0, 61.0])
    [50.0, 50.0, 100.0, 150.0]
    """
    if rule.fill_interval_second <= 0:
        return [float(rule.max_tokens)] * len(seconds)
    return [float(rule.tokens_per_fill * (1 + math.floor(s / rule.fill_interval_second)))
            for s in seconds]


def _legend_outside(ax: Any, **options: Any) -> None:
    """The legend to the right of the panel, off the data."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0,
              fontsize="small", **options)


def build_figure(report: LoadReport, rules: list[Rule] | None) -> Any:
    """The report's figure (a matplotlib ``Figure``): three panels on one time axis, from the
    run's start to its end (merged runs: the first start to the last end)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    stats = report.stats
    seconds = sorted(stats.timeline)
    t0 = stats.started or (seconds[0] if seconds else 0.0)
    span = max(stats.duration, 1e-3)
    # The timeline counts answers per wall-clock second [s, s + 1); the first and last seconds
    # of a run are partial, so each bar covers only the part of its second inside the run
    # (no bar before the start or past the end).
    spans = [(max(s - t0, 0.0), min(s + 1 - t0, span)) for s in seconds]
    kept = [(lo, hi, stats.timeline[s]) for (lo, hi), s in zip(spans, seconds, strict=True)
            if hi > lo]
    fig, axes = plt.subplots(3, 1, figsize=(11, 11), sharex=True, constrained_layout=True)
    title = f"{report.load}; {report.target}"
    fig.suptitle("\n".join(textwrap.wrap(f"Load test: {title}", 100)), fontsize=11)
    ax: Any = axes[0]
    lefts = [lo for lo, _, _ in kept]
    widths = [hi - lo for lo, hi, _ in kept]
    bottom = [0] * len(kept)
    for name, color in (("allowed", "#2a9d8f"), ("limited", "#e9c46a"), ("errors", "#e76f51")):
        heights = [getattr(t, name) for _, _, t in kept]
        ax.bar(lefts, heights, width=widths, align="edge", bottom=bottom, color=color,
               label=name, edgecolor="white", linewidth=0.5)
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    ax.set_ylim(0, max(bottom, default=0) * 1.12 or 1)  # headroom: no bar touches the frame
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # answers are counted: no 0.25
    ax.set_title("Answers in each wall-clock second (partial seconds at the ends)")
    ax.set_ylabel("answers")
    _legend_outside(ax)
    ax = axes[1]
    for p, style in ((50.0, "-"), (99.0, "--"), (100.0, ":")):
        xs, ys = [], []
        for i, (lo, hi, t) in enumerate(kept):
            if i and lo > kept[i - 1][1]:  # a gap with no answers (merged runs): no line
                xs.append(math.nan)
                ys.append(math.nan)
            xs.append((lo + hi) / 2)
            ys.append((t.latency.percentile_us(p) or 0) / 1000)
        ax.plot(xs, ys, style, marker="o", markersize=3,
                label="max" if p == 100 else f"p{p:g}")
    ax.set_title("Latency per second (from the intended send time)")
    ax.set_ylabel("latency (ms)")
    _legend_outside(ax)
    ax = axes[2]
    matcher = RuleMatcher(rules) if rules else None
    keys = sorted(stats.keys, key=lambda k: (-stats.keys[k].tokens_admitted, k))[:TOP_KEYS]
    handles: list[Any] = []
    budgets = False
    for index, key in enumerate(keys):
        total, ys, xs = 0, [0], [0.0]
        for lo, hi, t in kept:  # flat where no second was recorded (a gap between runs)
            xs.append(lo)
            ys.append(total)
            total += t.tokens.get(key, 0)
            xs.append(hi)  # tokens admitted by the end of each second (answers as they came)
            ys.append(total)
        color = f"C{index}"
        ax.plot(xs, ys, color=color)
        handles.append(Line2D([], [], color=color, label=key))
        rule_index = matcher.index_for(key) if matcher else None
        first = next((lo for lo, _, t in kept if t.tokens.get(key)), None)
        if rule_index is not None and matcher is not None and first is not None:
            # The key's budget from the start of the second it was first admitted in.
            steps = [first + (span - first) * i / 200 for i in range(201)]
            ax.plot(steps, budget_line(matcher.rules[rule_index], [x - first for x in steps]),
                    color=color, linestyle="--", alpha=0.7)
            budgets = True
    ax.set_title("Completion tokens admitted per key (cumulative)"
                 + (" against the rule's budget" if budgets else ""))
    ax.set_ylabel("tokens")
    ax.set_xlabel("seconds since start")
    if keys:
        handles.append(Line2D([], [], color="black", label="admitted"))
        if budgets:
            handles.append(Line2D([], [], color="black", linestyle="--",
                                  label="rule's budget"))
        _legend_outside(ax, handles=handles)
    ax.set_xlim(0, span * 1.01)  # the run's span; markers at its end stay whole
    if not kept:  # nothing answered: say so instead of empty frames with legends
        for axis in axes:
            legend = axis.get_legend()
            if legend is not None:
                legend.remove()
            axis.set_ylim(0, 1)
            axis.text(0.5, 0.5, "no answers in this run", transform=axis.transAxes,
                      ha="center", va="center", color="grey")
    return fig


def render_plot(report: LoadReport, rules: list[Rule] | None) -> bytes:
    """The PNG bytes of the report's plot."""
    import matplotlib.pyplot as plt

    fig = build_figure(report, rules)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return buffer.getvalue()


def write_plot(report: LoadReport, rules: list[Rule] | None, path: str) -> None:
    """Render and write the plot atomically."""
    write_atomic(path, render_plot(report, rules))
