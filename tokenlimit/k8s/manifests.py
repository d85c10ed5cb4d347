"""Pure rendering: rules and options in, Kubernetes objects (plain dicts) out.

Key order in every object is fixed (the ASM guide's order for the WasmPlugin, kubectl's
usual order elsewhere), so the same input always gives the same bytes once dumped
(``tokenlimit.k8s.yamlio``). The Redis password only ever enters ``render_secret``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

import yaml

from tokenlimit.k8s.settings import (
    ASM_SERVICE_IMAGE,
    CONTAINER_PORT,
    SERVICE_PORT,
    ServiceManifestOptions,
    WasmPluginOptions,
)
from tokenlimit.rules import ENV_VAR, Finding, Location, Rule, RuleMatcher, Severity

Manifest = dict[str, Any]

SERVE_COMMAND: tuple[str, ...] = ("tokenlimit",)
SERVE_ARGS: tuple[str, ...] = ("serve", "--host", "0.0.0.0", "--port", str(CONTAINER_PORT))
_RESOURCES = {
    "requests": {"cpu": "50m", "memory": "64Mi"},
    "limits": {"cpu": "200m", "memory": "256Mi"},
}


def rules_config_json(rules: Sequence[Rule]) -> str:
    """``RATE_LIMIT_CONFIG`` as compact, stable JSON (fields as ``Rule.to_config``).

    >>> rules_config_json([Rule(0, "regular-user.*", 200, 50, 30, 300)])
    '[{"rate_limit_key_regex":"regular-user.*","max_tokens":200,"tokens_per_fill":50,\
"fill_interval_second":30,"redis_expired_seconds":300}]'
    """
    return json.dumps([r.to_config() for r in rules], separators=(",", ":"), ensure_ascii=False)


def render_wasmplugin(options: WasmPluginOptions) -> Manifest:
    """The WasmPlugin of the ASM guide, with every field taken from ``options``."""
    spec: Manifest = {
        "failStrategy": options.fail_strategy,
        "imagePullPolicy": options.image_pull_policy,
    }
    if options.target_refs:
        spec["targetRefs"] = [ref.to_manifest() for ref in options.target_refs]
    elif options.selector:
        spec["selector"] = {"matchLabels": dict(options.selector)}
    match: Manifest = {"mode": options.match_mode}
    if options.match_ports:
        match["ports"] = [{"number": port} for port in options.match_ports]
    spec["match"] = [match]
    spec["phase"] = options.phase
    spec["pluginConfig"] = {
        "matches": [{"host": {"exact": host}} for host in options.hosts],
        "rateLimitKeys": list(options.key_templates),
        "rateLimitService": {"service": options.service_fqdn, "port": options.service_port},
    }
    spec["priority"] = options.priority
    spec["url"] = options.url
    return {
        "apiVersion": "extensions.istio.io/v1alpha1",
        "kind": "WasmPlugin",
        "metadata": {"name": options.name, "namespace": options.namespace},
        "spec": spec,
    }


def render_service(rules: Sequence[Rule], options: ServiceManifestOptions,
                   password: str | None = None) -> list[Manifest]:
    """ServiceAccount, Service (80 -> 8080) and Deployment of the rate-limit service, with
    the Secret holding ``password`` after the ServiceAccount when one is given."""
    meta = {"name": options.name, "namespace": options.namespace}
    labels = {"app": options.name}
    account: Manifest = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": dict(meta)}
    service: Manifest = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {**meta, "labels": dict(labels)},
        "spec": {
            "selector": dict(labels),
            "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": CONTAINER_PORT,
                       "protocol": "TCP"}],
        },
    }
    deployment: Manifest = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {**meta, "labels": dict(labels)},
        "spec": {
            "replicas": options.replicas,
            "selector": {"matchLabels": dict(labels)},
            "template": {
                "metadata": {"labels": {**labels, "sidecar.istio.io/inject": "true"}},
                "spec": {
                    "serviceAccountName": options.name,
                    "containers": [_container(rules, options)],
                },
            },
        },
    }
    objects = [account, service, deployment]
    if password is not None:
        objects.insert(1, render_secret(options, password))
    return objects


def _container(rules: Sequence[Rule], options: ServiceManifestOptions) -> Manifest:
    env: list[Manifest] = [{"name": "REDIS_ADDRESS", "value": options.redis_address}]
    if options.password_secret:
        env.append({"name": "REDIS_PASSWORD", "valueFrom": {"secretKeyRef": {
            "name": options.password_secret, "key": options.password_key}}})
    if options.redis_db is not None:
        env.append({"name": "REDIS_DB_INDEX", "value": str(options.redis_db)})
    env.append({"name": ENV_VAR, "value": rules_config_json(rules)})
    container: Manifest = {
        "name": "ratelimit",
        "image": options.image or ASM_SERVICE_IMAGE,
    }
    if options.image:
        container["command"] = list(SERVE_COMMAND)
        container["args"] = list(SERVE_ARGS)
    container["ports"] = [{"name": "http", "containerPort": CONTAINER_PORT, "protocol": "TCP"}]
    container["env"] = env
    if options.image:
        container["readinessProbe"] = {
            "httpGet": {"path": "/readyz", "port": CONTAINER_PORT},
            "periodSeconds": 5,
            "failureThreshold": 2,
        }
        container["livenessProbe"] = {
            "httpGet": {"path": "/healthz", "port": CONTAINER_PORT},
            "periodSeconds": 10,
            "failureThreshold": 3,
        }
    container["resources"] = {k: dict(v) for k, v in _RESOURCES.items()}
    return container


def render_secret(options: ServiceManifestOptions, password: str) -> Manifest:
    """The Secret holding the Redis password (base64 in ``data``, as the API stores it)."""
    encoded = base64.b64encode(password.encode("utf-8")).decode("ascii")
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": options.password_secret, "namespace": options.namespace},
        "type": "Opaque",
        "data": {options.password_key: encoded},
    }


def render_all(rules: Sequence[Rule], plugin: WasmPluginOptions, service: ServiceManifestOptions,
               password: str | None = None) -> list[Manifest]:
    """Service objects (with the Secret when ``password`` is given), then the WasmPlugin."""
    objects = render_service(rules, service, password)
    objects.append(render_wasmplugin(plugin))
    return objects


def key_template_findings(templates: Sequence[str], rules: Sequence[Rule],
                          locations: Sequence[Location] = ()) -> list[Finding]:
    """Warnings for ``rateLimitKeys`` entries that are constants no rule matches.

    A template without ``{{...}}`` renders to the same key for every request; if no rule's
    regex matches that key, the service never limits it (and nothing is stored for it).
    ``locations``, when given, are where each entry stands in the rendered manifest.

    >>> [f.code for f in key_template_findings(["global"], [Rule(0, "user-.*", 1, 1, 1, 1)])]
    ['TL409']
    """
    if not rules:
        return []
    matcher = RuleMatcher(rules)
    return [
        Finding("TL409", Severity.WARNING,
                f"rateLimitKeys entry {template!r} is a constant key that no rule matches: the "
                "service never limits it",
                "Add a rule whose rate_limit_key_regex matches it, or use a template such as "
                "{{request.headers.user-type}}.", None, "rateLimitKeys",
                locations[i] if i < len(locations) else None)
        for i, template in enumerate(templates)
        if "{{" not in template and matcher.index_for(template) is None
    ]


def key_template_locations(text: str, path: str) -> list[Location]:
    r"""Where each ``rateLimitKeys`` entry of the (first) WasmPlugin in ``text`` stands.

    >>> text = "kind: WasmPlugin\nspec:\n  pluginConfig:\n    rateLimitKeys:\n    - a\n    - b\n"
    >>> [str(where) for where in key_template_locations(text, "w.yaml")]
    ['w.yaml:5:7', 'w.yaml:6:7']
    """
    for document in yaml.compose_all(text, Loader=yaml.SafeLoader):
        node = document
        if not isinstance(node, yaml.MappingNode) or _scalar(node, "kind") != "WasmPlugin":
            continue
        for key in ("spec", "pluginConfig", "rateLimitKeys"):
            found = _child(node, key) if isinstance(node, yaml.MappingNode) else None
            if found is None:
                return []
            node = found
        if isinstance(node, yaml.SequenceNode):
            return [Location(path, item.start_mark.line + 1, item.start_mark.column + 1)
                    for item in node.value]
    return []


def _child(node: yaml.MappingNode, key: str) -> yaml.Node | None:
    return next((value for name, value in node.value if name.value == key), None)


def _scalar(node: yaml.MappingNode, key: str) -> str | None:
    found = _child(node, key)
    return found.value if isinstance(found, yaml.ScalarNode) else None
