"""How every command's ``--help`` reads: flags as flags, arguments by name, nothing else.

Typer 0.29 (the version pyproject.toml pins) writes a type column of its own: ``--version
<bool>``, ``--estimate <list[str]>``, ``<int range>``, and usage lines such as ``[[SOURCE]]`` or
``{TRACE}``. tokenlimit names every value by its metavar (``SECONDS``, ``FILE``...), so:

- a flag shows no value (its metavar is empty);
- an argument shows its metavar once, in the usage line and the Arguments panel, with no type;
- an option without a metavar of its own is named by its type as Click always named it
  (``TEXT``, ``INTEGER``, ``FLOAT``), a list by its element;
- the usage line lists arguments as ``NAME`` (required) or ``[NAME]`` (optional).

``tests/cli/test_help.py`` renders every command's help and fails on any ``<...>`` left.
"""

from __future__ import annotations

import inspect
from typing import Any

from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption


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


class TidyHelp:
    """Mixed into tokenlimit's command and group classes (before Typer's)."""

    options_metavar: str | None

    def get_params(self, ctx: Any) -> list[Any]:
        # Every parameter passes here before help is written, the help option and the
        # completion options Typer adds after the command is built included.
        params: list[Any] = super().get_params(ctx)  # type: ignore[misc]
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
