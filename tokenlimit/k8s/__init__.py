"""Kubernetes manifests for ASM's LLM token rate limiting: rendering and checking.

Pure: no terminal libraries here. ``render_*`` turn rules and options into objects (dicts);
``format_manifests`` and ``write_manifests`` turn objects into YAML; ``check_manifests``
validates a user's files (WasmPlugin against tokenlimit's own schema, core kinds against
Kubernetes' schemas when ``kubernetes-validate`` is installed, embedded rules with the linter).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tokenlimit._lazy import lazy_exports

if TYPE_CHECKING:
    from tokenlimit.k8s.check import check_manifests, check_texts, wasmplugin_schema
    from tokenlimit.k8s.manifests import (
        Manifest,
        key_template_findings,
        key_template_locations,
        render_all,
        render_secret,
        render_service,
        render_wasmplugin,
        rules_config_json,
    )
    from tokenlimit.k8s.settings import (
        ServiceManifestOptions,
        TargetRef,
        WasmPluginOptions,
        parse_labels,
        parse_target_ref,
        password_from_env,
    )
    from tokenlimit.k8s.yamlio import format_manifests, manifest_filename, write_manifests
else:
    __getattr__, __dir__ = lazy_exports(__name__, {
        "tokenlimit.k8s.check": ("check_manifests", "check_texts", "wasmplugin_schema"),
        "tokenlimit.k8s.settings": ("ServiceManifestOptions", "TargetRef", "WasmPluginOptions",
                                   "parse_labels", "parse_target_ref", "password_from_env"),
        "tokenlimit.k8s.manifests": ("Manifest", "key_template_findings",
                                  "key_template_locations", "render_all",
                                  "render_secret", "render_service", "render_wasmplugin",
                                  "rules_config_json"),
        "tokenlimit.k8s.yamlio": ("format_manifests", "manifest_filename", "write_manifests"),
    })

__all__ = [
    "Manifest",
    "ServiceManifestOptions",
    "TargetRef",
    "WasmPluginOptions",
    "check_manifests",
    "check_texts",
    "format_manifests",
    "key_template_findings",
    "key_template_locations",
    "manifest_filename",
    "parse_labels",
    "parse_target_ref",
    "password_from_env",
    "render_all",
    "render_secret",
    "render_service",
    "render_wasmplugin",
    "rules_config_json",
    "wasmplugin_schema",
    "write_manifests",
]
