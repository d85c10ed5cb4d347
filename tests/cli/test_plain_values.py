"""Plain option values convert without pydantic exactly as typer converts them.

Every parameter of every command, given values in the plain forms and in the forms left to
typer (signs, underscores, exponents, spaces, bounds, wrong values), converts to the same
value of the same type as typer's own conversion, or fails with the same message.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, get_args, get_origin

import pytest
import typer.main
from typer._click import Context
from typer._click.exceptions import BadParameter
from typer._coercion import build_runtime_param

from tokenlimit.cli.main import app
from tokenlimit.cli.plain_values import PlainValues, convert_plain_values

TEXTS = ("x", "", "12", "ü", " a ", "-")
INTEGERS = ("0", "-0", "7", "-3", "12", "007", "+5", " 5", "1_000", "1.0", "1e3", "abc", "",
            "123456789012345678", "1234567890123456789", "99999999999999999999", 0, 1, 64,
            -1, 2**70, 1.0, True)
FLOATS = ("0", "1", "-0.0", "0.1", "1.5", "-2.25", "1.", ".5", "1e3", "1E-3", "inf", "nan",
          "-inf", " 1.5", "1_0.5", "abc", "", "0.30000000000000004", "123456789012345.123",
          0, 3, -1, 2**53, 2**53 + 1, 0.5, -0.0, True)
BOOLS = (True, False, "true", "1", "", "no")


def _commands() -> Iterator[tuple[str, Any]]:
    root = typer.main.get_command(app)
    yield "tokenlimit", root
    for name, command in root.commands.items():  # type: ignore[attr-defined]
        yield name, command
        for sub, subcommand in getattr(command, "commands", {}).items():
            yield f"{name} {sub}", subcommand


def _parameters() -> list[tuple[str, Any, Any]]:
    found = []
    for name, command in _commands():
        for param in command.params:
            if getattr(param, "type_descriptor", None) is not None:
                found.append((f"{name} --{param.name}", command, param))
    return found


PARAMETERS = _parameters()


def _values(annotation: Any) -> tuple[Any, ...]:
    if get_origin(annotation) is list:
        items = _values(get_args(annotation)[0])
        return ((), tuple(items[:3]), tuple(items[-3:]), tuple(items))
    return {str: TEXTS, int: INTEGERS, float: FLOATS, bool: BOOLS}.get(annotation, TEXTS)


def _outcome(runtime: Any, value: Any, param: Any, command: Any) -> tuple[str, ...]:
    """What a conversion gives: the value's type and exact representation, or the error."""
    try:
        converted = runtime.coerce(value, param=param, ctx=Context(command))
    except BadParameter as exc:
        return ("error", exc.format_message())
    items = converted if isinstance(converted, list) else [converted]
    return (type(converted).__name__, *(
        f"{type(v).__name__}:{v!r}:{math.copysign(1, v) if isinstance(v, float) else ''}"
        for v in items))


@pytest.mark.parametrize(("label", "command", "param"), PARAMETERS,
                         ids=[label for label, _, _ in PARAMETERS])
def test_every_parameter_converts_as_typer_does(label: str, command: Any, param: Any) -> None:
    descriptor = param.type_descriptor
    typer_own = build_runtime_param(descriptor)
    plain = PlainValues(parameter_info=descriptor.parameter_info,
                        annotation=descriptor.annotation, descriptor=descriptor)
    for value in (*_values(descriptor.annotation), param.default):
        if value is None:
            continue
        assert _outcome(plain, value, param, command) == _outcome(
            typer_own, value, param, command), (label, value)


def test_the_commands_parameters_are_plain() -> None:
    """The fast conversion must cover the parameters (else pydantic loads anyway): every
    parameter of every command is of a plain type."""
    params = [param for _, _, param in PARAMETERS]
    for param in params:
        param._runtime_param = None
    convert_plain_values(params)
    not_plain = [label for label, _, param in PARAMETERS
                 if not isinstance(param._runtime_param, PlainValues)]
    assert not_plain == []


def test_a_value_left_to_typer_gets_its_conversion_and_its_error() -> None:
    simulate = typer.main.get_command(app).commands["simulate"]  # type: ignore[attr-defined]
    jobs = next(p for p in simulate.params if p.name == "jobs")
    convert_plain_values([jobs])
    context = Context(simulate)
    assert jobs.process_value(context, "1_0") == 10  # pydantic's form, not a plain one
    with pytest.raises(BadParameter) as raised:
        jobs.process_value(context, "0")  # plain, but below --jobs' minimum of 1
    assert raised.value.format_message() == (
        "Invalid value for '--jobs': Input should be greater than or equal to 1")
