"""The trade-off chart of ``tune --plot``: every replayed candidate, the goals, the best."""

from __future__ import annotations

from pathlib import Path

from tokenlimit.sim.conditions import Condition
from tokenlimit.sim.replay_plot import pyplot, save_png
from tokenlimit.sim.tune_goals import Scores
from tokenlimit.sim.tuning import Candidate, TuneResult

_SPEND_LABELS = {
    "key_tokens_per_hour": "most tokens one key got in one hour",
    "key_tokens_per_day": "most tokens one key got in one day",
    "key_usd_per_day": "most USD one key spent in one day",
}


def _axis(goals: tuple[Condition, ...], want_limited: bool) -> tuple[int | None, str]:
    """The goal shown on an axis (its index) and the axis label."""
    for i, goal in enumerate(goals):
        if (goal.metric == "limited") == want_limited and (goal.percent or not want_limited):
            where = ((f" among {goal.group} requests" if want_limited
                      else f" ({goal.group} keys)") if goal.group else "")
            name = ("requests limited (%)" if want_limited
                    else _SPEND_LABELS[goal.metric])
            return i, f"{name}{where}"
    return None, "requests limited (%)" if want_limited else "tokens admitted (charged)"


def _value(scores: Scores, index: int | None, want_limited: bool) -> float:
    if index is not None:
        return scores.measured[index]
    return scores.limited_pct if want_limited else float(scores.tokens_admitted)


def plot_tradeoff(path: str | Path, result: TuneResult, trace_name: str) -> None:
    """Limited share against spend for each candidate; goals as dashed lines."""
    plt = pyplot()
    y_goal, y_label = _axis(result.goals, True)
    x_goal, x_label = _axis(result.goals, False)
    figure, axis = plt.subplots(figsize=(10, 5.5))

    def points(cands: list[Candidate]) -> tuple[list[float], list[float]]:
        return ([_value(c.scores, x_goal, False) for c in cands],
                [_value(c.scores, y_goal, True) for c in cands])

    missed = [c for c in result.candidates if not c.scores.met]
    met = [c for c in result.candidates if c.scores.met]
    if missed:
        axis.scatter(*points(missed), marker="x", color="0.6", label="misses a goal")
    if met:
        axis.scatter(*points(met), marker="o", color="tab:green", label="meets every goal")
    if result.best is not None:
        axis.scatter(*points([result.best]), marker="*", s=260, color="tab:red", zorder=3,
                     label="best")
    current = result.current
    axis.scatter([_value(current, x_goal, False)], [_value(current, y_goal, True)],
                 marker="D", s=70, color="tab:blue", zorder=3, label="current rules")
    for index, vertical in ((x_goal, True), (y_goal, False)):
        if index is None:
            continue
        goal = result.goals[index]
        line = axis.axvline if vertical else axis.axhline
        line(goal.value, linestyle="--" if vertical else ":", color="tab:purple",
             linewidth=1.2, label=f"goal: {goal}")
    axis.set_xlabel(x_label)
    axis.set_ylabel(y_label)
    axis.set_title(f"tune: {len(result.candidates)} candidates replayed exactly on "
                   f"{Path(trace_name).name}", fontsize=10)
    axis.grid(True, alpha=0.3)
    axis.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, borderaxespad=0)
    figure.tight_layout()
    save_png(figure, path)
    plt.close(figure)
