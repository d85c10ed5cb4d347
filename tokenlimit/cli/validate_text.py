"""The text form of ``tokenlimit validate``'s report: the rules table, the findings and the
keys, as Rich renders them (imported only when a text report is printed: a JSON, SARIF or
GitHub report, CI's usual ones, starts without loading rich)."""

from __future__ import annotations

import os
from collections.abc import Sequence

from rich import box
from rich.cells import cell_len
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from tokenlimit.rules import Finding, Rule, Severity
from tokenlimit.rules.figures import duration, figures_of, number
from tokenlimit.rules.formats import KeyMatch, ValidationReport

_STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}


_HEADERS = ("#", "regex", "max", "fill", "every", "TTL", "tok/min", "tok/day", "to full")


def _rule_cells(rule: Rule) -> list[str]:
    figures = figures_of(rule)
    numbers = [str(rule.max_tokens), str(rule.tokens_per_fill),
               f"{rule.fill_interval_second} s", f"{rule.redis_expired_seconds} s"]
    if figures is None:
        derived = ["-"] * 3
    else:
        derived = [number(figures.tokens_per_minute), number(figures.tokens_per_day),
                   duration(figures.seconds_to_full) if figures.refills else "never"]
    return [str(rule.index), rule.regex, *numbers, *derived]


def plain_rules_table(report: ValidationReport, width: int) -> str | None:
    """``format_rules_table`` as Rich writes it without colours, or None where Rich would
    wrap something (a line wider than ``width``, a title wider than the table).

    Rich lays out a table cell by cell (two seconds for 1,000 rules); plain output (files,
    pipes, CI logs) is the same text, so it is written directly.
    """
    rows = [_rule_cells(rule) for rule in report.rules]
    if any(not cell.isprintable() for row in rows for cell in row):
        return None
    widths = [max(cell_len(cell) for cell in column)
              for column in zip(_HEADERS, *rows, strict=True)]
    widths[1] = max(widths[1], 8)  # the regex column's min_width
    total = sum(widths) + 3 * (len(widths) - 1)
    title = f"Rules from {report.origin}"
    if total > width or cell_len(title) > total or not title.isprintable():
        return None

    def line(cells: Sequence[str]) -> str:
        return "   ".join(cell + " " * (w - cell_len(cell)) if i == 1
                          else " " * (w - cell_len(cell)) + cell
                          for i, (cell, w) in enumerate(zip(cells, widths, strict=True)))

    return "\n".join([title, line(_HEADERS), "─" * total, *(line(row) for row in rows)])


def format_rules_table(report: ValidationReport) -> Table:
    """The rules with their numbers and derived figures."""
    table = Table(title=Text(f"Rules from {report.origin}"), box=box.SIMPLE_HEAD,
                  title_justify="left",
                  show_edge=False, pad_edge=False)
    # A new bucket starts at "fill" (tokens_per_fill) and holds at most max(max, fill).
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("regex", overflow="fold", min_width=8)
    for header in _HEADERS[2:]:
        table.add_column(header, justify="right", no_wrap=True)
    for rule in report.rules:
        index, regex, *rest = _rule_cells(rule)
        table.add_row(index, Text(regex), *rest)
    return table


def _finding_text(finding: Finding) -> Text:
    text = Text("  ")
    text.append(f"{finding.severity.value} {finding.code}", style=_STYLE[finding.severity])
    where = f" {finding.location}" if finding.location else ""
    text.append(f"{where}: {finding.message}\n    hint: {finding.hint}")
    return text


REPEATED = 4  # a code on this many rules or more is shown once, with the rules it is on


def index_ranges(indexes: Sequence[int]) -> str:
    """Rule numbers as ranges: ``[1, 2, 3, 7]`` -> ``'1-3, 7'``.

    >>> index_ranges([1, 2, 3, 7, 9, 10])
    '1-3, 7, 9-10'
    """
    spans: list[list[int]] = []
    for index in sorted(indexes):
        if spans and index == spans[-1][1] + 1:
            spans[-1][1] = index
        else:
            spans.append([index, index])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


def format_findings(findings: Sequence[Finding],
                    rules: Sequence[Rule] = ()) -> RenderableType:
    """Findings grouped by rule: the whole configuration first, then rule by rule.

    A code found on many rules (say 1,000 tenant rules, each unanchored) is written once, in
    full for its first rule, with the other rules' numbers after it: ``--format json`` still
    lists every finding.
    """
    regexes = {rule.index: rule.regex for rule in rules}
    on_rules: dict[str, list[Finding]] = {}
    for finding in findings:
        if finding.rule_index is not None:
            on_rules.setdefault(finding.code, []).append(finding)
    repeated = {code: found for code, found in on_rules.items() if len(found) >= REPEATED}
    parts: list[RenderableType] = []
    groups: dict[int | None, list[Finding]] = {}
    for finding in findings:
        if finding.code not in repeated or finding.rule_index is None:
            groups.setdefault(finding.rule_index, []).append(finding)
    for index, group in groups.items():
        title = "All rules" if index is None else f"Rule {index}"
        if index in regexes:
            title += f" ({regexes[index]!r})"
        parts.append(Text(title, style="bold"))
        parts.extend(_finding_text(f) for f in group)
    for code, found in repeated.items():
        others = [f.rule_index for f in found[1:] if f.rule_index is not None]
        parts.append(Text(f"{code} on {len(found)} rules, e.g. rule {found[0].rule_index}",
                          style="bold"))
        parts.append(_finding_text(found[0]))
        parts.append(Text(f"    and likewise on rules {index_ranges(others)} (--format json lists "
                          "each)"))
    return Group(*parts)


def format_keys(keys: Sequence[KeyMatch]) -> RenderableType:
    """Which rule each ``--key`` takes, with that rule's figures."""
    lines = [Text("Keys", style="bold")]
    for match in keys:
        if match.outcome == "unknown":
            what = "unknown: the rules cannot be matched (the service would not start)"
        elif match.rule is None:
            what = "unlimited: no rule matches, so the key is never limited"
        else:
            figures = match.figures
            what = f"rule {match.rule.index} ({match.rule.regex!r})"
            if figures is not None:
                what += f": {figures.summary()}"
            else:
                what += ": no figures (a number is not positive; see the rule's findings)"
        lines.append(Text(f"  {match.key!r} -> {what}"))
    return Group(*lines)


def format_text(report: ValidationReport, *, table: bool = True) -> RenderableType:
    """The whole text report: table (unless ``table`` is false), findings, keys, summary."""
    parts: list[RenderableType] = []
    if report.rules and table:
        parts.append(format_rules_table(report))
    if report.findings:
        parts.append(format_findings(report.findings, report.rules))
    if report.keys:
        parts.append(format_keys(report.keys))
    counts = report.summary()
    parts = [part for item in parts for part in (item, Text(""))]
    parts.append(Text(", ".join(
        f"{counts[plural]} {plural if counts[plural] != 1 else plural[:-1]}"
        for plural in ("errors", "warnings", "infos"))))
    return Group(*parts)


def report_console() -> Console:
    console = Console(highlight=False)
    if os.environ.get("NO_COLOR"):
        # Rich alone would keep bold and underline; NO_COLOR users asked for plain text.
        console = Console(highlight=False, color_system=None)
    if not console.is_terminal:
        # Plain for files and pipes: no colours, no wrapping into a narrow default width.
        width = int(os.environ.get("COLUMNS", "0") or 0) or 160
        console = Console(highlight=False, no_color=True, width=width)
    return console
