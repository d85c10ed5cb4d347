"""Where rules come from: JSON or YAML files, raw JSON, the environment, stdin, manifests.

Every loader returns ``LoadedRules``; content that cannot be read at all raises a located
``RuleError``. Kubernetes manifests are searched for ``RATE_LIMIT_CONFIG`` in container env
(Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob, Pod, List), directly or
through a ConfigMap or Secret in the same file, or in a ConfigMap,
and positions inside the embedded JSON are mapped back to the manifest's lines.
"""

from __future__ import annotations

import base64
import json
import os
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import yaml

from tokenlimit.errors import RuleError
from tokenlimit.rules.decode import decode_rules
from tokenlimit.rules.findings import Finding, Severity
from tokenlimit.rules.gojson import Replacement, parse_json, text_locator
from tokenlimit.rules.model import REGEX_FIELD, Location, Rule
from tokenlimit.rules.yamlnodes import parse_yaml_documents, to_node
from tokenlimit.rules.yamlpositions import scalar_locator

ENV_VAR = "RATE_LIMIT_CONFIG"
STDIN = "-"
_WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "Pod"}


@dataclass(frozen=True, slots=True)
class LoadedRules:
    """Rules as the service would decode them, the decode findings, and where they came from."""

    rules: tuple[Rule, ...]
    findings: tuple[Finding, ...]
    origin: str
    # Where the rule array (or the null) starts; findings about the whole set point here.
    location: Location | None = None
    # The plug-in's rateLimitKeys templates from WasmPlugins in the same manifest, if any:
    # they say where keys come from (a request header the client sets, or a trusted attribute).
    key_templates: tuple[tuple[str, Location], ...] = ()

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity is Severity.ERROR)


def load_rules(
    source: str | os.PathLike[str] | None = None,
    *,
    config_json: str | None = None,
    from_env: bool = False,
    environ: Mapping[str, str] | None = None,
    stdin: TextIO | None = None,
) -> LoadedRules:
    """Load rules from exactly one source: a path (``-`` for stdin), JSON text, or the env.

    >>> load_rules(config_json='[]').rules
    ()
    """
    chosen = sum(x for x in (source is not None, config_json is not None, from_env))
    if chosen != 1:
        raise RuleError("give exactly one rules source: a file (or -), --config-json or "
                        "--from-env", path="<rules>")
    if config_json is not None:
        return parse_rules_text(config_json, "<config-json>", fmt="json")
    if from_env:
        env = os.environ if environ is None else environ
        if ENV_VAR not in env:
            raise RuleError(f"{ENV_VAR} is not set (the service exits at start-up)",
                            path=f"<env:{ENV_VAR}>")
        return parse_rules_text(env[ENV_VAR], f"<env:{ENV_VAR}>", fmt="json")
    assert source is not None
    if str(source) == STDIN:
        stream = sys.stdin if stdin is None else stdin
        raw = getattr(stream, "buffer", None)
        text = as_go_text(raw.read()) if raw is not None else stream.read()
        return parse_rules_text(text, "<stdin>", fmt="auto")
    if not str(source):  # Path("") is the current folder (an unset shell variable, say)
        raise RuleError("no such file", path="''",
                        hint="Check the path (- reads the rules from stdin).")
    path = Path(source)
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise RuleError("no such file", path=str(path),
                        hint="Check the path (- reads the rules from stdin).") from exc
    except IsADirectoryError as exc:
        raise RuleError("is a directory, not a rules file", path=str(path)) from exc
    except OSError as exc:
        raise RuleError(f"cannot read: {exc.strerror or exc}", path=str(path)) from exc
    fmt = "json" if path.suffix.lower() == ".json" else "auto"
    return parse_rules_text(as_go_text(data), str(path), fmt=fmt)


def as_go_text(data: bytes) -> str:
    """Bytes as text that keeps every undecodable byte (as a surrogate escape).

    Go reads such bytes inside JSON strings as U+FFFD and refuses them anywhere else; the
    JSON reader decides which, so nothing is lost or refused here.
    """
    return data.decode("utf-8", "surrogateescape")


def parse_rules_text(text: str, path: str, *, fmt: str = "auto") -> LoadedRules:
    """Rules from text: ``json`` (Go-strict), ``yaml`` (a list of rules or manifests), or
    ``auto`` (JSON when the first non-blank character is ``[``, ``{`` or ``n``ull)."""
    # A byte order mark is fine before YAML, but Go's JSON decoder refuses it (the service
    # exits), so JSON keeps it and the JSON reader reports it.
    stripped = text.removeprefix("\ufeff").lstrip()
    if stripped[:1] == "{" and _is_json_manifest(stripped):
        return _from_yaml(text.removeprefix("\ufeff"), path)  # JSON is YAML
    if fmt == "json" or (fmt == "auto" and stripped[:1] in ("[", "{", "n", '"')):
        replaced: list[Replacement] = []
        decoded = decode_rules(parse_json(text, path, replaced=replaced), path)
        findings = (*_replacement_findings(replaced, decoded.rules), *decoded.findings)
        return LoadedRules(decoded.rules, findings, path, decoded.location)
    if any("\ud800" <= ch <= "\udfff" for ch in text):
        offset = next(i for i, ch in enumerate(text) if "\ud800" <= ch <= "\udfff")
        line, column = text_locator(text)(offset)
        raise RuleError("not UTF-8 text: YAML and Kubernetes manifests must be UTF-8",
                        path=path, line=line, column=column)
    return _from_yaml(text.removeprefix("\ufeff"), path)


def _is_json_manifest(text: str) -> bool:
    """Whether ``text`` is a Kubernetes object in JSON (``kubectl get deploy x -o json``),
    not rules: an object with string ``apiVersion`` and ``kind``."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return False
    return (isinstance(data, dict) and isinstance(data.get("apiVersion"), str)
            and isinstance(data.get("kind"), str))


def _replacement_findings(replaced: list[Replacement],
                          rules: tuple[Rule, ...]) -> Iterator[Finding]:
    for item in replaced:
        # The rule whose object holds the string: the last one starting before it.
        at = (item.location.line, item.location.column)
        holder = None
        for rule in rules:
            if rule.location is not None and (rule.location.line, rule.location.column) <= at:
                holder = rule
        field = None
        if holder is not None and holder.location_of(REGEX_FIELD) == item.location:
            field = REGEX_FIELD
        what = []
        if item.bad_bytes:
            shown = " ".join(f"{byte:02x}" for byte in item.bad_bytes[:8])
            more = " ..." if len(item.bad_bytes) > 8 else ""
            what.append(f"{len(item.bad_bytes)} byte(s) that are not UTF-8 ({shown}{more})")
        if item.escapes:
            what.append(f"{item.escapes} unpaired surrogate escape(s) (\\ud800-\\udfff)")
        yield Finding(
            "TL115", Severity.WARNING,
            f"a JSON string holds {' and '.join(what)}: the service starts and reads each as "
            f"U+FFFD, so it sees {item.value!r}",
            "Write the text as valid UTF-8 so the file says what the service sees.",
            None if holder is None else holder.index, field, item.location)


def _from_yaml(text: str, path: str) -> LoadedRules:
    docs = parse_yaml_documents(text, path)
    if not docs:
        raise RuleError("the file holds no rules (empty document)", path=path, line=1, column=1)
    first_node, _ = docs[0]
    if len(docs) == 1 and first_node.kind != "object":
        decoded = decode_rules(first_node, path)
        return LoadedRules(decoded.rules, decoded.findings, path, decoded.location)
    unresolved: list[tuple[str, yaml.Node]] = []
    found = list(_configs_in_manifests([raw for _, raw in docs], text, path, unresolved))
    if not found and unresolved:
        where, node = unresolved[0]
        raise RuleError(f"{ENV_VAR} {where}, which this file does not hold: nothing to check",
                        path=path, line=node.start_mark.line + 1,
                        column=node.start_mark.column + 1,
                        hint="Validate the file that holds it, or both files together: "
                             "cat deployment.yaml configmap.yaml | tokenlimit validate -")
    if not found:
        raise RuleError(f"no {ENV_VAR} found: expected a list of rules, or a Deployment, "
                        f"StatefulSet, DaemonSet, Pod or ConfigMap that sets {ENV_VAR}",
                        path=path, line=1, column=1)
    scalar, where_label = found[0]
    replaced: list[Replacement] = []
    decoded = decode_rules(parse_json(str(scalar.value), path, scalar_locator(scalar, text),
                                      replaced), path)
    findings = [*_replacement_findings(replaced, decoded.rules), *decoded.findings]
    for other, label in found[1:]:
        findings.append(Finding(
            "TL113", Severity.WARNING,
            f"{ENV_VAR} is also set in {label}: only the first one ({where_label}) is checked",
            "Validate each manifest separately, or keep one rule set per file.",
            None, None, to_node(other, path, 0).location))
    templates = tuple(_key_templates([raw for _, raw in docs], path))
    return LoadedRules(decoded.rules, tuple(findings), path, decoded.location, templates)


def _key_templates(docs: list[yaml.Node], path: str) -> Iterator[tuple[str, Location]]:
    for obj in _objects(docs):
        if _str(_get(obj, "kind")) != "WasmPlugin":
            continue
        for entry in _seq(_path(obj, "spec", "pluginConfig", "rateLimitKeys")):
            if isinstance(entry, yaml.ScalarNode):
                yield str(entry.value), to_node(entry, path, 0).location


def _get(node: yaml.Node | None, key: str) -> yaml.Node | None:
    if not isinstance(node, yaml.MappingNode):
        return None
    for k, v in node.value:
        if isinstance(k, yaml.ScalarNode) and k.value == key:
            return v  # type: ignore[no-any-return]
    return None


def _path(node: yaml.Node | None, *keys: str) -> yaml.Node | None:
    for key in keys:
        node = _get(node, key)
    return node


def _seq(node: yaml.Node | None) -> list[yaml.Node]:
    return list(node.value) if isinstance(node, yaml.SequenceNode) else []


def _str(node: yaml.Node | None) -> str | None:
    return str(node.value) if isinstance(node, yaml.ScalarNode) else None


def _objects(docs: list[yaml.Node]) -> Iterator[yaml.Node]:
    for doc in docs:
        if _str(_get(doc, "kind")) == "List":
            yield from _objects(_seq(_get(doc, "items")))
        else:
            yield doc


def _configs_in_manifests(docs: list[yaml.Node], text: str, path: str,
                          unresolved: list[tuple[str, yaml.Node]]
                          ) -> Iterator[tuple[yaml.ScalarNode, str]]:
    """The RATE_LIMIT_CONFIG values set in ``docs``; each one set from a ConfigMap or Secret
    that ``docs`` do not hold goes to ``unresolved`` (what it comes from, where it says so)."""
    objects = list(_objects(docs))
    config_maps = {
        _str(_path(obj, "metadata", "name")): obj
        for obj in objects if _str(_get(obj, "kind")) == "ConfigMap"
    }
    secrets = {
        _str(_path(obj, "metadata", "name")): obj
        for obj in objects if _str(_get(obj, "kind")) == "Secret"
    }
    for obj in objects:
        kind = _str(_get(obj, "kind")) or "?"
        name = _str(_path(obj, "metadata", "name")) or "?"
        if kind == "ConfigMap":
            value = _path(obj, "data", ENV_VAR)
            if isinstance(value, yaml.ScalarNode):
                yield value, f"ConfigMap/{name}"
            continue
        if kind == "CronJob":
            pod_spec = _path(obj, "spec", "jobTemplate", "spec", "template", "spec")
        elif kind == "Pod":
            pod_spec = _get(obj, "spec")
        elif kind in _WORKLOADS:
            pod_spec = _path(obj, "spec", "template", "spec")
        else:
            continue
        containers = _seq(_get(pod_spec, "initContainers")) + _seq(_get(pod_spec, "containers"))
        for container in containers:
            for env in _seq(_get(container, "env")):
                if _str(_get(env, "name")) != ENV_VAR:
                    continue
                label = f"{kind}/{name} container {_str(_get(container, 'name')) or '?'}"
                value = _get(env, "value")
                if isinstance(value, yaml.ScalarNode):
                    yield value, label
                    continue
                ref = _path(env, "valueFrom", "configMapKeyRef")
                target = config_maps.get(_str(_get(ref, "name")))
                data = _path(target, "data", _str(_get(ref, "key")) or "")
                if isinstance(data, yaml.ScalarNode):
                    yield data, f"{label} via ConfigMap/{_str(_get(ref, 'name'))}"
                    continue
                secret_ref = _path(env, "valueFrom", "secretKeyRef")
                secret = _secret_value(secrets.get(_str(_get(secret_ref, "name"))),
                                       _str(_get(secret_ref, "key")) or "", path)
                if secret is not None:
                    yield secret, f"{label} via Secret/{_str(_get(secret_ref, 'name'))}"
                    continue
                for source, kind_name in (("configMapKeyRef", "ConfigMap"),
                                          ("secretKeyRef", "Secret")):
                    ref = _path(env, "valueFrom", source)
                    if ref is not None:
                        unresolved.append((
                            f"in {label} comes from {kind_name}/{_str(_get(ref, 'name')) or '?'}"
                            f" (key {_str(_get(ref, 'key')) or '?'})", ref))


_BASE64 = "base64"  # the style given to a Secret's decoded data: its findings point at it


def _secret_value(secret: yaml.Node | None, key: str, path: str) -> yaml.ScalarNode | None:
    """A Secret's value for ``key``: ``stringData`` as written, or ``data`` decoded from
    base64 (as a node at the encoded value, whose findings all point at its start)."""
    plain = _path(secret, "stringData", key)
    if isinstance(plain, yaml.ScalarNode):
        return plain
    encoded = _path(secret, "data", key)
    if not isinstance(encoded, yaml.ScalarNode):
        return None
    try:
        data = base64.b64decode("".join(str(encoded.value).split()), validate=True)
    except ValueError as exc:
        raise RuleError("the Secret's data is not base64", path=path,
                        line=encoded.start_mark.line + 1,
                        column=encoded.start_mark.column + 1,
                        hint="Kubernetes refuses it too: encode it (base64 -w0), or write the "
                             "text under stringData.") from exc
    return yaml.ScalarNode("tag:yaml.org,2002:str", as_go_text(data), encoded.start_mark,
                           encoded.end_mark, style=_BASE64)
