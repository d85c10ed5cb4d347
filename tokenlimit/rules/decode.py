"""Decode a ``Node`` tree into rules exactly as the Go service's ``json.Unmarshal`` would.

Go decodes ``RATE_LIMIT_CONFIG`` into ``[]struct{...}`` with ``int`` fields: field names match
case-insensitively, the last duplicate wins, unknown fields and ``null`` values are ignored,
a missing field (or one that is only null) keeps its zero value, and any number that is not
an integer literal in int64 range is an error. Problems inside a rule become findings (so
all of them are reported at once); a document that is not an array at all raises ``RuleError``.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from tokenlimit.errors import RuleError
from tokenlimit.rules.findings import Finding, Severity
from tokenlimit.rules.gofields import INT64_MAX, INT64_MIN, FieldNames
from tokenlimit.rules.model import INT_FIELDS, REGEX_FIELD, RULE_FIELDS, Location, Rule
from tokenlimit.rules.nodes import Node

_A_TYPE = {"string": "a string", "int": "an int"}
_GO_TYPE = {REGEX_FIELD: "string", **{name: "int" for name in INT_FIELDS}}


@dataclass(frozen=True, slots=True)
class Decoded:
    rules: tuple[Rule, ...]
    findings: tuple[Finding, ...]
    location: Location | None = None


_FIELDS = FieldNames(RULE_FIELDS)


def decode_rules(root: Node, path: str) -> Decoded:
    """Rules and decode-level findings from a parsed document.

    >>> from tokenlimit.rules.gojson import parse_json
    >>> doc = parse_json('[{"rate_limit_key_regex": "a", "max_tokens": 1}]', "<x>")
    >>> sorted({f.code for f in decode_rules(doc, "<x>").findings})
    ['TL106']
    """
    if root.kind == "null":
        # json.Unmarshal of null into a slice leaves it nil: the service starts with no rules.
        return Decoded((), (Finding(
            "TL112", Severity.WARNING,
            "the configuration is `null`: the service starts with no rules and limits nothing",
            "Write a JSON array of rules.", None, None, root.location),), root.location)
    if root.kind != "array":
        where = root.location
        raise RuleError(
            f"the configuration must be a JSON array of rules, not {root.describe()} "
            "(the service exits at start-up: cannot unmarshal into []RateLimitConfig)",
            path=path, line=where.line, column=where.column)
    rules: list[Rule] = []
    findings: list[Finding] = []
    for index, item in enumerate(root.items()):
        rule, found = _decode_rule(index, item)
        rules.append(rule)
        findings.extend(found)
    return Decoded(tuple(rules), tuple(findings), root.location)


def _decode_rule(index: int, item: Node) -> tuple[Rule, list[Finding]]:
    findings: list[Finding] = []
    values: dict[str, str | int] = {REGEX_FIELD: "", **{name: 0 for name in INT_FIELDS}}
    where: dict[str, Location] = {}
    if item.kind == "null":
        findings.append(Finding(
            "TL111", Severity.ERROR,
            f"rule {index} is null: the service starts, and Go decodes it as a rule with an "
            "empty regex (matches every key) and all numbers 0",
            "Remove the null entry or write a rule object.", index, None, item.location))
    elif item.kind != "object":
        findings.append(Finding(
            "TL102", Severity.ERROR,
            f"rule {index} is a JSON {item.describe()}, not an object: the service exits at "
            "start-up "
            "(cannot unmarshal into RateLimitConfig)",
            "Each entry must be an object with the five rule fields.", index, None,
            item.location))
    else:
        _decode_fields(index, item, values, where, findings)
    regex = values[REGEX_FIELD]
    assert isinstance(regex, str)
    rule = Rule(
        index=index,
        regex=regex,
        max_tokens=int(values["max_tokens"]),
        tokens_per_fill=int(values["tokens_per_fill"]),
        fill_interval_second=int(values["fill_interval_second"]),
        redis_expired_seconds=int(values["redis_expired_seconds"]),
        location=item.location,
        field_locations=tuple(where.items()),
    )
    return rule, findings


def _decode_fields(index: int, item: Node, values: dict[str, str | int],
                   where: dict[str, Location], findings: list[Finding]) -> None:
    seen: dict[str, Node] = {}
    given: set[str] = set()  # fields with a value that is not null
    present = {_FIELDS.field_for(str(key.value)) for key, _ in item.pairs()}
    for key_node, value_node in item.pairs():
        raw_key = str(key_node.value)
        name = _FIELDS.field_for(raw_key)
        if name is None:
            findings.append(_unknown_field(index, raw_key, key_node.location, present))
            continue
        if name != raw_key:
            findings.append(Finding(
                "TL208", Severity.INFO,
                f"field {raw_key!r} is read as {name!r} (Go matches field names "
                "case-insensitively)",
                f"Spell it {name!r}; other tools reading this config may not fold case.",
                index, name, key_node.location))
        if name in seen:
            findings.append(Finding(
                "TL207", Severity.WARNING,
                f"field {name!r} appears twice in rule {index}: the service uses the last value",
                "Remove the duplicate so the file says what the service does.",
                index, name, key_node.location))
        seen[name] = value_node
        where[name] = value_node.location
        if value_node.kind == "null":
            continue  # Go leaves the field as it was
        given.add(name)
        if _GO_TYPE[name] == "string":
            if value_node.kind != "string":
                findings.append(_wrong_type(index, name, value_node, "string"))
            else:
                values[name] = str(value_node.value)
            continue
        parsed = _go_int(index, name, value_node, findings)
        if parsed is not None:
            values[name] = parsed
    for name in RULE_FIELDS:
        if name in given:
            continue
        zero = '""' if name == REGEX_FIELD else "0"
        effect = "an empty regex, which matches every key" if name == REGEX_FIELD else "0"
        if name in seen:
            # Only null (say, a template's unset value): Go leaves the field at its zero value.
            findings.append(Finding(
                "TL106", Severity.ERROR,
                f"rule {index} has {name!r} null: the service reads that as no value and "
                f"silently uses {effect}",
                f"Give \"{name}\" a value (the service's zero value is {zero}).",
                index, name, seen[name].location))
            continue
        findings.append(Finding(
            "TL106", Severity.ERROR,
            f"rule {index} has no {name!r}: the service silently uses {effect}",
            f"Add \"{name}\" (the service's zero value is {zero}).",
            index, name, item.location))


def _go_int(index: int, name: str, node: Node, findings: list[Finding]) -> int | None:
    if node.kind != "number":
        findings.append(_wrong_type(index, name, node, "int"))
        return None
    text = str(node.value)
    if any(ch in text for ch in ".eE") or not text.lstrip("-").isdigit():
        findings.append(Finding(
            "TL104", Severity.ERROR,
            f"{name} is {text}, not an integer literal: the service exits at start-up "
            f"(cannot unmarshal number {text} into Go struct field of type int)",
            f"Write {name} as a whole number without a fraction or exponent.",
            index, name, node.location))
        return None
    value = int(text)
    if not INT64_MIN <= value <= INT64_MAX:
        findings.append(Finding(
            "TL105", Severity.ERROR,
            f"{name} is {text}, beyond the 64-bit int range: the service exits at start-up",
            f"Keep {name} between {INT64_MIN} and {INT64_MAX}.",
            index, name, node.location))
        return None
    return value


def _wrong_type(index: int, name: str, node: Node, go_type: str) -> Finding:
    shown = f" {node.value!r}" if node.kind == "string" else ""
    article = "an" if node.describe()[0] in "aeiou" else "a"
    return Finding(
        "TL103", Severity.ERROR,
        f"{name} is {article} {node.describe()}{shown}, not {_A_TYPE[go_type]}"
        f": the service exits at start-up (cannot unmarshal {node.describe()} into Go struct "
        f"field of type {go_type})",
        "Write numbers unquoted and without a fraction; write the regex as a string."
        if go_type == "int" else "Write the regex as a JSON string.",
        index, name, node.location)


def _unknown_field(index: int, raw_key: str, where: Location,
                   present: set[str | None]) -> Finding:
    close = difflib.get_close_matches(raw_key, RULE_FIELDS, n=1, cutoff=0.6)
    guess = f" Did you mean {close[0]!r}?" if close else ""
    effect = ""
    if close and close[0] not in present:
        effect = f" {close[0]} is missing, so it keeps its zero value."
    elif close:
        effect = f" ({close[0]} is also set, so this line changes nothing.)"
    return Finding(
        "TL206", Severity.WARNING,
        f"unknown field {raw_key!r} in rule {index}: the service ignores it silently.{effect}",
        f"Known fields: {', '.join(RULE_FIELDS)}.{guess}",
        index, raw_key, where)
