"""``--plot report.png``: throughput and latency over time, tokens admitted per key.

matplotlib with the Agg backend (no display needed); imported only when a plot is asked for.
"""

from __future__ import annotations

import io
import math
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


def render_plot(report: LoadReport, rules: list[Rule] | None) -> bytes:
    """The PNG bytes of the report's plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stats = report.stats
    seconds = sorted(stats.timeline)
    t0 = stats.started or (seconds[0] if seconds else 0.0)
    # Each wall-clock second [s, s + 1) drawn where it lies relative to the start: the first
    # and last seconds of a run are partial, and their bars say so by where they begin.
    xs = [s - t0 for s in seconds]
    fig, axes = plt.subplots(3, 1, figsize=(10, 11), constrained_layout=True)
    ax: Any = axes[0]
    tl = [stats.timeline[s] for s in seconds]
    bottom = [0] * len(tl)
    for name, color in (("allowed", "#2a9d8f"), ("limited", "#e9c46a"), ("errors", "#e76f51")):
        heights = [getattr(t, name) for t in tl]
        ax.bar(xs, heights, width=1.0, align="edge", bottom=bottom, color=color, label=name,
               edgecolor="white", linewidth=0.5)
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    ax.set_title(f"Throughput ({report.load}; {report.target})")
    ax.set_ylabel("answers per second")
    ax.set_xlabel("seconds since start")
    ax.legend(loc="upper right")
    ax = axes[1]
    for p, style in ((50.0, "-"), (99.0, "--"), (100.0, ":")):
        ys = [(t.latency.percentile_us(p) or 0) / 1000 for t in tl]
        ax.plot([x + 0.5 for x in xs], ys, style, marker="o", markersize=3,
                label="max" if p == 100 else f"p{p:g}")
    ax.set_title("Latency per second (from intended send time)")
    ax.set_ylabel("ms")
    ax.set_xlabel("seconds since start")
    ax.legend(loc="upper right")
    ax = axes[2]
    matcher = RuleMatcher(rules) if rules else None
    keys = sorted(stats.keys, key=lambda k: -stats.keys[k].tokens_admitted)[:TOP_KEYS]
    end = stats.duration
    for index, key in enumerate(keys):
        total, ys = 0, [0]
        for t in tl:
            total += t.tokens.get(key, 0)
            ys.append(total)
        color = f"C{index}"
        # Tokens admitted by the end of each second (answers counted when they arrived).
        ends = [0.0] + [min(x + 1, end) for x in xs]
        ax.plot(ends, ys, color=color, marker="o", markersize=3, label=f"{key} admitted")
        rule_index = matcher.index_for(key) if matcher else None
        if rule_index is not None and matcher is not None and xs:
            span = [end * i / 200 for i in range(201)]
            ax.plot(span, budget_line(matcher.rules[rule_index], span), color=color,
                    linestyle="--", alpha=0.7, label=f"{key} budget (rule {rule_index})")
    ax.set_title("Completion tokens admitted per key (cumulative) against the rule's budget")
    ax.set_ylabel("tokens")
    ax.set_xlabel("seconds since start")
    if keys:
        ax.legend(loc="upper left", fontsize="small")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return buffer.getvalue()


def write_plot(report: LoadReport, rules: list[Rule] | None, path: str) -> None:
    """Render and write the plot atomically."""
    write_atomic(path, render_plot(report, rules))
