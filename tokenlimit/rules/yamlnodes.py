"""YAML documents as positioned ``Node`` trees (rule files in YAML and Kubernetes manifests)."""

from __future__ import annotations

import re

import yaml

from tokenlimit.errors import RuleError
from tokenlimit.rules.model import Location
from tokenlimit.rules.nodes import Node

_TAG = "tag:yaml.org,2002:"
_SURROGATE = re.compile("[\ud800-\udfff]")
_constructor = yaml.constructor.SafeConstructor()


def parse_yaml_documents(text: str, path: str) -> list[tuple[Node, yaml.Node]]:
    """Every document of a YAML stream as (``Node``, the raw yaml node); ``RuleError`` if broken.

    The raw node is kept so that a string holding JSON can be mapped back to manifest lines.
    """
    try:
        composed = yaml.compose_all(text, Loader=yaml.SafeLoader)
        raw_docs = [doc for doc in composed if doc is not None]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        column = mark.column + 1 if mark else None
        problem = exc.problem or exc.context or "malformed"
        raise RuleError(f"invalid YAML: {problem}", path=path, line=line, column=column) from exc
    except yaml.YAMLError as exc:
        raise RuleError(f"invalid YAML: {exc}", path=path) from exc
    except RecursionError as exc:
        # PyYAML's scanner and composer recurse once per nesting level.
        raise RuleError("invalid YAML: nested too deeply to read", path=path) from exc
    return [(to_node(doc, path, 0), doc) for doc in raw_docs]


def location_of(node: yaml.Node, path: str) -> Location:
    return Location(path, node.start_mark.line + 1, node.start_mark.column + 1)


def to_node(node: yaml.Node, path: str, depth: int) -> Node:
    """Convert a composed yaml node; tags decide kinds exactly as YAML 1.1 resolves them."""
    where = location_of(node, path)
    if depth > 200:
        raise RuleError("YAML nested too deeply", path=path, line=where.line, column=where.column)
    if isinstance(node, yaml.MappingNode):
        pairs = tuple((to_node(k, path, depth + 1), to_node(v, path, depth + 1))
                      for k, v in node.value)
        return Node("object", pairs, where)
    if isinstance(node, yaml.SequenceNode):
        return Node("array", tuple(to_node(v, path, depth + 1) for v in node.value), where)
    assert isinstance(node, yaml.ScalarNode)
    tag = node.tag
    try:
        if tag == _TAG + "int":
            return Node("number", str(_constructor.construct_yaml_int(node)), where)
        if tag == _TAG + "float":
            return Node("number", node.value, where)
        if tag == _TAG + "bool":
            return Node("bool", _constructor.construct_yaml_bool(node), where)
        if tag == _TAG + "null":
            return Node("null", None, where)
    except (ValueError, yaml.YAMLError) as exc:
        raise RuleError(f"invalid YAML scalar {node.value!r}", path=path, line=where.line,
                        column=where.column) from exc
    # A YAML escape such as "\ud800" yields a lone surrogate; the JSON the service is given
    # carries it as an escape, which Go reads as U+FFFD.
    return Node("string", _SURROGATE.sub("\ufffd", str(node.value)), where)
