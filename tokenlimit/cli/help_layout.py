"""How every command's ``--help`` reads: flags as flags, arguments by name, nothing else.

Typer 0.29 (the version pyproject.toml pins) writes a type column of its own: ``--version
<bool>``, ``--estimate <list[str]>``, ``<int range>``, and usage lines such as ``[[SOURCE]]`` or
``{TRACE}``. tokenlimit names every value by its metavar (``SECONDS``, ``FILE``...), so:

- a flag shows no value (its metavar is empty);
- an argument shows its metavar once, in the usage line and the Arguments panel, with no type;
- an option without a metavar of its own is named by its type as Click always named it
  (``TEXT``, ``INTEGER``, ``FLOAT``), a list by its element;
- the usage line lists arguments as ``NAME`` (required) or ``[NAME]`` (optional).

Typer's options panel gives each of option, short option, negative option, type and help a
column of its own, and at 80 or 100 columns cut option names and help text with "…"
(``--service-time…``, ``'{{request.headers.user-typ…``). ``options_panel`` takes its place:
one column names the option (its negative form and value below it when the line would be
long), the other holds the help, folded where a word is longer than the column; nothing is cut.

``tests/cli/test_help.py`` renders every command's help and fails on any ``<...>`` left, and on
any "…" at 80 columns.
"""

from __future__ import annotations

import inspect
from typing import Any

from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from tokenlimit.cli.plain_values import convert_plain_values


def _no_type_column(ctx: Any) -> None:
    return None


_CLICK_TYPE_NAMES = {"str": "TEXT", "int": "INTEGER", "float": "FLOAT", "bool": "BOOLEAN"}


def click_type_name(typer_label: str) -> str:
    """Click's name for a type Typer labels ``<int>``, ``<int range>``, ``<list[str]>``...

    >>> [click_type_name(t) for t in ("<str>", "<int range>", "<list[float]>", "<a|b>")]
    ['TEXT', 'INTEGER', 'FLOAT', 'a|b']
    """
    label = typer_label.strip("<>").removesuffix(" range")
    if label.startswith("list[") and label.endswith("]"):
        label = label[len("list["):-1]
    return _CLICK_TYPE_NAMES.get(label, label)


def tidy_parameter(param: Any, ctx: Any) -> None:
    """Give ``param`` the help rendering described in the module docstring."""
    if isinstance(param, TyperOption) and param.is_flag:
        param.metavar = ""
    elif isinstance(param, TyperOption) and param.metavar is None:
        param.metavar = click_type_name(param.display_type(ctx))
    elif isinstance(param, TyperArgument):
        # Typer shows an argument's type even when it has a metavar; the metavar says it all.
        param.display_type_rich = _no_type_column  # type: ignore[method-assign]


def usage_name(param: TyperArgument) -> str:
    """``NAME`` for a required argument, ``[NAME]`` for an optional one."""
    name = param.metavar or (param.name or "").upper()
    if param.nargs != 1 and not name.endswith("..."):
        name += "..."
    if name.startswith("[") or param.required:  # a metavar such as "[KEY]..." says it already
        return name
    return f"[{name}]"


_OPTION_LINE = 30  # characters of an option's names and value on one line, at most


def _option_cell(param: Any, ctx: Any) -> Any:
    """The option's names (``--long, -s``; ``--no-long`` below), then its value."""
    from rich.text import Text
    from typer import rich_utils

    if isinstance(param, TyperArgument):
        names = [param.metavar or param.display_name_raw]
    else:
        names = [", ".join([o for o in param.opts if o.startswith("--")]
                           + [o for o in param.opts if not o.startswith("--")])]
    negative = ", ".join(param.secondary_opts)
    value = param.display_type_rich(ctx=ctx) or ""
    value += "" if not (span := param._get_number_range_help_str()) else (
        rich_utils.RANGE_STRING.format(span))
    cell = rich_utils.highlighter(Text(names[0]))
    if negative:
        joined = len(names[0]) + 3 + len(negative) <= _OPTION_LINE
        cell.append(" / " if joined else "\n")
        cell.append_text(rich_utils.negative_highlighter(Text(negative)))
    if value:
        last = cell.plain.split("\n")[-1]
        cell.append(" " if len(last) + 1 + len(value) <= _OPTION_LINE else "\n  ")
        cell.append(value, style=rich_utils.STYLE_TYPES)
    return cell


def _help_cell(param: Any, ctx: Any, markup_mode: Any) -> Any:
    """Typer's help of the option (text, env var, default, required) as one text that
    folds a long word instead of cutting it (Typer lays the parts out as columns)."""
    from rich.text import Text
    from typer import rich_utils

    columns = rich_utils._get_parameter_help(param=param, ctx=ctx, markup_mode=markup_mode)
    parts = [part for part in columns.renderables if isinstance(part, Text)]
    if len(parts) < len(columns.renderables):
        return columns  # Markdown help (not tokenlimit's): Typer's own layout
    text = Text(" ").join(parts)
    text.overflow = "fold"
    return text


def options_panel(*, name: str, params: Any, ctx: Any, markup_mode: Any,
                  console: Any) -> None:
    """An options (or arguments) panel of ``--help`` that cuts nothing (module docstring);
    it takes the place of Typer 0.29's ``rich_utils._print_options_panel``."""
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text
    from typer import rich_utils

    if not params:
        return
    table = Table(highlight=True, show_header=False, expand=True, box=None, pad_edge=False,
                  padding=rich_utils.STYLE_OPTIONS_TABLE_PADDING)
    required = any(param.required for param in params)
    if required:
        table.add_column(no_wrap=True)
    table.add_column(no_wrap=True, overflow="fold")
    table.add_column(ratio=1, overflow="fold")
    for param in params:
        row = [_option_cell(param, ctx), _help_cell(param, ctx, markup_mode)]
        if required:
            mark = rich_utils.REQUIRED_SHORT_STRING if param.required else ""
            row.insert(0, Text(mark, style=rich_utils.STYLE_REQUIRED_SHORT))
        table.add_row(*row)
    console.print(Panel(table, border_style=rich_utils.STYLE_OPTIONS_PANEL_BORDER, title=name,
                        title_align=rich_utils.ALIGN_OPTIONS_PANEL))


class TidyHelp:
    """Mixed into tokenlimit's command and group classes (before Typer's)."""

    options_metavar: str | None

    def format_help(self, ctx: Any, formatter: Any) -> None:
        from typer import rich_utils

        rich_utils._print_options_panel = options_panel
        super().format_help(ctx, formatter)  # type: ignore[misc]

    def get_params(self, ctx: Any) -> list[Any]:
        # Every parameter passes here before help is written, the help option and the
        # completion options Typer adds after the command is built included.
        # Before the values are parsed too: plain values convert without pydantic.
        params: list[Any] = super().get_params(ctx)  # type: ignore[misc]
        convert_plain_values(params)
        for param in params:
            tidy_parameter(param, ctx)
        return params

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        pieces += [usage_name(p) for p in self.get_params(ctx) if isinstance(p, TyperArgument)]
        if isinstance(self, TyperGroup):
            pieces.append(self.subcommand_metavar)
        return pieces


class TokenlimitCommand(TidyHelp, TyperCommand):
    """Every tokenlimit command (``tidy_commands`` sets it)."""


class TidyGroup(TidyHelp, TyperGroup):
    """Every tokenlimit command group, such as ``render`` and ``trace``."""


def reflow_help(text: str) -> str:
    r"""Join the lines of each prose paragraph of a docstring, so help wraps to the terminal.

    Paragraphs whose lines are indented (examples, code) keep their line breaks.

    >>> reflow_help("Do a thing\nwell.\n\n  a --b\n  c")
    'Do a thing well.\n\n  a --b\n  c'
    """
    paragraphs = inspect.cleandoc(text).split("\n\n")
    flowed = [p if any(line.startswith(" ") for line in p.splitlines()) else " ".join(
        line.strip() for line in p.splitlines()) for p in paragraphs]
    return "\n\n".join(flowed)
