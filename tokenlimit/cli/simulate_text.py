"""``tokenlimit simulate``'s text report: the per-rule, per-key and totals tables, the spend
line and the sweep's table, as Rich renderables (rich loads only when one is made)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from tokenlimit.rules.figures import counted

if TYPE_CHECKING:
    from rich.console import Group
    from rich.table import Table

    from tokenlimit.sim.replay_stats import Row, Summary


def _when(value: float | None) -> str:
    if value is None:
        return "-"
    from datetime import UTC, datetime

    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _row_cells(row: Row) -> list[str]:
    return [f"{row.requests:,}", f"{row.admitted:,}", f"{row.limited:,}",
            f"{row.limited_pct:.1f}%", f"{row.tokens_admitted:,}", f"{row.deepest_debt:,}",
            _when(row.first_limited)]


_HEADINGS = ("requests", "admitted", "limited", "limited %", "tokens admitted", "deepest debt",
             "first limited (UTC)")


def _table(title: str, first: Sequence[str]) -> Table:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for name in first:
        table.add_column(name)
    for name in _HEADINGS:
        table.add_column(name, justify="right")
    return table


def format_summary(summary: Summary, path: str) -> Group:
    """The text report as Rich renderables."""
    from rich.console import Group
    from rich.text import Text

    from tokenlimit.sim.trace_table import key_label

    # Keys, regexes and paths are the user's text, shown as written: a str cell would be read
    # as Rich markup (``^[a-z]+-user`` lost its class, ``user[/]`` raised MarkupError).
    rules = _table("Per rule", ("rule", "regex"))
    for index, regex, row in summary.rules:
        rules.add_row("-" if index is None else str(index),
                      "(no rule: never limited)" if regex is None else Text(regex),
                      *_row_cells(row))
    keys = _table(f"Per key (top {len(summary.keys)} by requests)", ("key", "rule"))
    for key, rule, row in summary.keys:
        keys.add_row(Text(key_label(key)), "-" if rule is None else str(rule), *_row_cells(row))
    totals = _table("Totals", ("trace",))
    totals.add_row(Text(path), *_row_cells(summary.totals))
    lines = [f"semantics {summary.semantics}, charge {summary.charge}, engine {summary.engine}; "
             f"{counted(summary.imputed, 'request')} had completion tokens imputed"]
    price = summary.price_per_1k
    if price is not None:  # the amount unrounded (``spend()`` rounds to 6 decimals)
        lines.append(f"estimated spend of admitted requests: "
                     f"{usd(summary.totals.total_tokens_admitted / 1000 * price)} "
                     f"({summary.totals.total_tokens_admitted:,} tokens at "
                     f"{usd_price(price)}/1K)")
    return Group(rules, keys, totals, *lines)


def usd(amount: float) -> str:
    """An amount in dollars: cents, or three significant digits below a cent (a spend of
    $0.00005 read ``$0.00``).

    >>> usd(1016.602), usd(0.0000508301), usd(0.004), usd(0)
    ('$1,016.60', '$0.0000508', '$0.004', '$0.00')
    """
    if amount == 0 or amount >= 0.01:
        return f"${amount:,.2f}"
    decimals = 2 - math.floor(math.log10(amount))
    return f"${amount:.{decimals}f}".rstrip("0")


def usd_price(price: float) -> str:
    """A price as given, in plain digits (it read ``$1e-07`` and ``$1000000000.0``).

    >>> usd_price(0.002), usd_price(0.015), usd_price(1e-07), usd_price(1e9), usd_price(0)
    ('$0.002', '$0.015', '$0.0000001', '$1,000,000,000', '$0')
    """
    from decimal import Decimal

    return f"${Decimal(repr(price)).normalize():,f}"


def format_sweep(results: Sequence[tuple[str, Summary]]) -> Table:
    from rich.table import Table
    from rich.text import Text

    table = Table(title="Sweep", title_justify="left")
    for name in ("setting", "requests", "limited", "limited %", "tokens admitted"):
        table.add_column(name, justify="left" if name == "setting" else "right")
    for label, summary in results:
        row = summary.totals
        table.add_row(Text(label), f"{row.requests:,}", f"{row.limited:,}",
                      f"{row.limited_pct:.1f}%", f"{row.tokens_admitted:,}")
    return table
