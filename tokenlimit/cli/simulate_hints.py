"""What ``simulate`` tells a user whose trace and rules do not meet: no key matches a rule;
and whose trace will not fit in memory.

A gateway log read with ``--from`` takes its key from the preset's field (``authority`` for
ASM), which is rarely the rate-limit key; every request then lands in "no rule: never
limited" and the report alone does not say why.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy loads when a replay runs, not at every command's start-up
    from tokenlimit.sim.log_fields import FieldMap
    from tokenlimit.sim.replay_stats import Summary
    from tokenlimit.sim.trace_table import Trace


def no_rule_matched(summary: Summary, key_names: Sequence[str], fields: FieldMap | None,
                    key_field: str | None) -> str | None:
    """A one-line warning when requests were replayed and none has a key a rule matches
    (``None`` otherwise). ``key_names``: some of the trace's keys, for the message.

    >>> from tokenlimit.sim.replay_stats import Row, Summary
    >>> row = Row(2, 2, 0, 0, 10, 10, 0, None)
    >>> summary = Summary("asm", "completion", "scan", 0, row, ((None, None, row),), (), None)
    >>> print(no_rule_matched(summary, ["llm.example.com"], None, "host"))
    ... # doctest: +NORMALIZE_WHITESPACE
    warning: no request has a key that a rule matches (keys such as 'llm.example.com'): the
    keys came from the 'host' field; `tokenlimit validate RULES --key KEY` shows which rule
    a key takes
    """
    replayed = summary.totals.requests
    unmatched = sum(row.requests for index, _, row in summary.rules if index is None)
    if replayed == 0 or unmatched < replayed:
        return None
    return no_rule_message(key_names, fields, key_field)


def no_rule_message(key_names: Sequence[str], fields: FieldMap | None,
                    key_field: str | None) -> str:
    """The warning for a trace none of whose keys a rule matches (``simulate``, and
    ``loadtest --replay`` with ``--rules``): some of the keys and where they came from."""
    examples = ", ".join(repr(name) for name in key_names[:3])
    message = "warning: no request has a key that a rule matches" + (
        f" (keys such as {examples})" if examples else "")
    if fields is not None:
        return (f"{message}: the keys came from the log's {fields.key!r} field; name the field "
                "that holds the rate-limit key with --map key=FIELD")
    source = f"the keys came from the {key_field!r} field; " if key_field else ""
    return f"{message}: {source}`tokenlimit validate RULES --key KEY` shows which rule a key takes"


def empty_class_warnings(trace: Trace, patterns: Sequence[str], effect: str) -> list[str]:
    """A warning for each key class among ``patterns`` that no key of ``trace`` matches
    (``conditions.unmatched_classes``); ``effect``: what that does to the command's figures.
    A gate on a mistyped class never fails, and such a goal always holds."""
    from tokenlimit.sim.conditions import unmatched_classes

    return [f"warning: no key in {trace.path} matches the class {pattern!r}: {effect}"
            for pattern in unmatched_classes(trace, patterns)]


def _size(size: int) -> str:
    """A memory size for a message.

    >>> _size(3 * 2**20), _size(7 * 2**30 + 2**29)
    ('3 MiB', '7.5 GiB')
    """
    return f"{size / 2**30:.1f} GiB" if size >= 2**30 else f"{size // 2**20:,} MiB"


def too_large(path: str, requests: int, needed: int, available: int,
              doing: str = "replay") -> str:
    """The warning for a trace that will likely not fit in memory (``trace_size``) to
    ``doing`` (replay, convert, diff, tune) whole.

    >>> print(too_large("day.parquet", 200_000_000, 32 * 2**30, 7 * 2**30))
    ... # doctest: +NORMALIZE_WHITESPACE
    warning: day.parquet: about 200,000,000 requests need about 32.0 GiB of memory to replay
    whole, and 7.0 GiB is available: --chunk-rows 2000000 streams them in batches instead
    >>> print(too_large("logs", 200_000_000, 32 * 2**30, 7 * 2**30, "diff"))
    ... # doctest: +NORMALIZE_WHITESPACE
    warning: logs: about 200,000,000 requests need about 32.0 GiB of memory to diff whole,
    and 7.0 GiB is available: diff reads the whole trace: give it a shorter stretch (a day's
    files of a folder, say)
    """
    advice = (f"--chunk-rows {STREAM_BATCH} streams them in batches instead"
              if doing in STREAMED else
              f"{doing} reads the whole trace: give it a shorter stretch (a day's files of "
              "a folder, say)")
    return (f"warning: {path}: about {requests:,} requests need about {_size(needed)} of "
            f"memory to {doing} whole, and {_size(available)} is available: {advice}")


STREAMED = ("replay", "convert")  # what --chunk-rows can do in batches (not diff or tune)


def warn_if_too_large(path: str, doing: str = "replay", *, log: bool = False) -> None:
    """Say on stderr, before reading, that the trace at ``path`` (a gateway's ``log``) will
    likely not fit in memory to ``doing`` whole (``replay``, ``convert``, ``diff``,
    ``tune``)."""
    from tokenlimit.sim.trace_size import memory_shortfall

    shortfall = memory_shortfall(path, log=log)
    if shortfall is not None:
        print(too_large(path, *shortfall, doing=doing), file=sys.stderr)


def out_of_memory() -> str:
    """The error for a whole-trace replay that ran out of memory."""
    return (f"out of memory reading and replaying the whole trace: --chunk-rows {STREAM_BATCH} "
            "streams it in batches instead")


STREAM_BATCH = 2_000_000  # the batch size docs/simulate.md measures (bench/simulate_stream.py)
