"""Parameter sweeps: ``rules[0].max_tokens=100,200,400`` (``rules[*]`` for every rule).

Several settings combine as a cartesian product, in the order given.

>>> s = parse_setting("rules[0].max_tokens=100,200")
>>> (s.rule, s.field, s.values)
(0, 'max_tokens', (100, 200))
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from tokenlimit.errors import ConfigError
from tokenlimit.rules.model import INT_FIELDS, Rule

_SETTING = re.compile(r"^rules\[(\d+|\*)\]\.([a-z_]+)=(.+)$")


@dataclass(frozen=True, slots=True)
class Setting:
    """One swept field; ``rule`` is ``None`` for ``rules[*]``."""

    rule: int | None
    field: str
    values: tuple[int, ...]

    def label(self, value: int) -> str:
        where = "*" if self.rule is None else str(self.rule)
        return f"rules[{where}].{self.field}={value}"


def parse_setting(text: str) -> Setting:
    """Parse ``rules[N].FIELD=V1,V2,...``; ``ConfigError`` says what is wrong."""
    match = _SETTING.match(text.strip())
    if not match:
        raise ConfigError(f"--set {text!r}: expected rules[N].FIELD=V1,V2,... "
                          f"(FIELD one of {', '.join(INT_FIELDS)})")
    where, field, raw = match.groups()
    if field not in INT_FIELDS:
        raise ConfigError(f"--set {text!r}: {field!r} is not one of {', '.join(INT_FIELDS)}")
    try:
        values = tuple(int(v) for v in raw.split(","))
    except ValueError:
        raise ConfigError(f"--set {text!r}: values must be whole numbers") from None
    if any(not -(2**63) <= v < 2**63 for v in values):
        # the service's Go ints are 64-bit: such a value would not even load
        raise ConfigError(f"--set {text!r}: values must fit a 64-bit int "
                          "(-9223372036854775808 to 9223372036854775807)")
    return Setting(None if where == "*" else int(where), field, values)


def sweep_rules(rules: Sequence[Rule], settings: Sequence[Setting],
                ) -> list[tuple[str, tuple[Rule, ...]]]:
    """Every combination of the settings: (label, rules with those values)."""
    for setting in settings:
        if setting.rule is not None and setting.rule >= len(rules):
            raise ConfigError(f"--set: there is no rules[{setting.rule}] "
                              f"({len(rules)} rules loaded)")
    out = []
    for combination in itertools.product(*(s.values for s in settings)):
        changed = list(rules)
        labels = []
        for setting, value in zip(settings, combination, strict=True):
            targets = range(len(rules)) if setting.rule is None else [setting.rule]
            for i in targets:
                changed[i] = replace(changed[i], **{setting.field: value})  # type: ignore[arg-type]
            labels.append(setting.label(value))
        out.append((" ".join(labels), tuple(changed)))
    return out
