"""Conditions over replay figures, shared by ``diff --fail-if`` and ``tune --goal``.

Syntax: ``[GROUP: ]METRIC OP VALUE[%]``, with ``OP`` one of ``<``, ``<=``, ``>``, ``>=``.

- ``GROUP`` (optional, ended by a colon and a space) is a key class: an RE2 regex searched
  in each request's keys, unanchored as the service matches rules (``subscriber.*``). A
  request is in the class when any of its keys matches. Without a group the condition is on
  every group a command reports (``diff``) or on the whole trace (``tune``).
- ``VALUE%`` is a percentage of the group's requests (or of its tokens, for token metrics);
  a plain number is a count. Metrics without a sensible percentage refuse ``%``.

>>> c = parse_condition("subscriber.*: newly_limited > 1%", ("newly_limited",))
>>> (c.group, c.metric, c.op, c.value, c.percent)
('subscriber.*', 'newly_limited', '>', 1.0, True)
>>> c.holds(2.5), c.holds(1.0)
(True, False)
>>> str(c)
'subscriber.*: newly_limited > 1%'
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from tokenlimit.errors import ConfigError
from tokenlimit.rules.regex import compile_go_regex
from tokenlimit.sim.trace_table import BoolArray, Trace

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt}
_CONDITION = re.compile(r"^\s*([a-z_]+)\s*(<=|>=|<|>)\s*([0-9]+(?:\.[0-9]+)?)\s*(%?)\s*$")


@dataclass(frozen=True, slots=True)
class Condition:
    """One parsed condition; ``percent``: ``value`` is a percentage, not a count."""

    group: str | None
    metric: str
    op: str
    value: float
    percent: bool

    def holds(self, measured: float) -> bool:
        """Whether ``measured`` (a percentage when ``percent``) satisfies the condition."""
        return _OPS[self.op](measured, self.value)

    def __str__(self) -> str:
        value = f"{self.value:g}{'%' if self.percent else ''}"
        where = f"{self.group}: " if self.group is not None else ""
        return f"{where}{self.metric} {self.op} {value}"


def parse_condition(text: str, metrics: Sequence[str],
                    percent_metrics: Sequence[str] | None = None,
                    example_op: str = ">") -> Condition:
    """Parse one condition; ``ConfigError`` says what is wrong and what is allowed, with an
    example using ``example_op`` (a gate fails when its condition holds; a goal is met)."""
    group: str | None = None
    body = text
    if ": " in text:
        group, _, body = text.rpartition(": ")
        group = group.strip()
        if not group:
            raise ConfigError(f"{text!r}: the key class before ': ' is empty")
        try:
            compile_go_regex(group)
        except ValueError as exc:
            raise ConfigError(f"{text!r}: the key class {group!r} is not a valid regex "
                              f"({exc})") from None
    match = _CONDITION.match(body)
    if not match:
        raise ConfigError(f"{text!r}: expected [CLASS: ]METRIC OP VALUE[%] with OP one of "
                          f"<, <=, >, >= (e.g. 'subscriber.*: {metrics[0]} {example_op} 1%')")
    metric, op, value, percent = match.groups()
    if metric not in metrics:
        raise ConfigError(f"{text!r}: unknown metric {metric!r}; choose one of "
                          f"{', '.join(metrics)}")
    allowed = metrics if percent_metrics is None else percent_metrics
    if percent and metric not in allowed:
        raise ConfigError(f"{text!r}: {metric} is not a share; give a number without %")
    return Condition(group, metric, op, float(value), bool(percent))


def class_mask(trace: Trace, pattern: str) -> BoolArray:
    """Requests with at least one key matching ``pattern`` (searched, unanchored).

    >>> from tokenlimit.sim.records import TraceRequest
    >>> from tokenlimit.sim.trace_table import trace_from_requests
    >>> t = trace_from_requests([TraceRequest(0, 0.0, ("a", "sub-1")),
    ...                          TraceRequest(1, 1.0, ("a",))])
    >>> class_mask(t, "sub").tolist()
    [True, False]
    """
    key_hit = key_matches(trace, pattern)
    if key_hit.shape[0] == 0:
        return np.zeros(len(trace), dtype=np.bool_)
    hits = key_hit[trace.key_index].astype(np.int64)
    sums = np.concatenate(([0], np.cumsum(hits)))
    per_request: BoolArray = (sums[trace.key_ptr[1:]] - sums[trace.key_ptr[:-1]]) > 0
    return per_request


def unmatched_classes(trace: Trace, patterns: Sequence[str]) -> list[str]:
    """The key classes among ``patterns`` that no key of ``trace`` matches: a condition on
    one is measured on no requests, as 0: a gate on a mistyped class (``subscribers:
    newly_limited > 1%``) never fails, and such a goal always holds (``diff`` and ``tune`` warn
    of them).

    >>> from tokenlimit.sim.records import TraceRequest
    >>> from tokenlimit.sim.trace_table import trace_from_requests
    >>> t = trace_from_requests([TraceRequest(0, 0.0, ("subscriber-1",))])
    >>> unmatched_classes(t, ["subscriber", "subscribers", "subscriber"])
    ['subscribers']
    """
    return [pattern for pattern in dict.fromkeys(patterns)
            if not key_matches(trace, pattern).any()]


def key_matches(trace: Trace, pattern: str) -> BoolArray:
    """Which of the trace's keys (``key_names``) ``pattern`` matches (searched, unanchored)."""
    compiled = compile_go_regex(pattern)
    return np.array([compiled.search(name) is not None for name in trace.key_names],
                    dtype=np.bool_)
