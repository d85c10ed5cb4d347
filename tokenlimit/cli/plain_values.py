"""Typer's conversion of the plainest option values, without pydantic.

Typer 0.29 converts every parameter's value (given or default) through a pydantic
``TypeAdapter``: importing pydantic and building an adapter a parameter took about 0.08 s of
every command's start, more than anything else before the command runs (bench/startup.py
measures both side by side). Here a value that already has its parameter's type, and text
in the plainest form of an integer or decimal number, within the parameter's bounds, are
converted as those adapters convert them (``str``: the text itself; ``int("12")``;
``float("1.5")``, correctly rounded as pydantic parses); anything else (another form, a value
out of bounds, a wrong value whose error typer words) goes to typer's own conversion,
pydantic and all. tests/cli/test_plain_values.py holds every parameter of every command to
typer's own results and messages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, get_args, get_origin

from typer._coercion import RuntimeParam, TypeDescriptor, build_runtime_param

# Forms whose value int() and float() give exactly as pydantic does (a minus at most; no plus,
# underscore, space, exponent or leading zero; few enough digits that every reader agrees).
_INTEGER = re.compile(r"-?(?:0|[1-9][0-9]{0,17})")
_DECIMAL = re.compile(r"-?(?:0|[1-9][0-9]{0,14})(?:\.[0-9]{1,15})?")
_EXACT_FLOAT = 2**53  # integers a float holds exactly
_NOT_PLAIN = object()


def _plain(annotation: Any, value: Any) -> Any:
    """``value`` converted to ``annotation`` (``str``, ``bool``, ``int`` or ``float``) as
    typer's adapter converts it, or ``_NOT_PLAIN``."""
    kind = type(value)
    if annotation is str or annotation is bool:
        return value if kind is annotation else _NOT_PLAIN
    if annotation is int:
        if kind is int:
            return value
        if kind is str and _INTEGER.fullmatch(value):
            return int(value)
    elif annotation is float:
        if kind is float:
            return value
        if kind is int and abs(value) <= _EXACT_FLOAT:
            return float(value)
        if kind is str and _DECIMAL.fullmatch(value):
            return float(value)
    return _NOT_PLAIN


def _item_type(annotation: Any) -> Any:
    """``str``, ``bool``, ``int`` or ``float`` for that type or a list of it; ``None``
    otherwise."""
    if get_origin(annotation) is list:
        args = get_args(annotation)
        annotation = args[0] if len(args) == 1 else None
    return annotation if annotation in (str, bool, int, float) else None


def _fits(value: Any, info: Any) -> bool:
    """Whether a converted value is within its parameter's bounds (``min``, ``max``; ``None``:
    none). Within them, a bounded or clamped number converts as an unbounded one."""
    if type(value) is str or type(value) is bool:
        return True
    return ((info.min is None or value >= info.min)
            and (info.max is None or value <= info.max))


@dataclass(frozen=True)
class PlainValues(RuntimeParam):
    """A parameter's conversion: plain values here, the rest by typer's own."""

    descriptor: TypeDescriptor

    def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
        item = _item_type(self.annotation)
        info = self.parameter_info
        if item is not self.annotation:  # a list: click gives a tuple
            if isinstance(value, (tuple, list)):
                items = [_plain(item, v) for v in value]
                if all(v is not _NOT_PLAIN and _fits(v, info) for v in items):
                    return items
        else:
            plain = _plain(item, value)
            if plain is not _NOT_PLAIN and _fits(plain, info):
                return plain
        typer_own = build_runtime_param(self.descriptor)
        return typer_own._coerce_value(value, param=param, ctx=ctx)


def convert_plain_values(params: list[Any]) -> None:
    """Give each parameter of a plain type (``str``, ``bool``, ``int``, ``float`` or a list
    of one, with no parser, choices or file) the conversion above."""
    for param in params:
        descriptor = getattr(param, "type_descriptor", None)
        if descriptor is None or getattr(param, "_runtime_param", False) is not None:
            continue
        info = descriptor.parameter_info
        if (_item_type(descriptor.annotation) is None or descriptor.is_file
                or descriptor.is_choice or info.parser is not None):
            continue
        param._runtime_param = PlainValues(parameter_info=info,
                                           annotation=descriptor.annotation,
                                           descriptor=descriptor)
