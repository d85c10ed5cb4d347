"""Checking manifests before they ship: WasmPlugins, core objects, embedded rules.

``check_manifests(paths)`` returns ``Finding`` values (the linter's type) that name the file,
line, column and field:

- WasmPlugin: tokenlimit's own schema (``wasmplugin.schema.json``, written for ASM's plug-in:
  Istio's fields, types and enumerations, and this plug-in's ``pluginConfig``), plus the rules
  Istio states outside its schema (one of selector / targetRef / targetRefs; URL schemes).
- Core kinds (Deployment, Service, Secret, ConfigMap...): Kubernetes' own schemas in strict
  mode (unknown fields are errors) through the optional ``kubernetes-validate`` package, which
  ships them (no network). Without it, a warning says core kinds were not checked.
- ``RATE_LIMIT_CONFIG`` in a Deployment or ConfigMap: the rule linter's findings.
- A WasmPlugin whose ``rateLimitService`` names a Service that the checked files do not define
  (when they define any Service) or a port that Service does not expose: a warning.

Codes: TL400 YAML, TL401 object shape, TL402 WasmPlugin schema, TL403 unknown pluginConfig
field (warning), TL404 core schema, TL405 core kinds not checked, TL406 kind not checked (info),
TL407 service reference (warning), TL408 a password inline in a container's env (warning).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import jsonschema
import yaml

from tokenlimit.errors import RuleError
from tokenlimit.k8s import core
from tokenlimit.k8s.objects import JsonPath, ManifestObject, field_name, schema_findings
from tokenlimit.k8s.yamlio import go_yaml_value
from tokenlimit.rules import ENV_VAR, Finding, Location, Severity, lint, parse_rules_text

_constructor = yaml.constructor.SafeConstructor()
_STR = "tag:yaml.org,2002:str"
_T = TypeVar("_T")


def _empty(doc: yaml.Node | None) -> bool:
    # An empty document between two `---` composes to a null scalar; kubectl skips it.
    return doc is None or (isinstance(doc, yaml.ScalarNode) and doc.tag.endswith(":null")
                           and doc.value in ("", "~", "null"))


def read_objects(text: str, path: str) -> list[ManifestObject]:
    """Every object of a YAML stream (``List`` items expanded), with positions."""
    try:
        docs = [d for d in yaml.compose_all(text, Loader=yaml.SafeLoader) if not _empty(d)]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise RuleError(f"invalid YAML: {exc.problem or exc.context or 'malformed'}", path=path,
                        line=mark.line + 1 if mark else None,
                        column=mark.column + 1 if mark else None) from exc
    except yaml.YAMLError as exc:
        raise RuleError(f"invalid YAML: {exc}", path=path) from exc
    except RecursionError as exc:
        # PyYAML's scanner and composer recurse once per nesting level.
        raise RuleError("invalid YAML: nested too deeply to read", path=path) from exc
    objects: list[ManifestObject] = []
    for doc in docs:
        values: dict[JsonPath, tuple[int, int]] = {}
        keys: dict[JsonPath, tuple[int, int]] = {}
        coerced: dict[JsonPath, str] = {}
        try:
            data = _convert(doc, (), values, keys, coerced)
        except (yaml.YAMLError, ValueError, TypeError) as exc:
            raise RuleError(f"invalid YAML value: {exc}", path=path,
                            line=doc.start_mark.line + 1) from exc
        if isinstance(data, dict) and data.get("kind") == "List" and isinstance(
                data.get("items"), list):
            for i, item in enumerate(data["items"]):
                prefix: JsonPath = ("items", i)
                objects.append(ManifestObject(
                    item, path, _rebase(values, prefix), _rebase(keys, prefix),
                    _rebase(coerced, prefix)))
        else:
            objects.append(ManifestObject(data, path, values, keys, coerced))
    return objects


def _rebase(marks: dict[JsonPath, _T], prefix: JsonPath) -> dict[JsonPath, _T]:
    n = len(prefix)
    return {k[n:]: v for k, v in marks.items() if k[:n] == prefix}


def _convert(node: yaml.Node, at: JsonPath, values: dict[JsonPath, tuple[int, int]],
             keys: dict[JsonPath, tuple[int, int]], coerced: dict[JsonPath, str]) -> Any:
    values[at] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if len(at) > 100:
        raise ValueError("nested too deeply")
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = str(_constructor.construct_object(key_node, deep=True))
            keys[(*at, key)] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            out[key] = _convert(value_node, (*at, key), values, keys, coerced)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, (*at, i), values, keys, coerced)
                for i, item in enumerate(node.value)]
    value = _constructor.construct_object(node, deep=True)
    if (isinstance(value, str) and isinstance(node, yaml.ScalarNode) and node.style is None
            and node.tag == _STR):
        # What kubectl will send: Go's yaml.v2 resolves more plain scalars than PyYAML.
        go_value = go_yaml_value(value)
        if go_value is not value:
            coerced[at] = value
            return go_value
    return value


@cache
def wasmplugin_schema() -> dict[str, Any]:
    """tokenlimit's WasmPlugin schema (JSON Schema 2020-12), shipped in the package."""
    text = resources.files("tokenlimit.k8s").joinpath("wasmplugin.schema.json").read_text(
        encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def check_manifests(paths: Sequence[str], *, kube_version: str | None = None
                    ) -> list[Finding]:
    """All findings for the manifests in ``paths`` (``-`` is not read here: give text to
    ``check_texts``)."""
    texts: list[tuple[str, str]] = []
    for name in paths:
        try:
            texts.append((Path(name).read_text(encoding="utf-8"), name))
        except FileNotFoundError as exc:
            raise RuleError("no such file", path=name) from exc
        except UnicodeDecodeError as exc:
            raise RuleError(f"not UTF-8 text (byte {exc.start})", path=name) from exc
        except OSError as exc:
            raise RuleError(f"cannot read: {exc.strerror or exc}", path=name) from exc
    return check_texts(texts, kube_version=kube_version)


def check_texts(texts: Sequence[tuple[str, str]], *, kube_version: str | None = None
                ) -> list[Finding]:
    """Findings for ``(text, path)`` pairs, in file order, then line order."""

    findings: list[Finding] = []
    objects: list[ManifestObject] = []
    for text, path in texts:
        try:
            found = read_objects(text, path)
        except RuleError as exc:
            findings.append(Finding("TL400", Severity.ERROR, exc.message,
                                    "Fix the YAML syntax.", None, None,
                                    Location(path, exc.line or 1, exc.column or 1)))
            continue
        if not found:
            findings.append(Finding(
                "TL410", Severity.WARNING, "the file holds no Kubernetes objects: nothing checked",
                "Check the path (an empty file, or only comments, checks nothing).",
                None, None, Location(path, 1, 1)))
        objects.extend(found)
        if ENV_VAR in text:
            findings.extend(_rule_findings(text, path))
    core_checker = core.CoreChecker.create(kube_version)
    for obj in objects:
        findings.extend(_check_object(obj, core_checker))
    unchecked = [o for o in objects if not _is_wasmplugin(o.data)]
    if core_checker is None and unchecked:
        findings.append(Finding(
            "TL405", Severity.WARNING,
            f"core kinds were not checked ({_labels(unchecked)}): the kubernetes-validate "
            "package is not installed",
            "pip install 'tokenlimit[k8s]' to check them against Kubernetes' own schemas.",
            None, None, unchecked[0].where(())))
    findings.extend(_service_references(objects))
    order = {p: i for i, (_, p) in enumerate(texts)}
    return sorted(findings, key=lambda f: (
        order.get(f.location.path, -1) if f.location else len(order),
        f.location.line if f.location else 0, f.location.column if f.location else 0))


def _labels(objects: Sequence[ManifestObject]) -> str:
    more = f" and {len(objects) - 1} more" if len(objects) > 1 else ""
    return f"{objects[0].label}{more}"


def _rule_findings(text: str, path: str) -> list[Finding]:
    # The rules' figures and explanations (infos) belong to `tokenlimit validate`; a manifest
    # check reports what would break or mislead.
    try:
        findings = lint(parse_rules_text(text, path, fmt="yaml"))
        return [f for f in findings if f.severity is not Severity.INFO]
    except RuleError as exc:
        return [Finding("TL100", Severity.ERROR, exc.message,
                        exc.hint or "Fix RATE_LIMIT_CONFIG so the service can decode it.", None,
                        None,
                        Location(exc.path or path, exc.line or 1, exc.column or 1))]


def _is_wasmplugin(data: Any) -> bool:
    return isinstance(data, dict) and data.get("kind") == "WasmPlugin" and str(
        data.get("apiVersion", "")).startswith("extensions.istio.io/")


def _check_object(obj: ManifestObject, core_checker: Any) -> Iterator[Finding]:
    data = obj.data
    if not isinstance(data, dict) or not isinstance(data.get("kind"), str) or not isinstance(
            data.get("apiVersion"), str):
        yield Finding("TL401", Severity.ERROR,
                      "not a Kubernetes object: apiVersion and kind must be strings",
                      "Each YAML document must be one object with apiVersion, kind and "
                      "metadata.", None, None, obj.where(()))
        return
    if _is_wasmplugin(data):
        yield from check_wasmplugin(obj)
        return
    if core_checker is not None:
        yield from core_checker.check(obj)
    yield from _inline_passwords(obj)


_POD_SPECS: dict[str, JsonPath] = {
    "Pod": ("spec",),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
    **{kind: ("spec", "template", "spec") for kind in (
        "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job")},
}


def _inline_passwords(obj: ManifestObject) -> Iterator[Finding]:
    """Env variables named like a password with an inline value: the ASM example's leak."""
    pod_path = _POD_SPECS.get(str(obj.data.get("kind")))
    if pod_path is None:
        return
    pod: Any = obj.data
    for part in pod_path:
        pod = pod.get(part) if isinstance(pod, dict) else None
    if not isinstance(pod, dict):
        return
    for group in ("initContainers", "containers"):
        containers = pod.get(group)
        for c, container in enumerate(containers if isinstance(containers, list) else []):
            env = container.get("env") if isinstance(container, dict) else None
            for e, var in enumerate(env if isinstance(env, list) else []):
                if not isinstance(var, dict) or not var.get("value"):
                    continue
                name = str(var.get("name", ""))
                if "PASSWORD" in name.upper() or "SECRET" in name.upper():
                    at: JsonPath = (*pod_path, group, c, "env", e, "value")
                    yield Finding(
                        "TL408", Severity.WARNING,
                        f"{obj.label}: {field_name(at)}: {name} is set inline (value not "
                        "shown): whoever reads this manifest, or the repository it lives in, "
                        "reads the password",
                        "Use valueFrom.secretKeyRef; `tokenlimit render service` renders it "
                        "so.", None, field_name(at), obj.where(at))


def check_wasmplugin(obj: ManifestObject) -> Iterator[Finding]:
    """Findings of one WasmPlugin against tokenlimit's schema and Istio's extra rules."""
    validator = jsonschema.Draft202012Validator(wasmplugin_schema())
    for error in sorted(validator.iter_errors(obj.data), key=lambda e: list(map(str, e.path))):
        yield from schema_findings(obj, error, "TL402", plugin=True)
    spec = obj.data.get("spec")
    if isinstance(spec, dict):
        chosen = [k for k in ("selector", "targetRef", "targetRefs") if k in spec]
        if len(chosen) > 1:
            yield Finding(
                "TL402", Severity.ERROR,
                f"{obj.label}: spec: only one of selector, targetRef and targetRefs can be set "
                f"(found {', '.join(chosen)})",
                "Keep one way of choosing the workloads.", None, f"spec.{chosen[1]}",
                obj.where(("spec", chosen[1]), key=True))
        url = spec.get("url")
        if isinstance(url, str) and "://" in url and url.split("://")[0] not in (
                "oci", "http", "https", "file"):
            yield Finding("TL402", Severity.ERROR,
                          f"{obj.label}: spec.url: the scheme must be one of oci, http, https, "
                          "file (or none, meaning an OCI image)",
                          "Use the image reference from the ASM guide.", None, "spec.url",
                          obj.where(("spec", "url")))


def _service_references(objects: Sequence[ManifestObject]) -> Iterator[Finding]:
    services: dict[str, set[str]] = {}
    for obj in objects:
        data = obj.data
        if isinstance(data, dict) and data.get("kind") == "Service":
            meta = data.get("metadata") or {}
            spec = data.get("spec") or {}
            if not isinstance(meta, dict) or not isinstance(spec, dict):
                continue
            fqdn = f"{meta.get('name')}.{meta.get('namespace') or 'default'}.svc.cluster.local"
            ports = spec.get("ports") or []
            services[fqdn] = {str(p.get("port")) for p in ports if isinstance(p, dict)}
    if not services:
        return
    for obj in objects:
        if not _is_wasmplugin(obj.data):
            continue
        spec = obj.data.get("spec")
        config = spec.get("pluginConfig") if isinstance(spec, dict) else None
        target = config.get("rateLimitService") if isinstance(config, dict) else None
        if not isinstance(target, dict):
            continue
        at: JsonPath = ("spec", "pluginConfig", "rateLimitService")
        name, port = target.get("service"), target.get("port")
        if name not in services:
            yield Finding("TL407", Severity.WARNING,
                          f"{obj.label}: {field_name((*at, 'service'))}: {name!r} is not a "
                          "Service defined in the checked files; the plug-in's checks would "
                          "fail and fail-open would decide every request",
                          f"Known Services: {', '.join(sorted(services))}.", None,
                          field_name((*at, "service")), obj.where((*at, "service")))
        elif str(port) not in services[str(name)]:
            yield Finding("TL407", Severity.WARNING,
                          f"{obj.label}: {field_name((*at, 'port'))}: Service {name} exposes "
                          f"no port {port}",
                          f"Ports: {', '.join(sorted(map(str, services[str(name)])))}.", None,
                          field_name((*at, "port")), obj.where((*at, "port")))
