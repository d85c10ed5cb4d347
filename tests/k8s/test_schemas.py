"""Rendered objects against the real schemas: Istio's WasmPlugin CRD (shared reference data,
read in place) and Kubernetes' own schemas (kubernetes-validate, offline). tokenlimit's own
WasmPlugin schema must agree with Istio's on what it accepts and refuses."""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import SHARED
from tests.k8s.test_render import PASSWORD, custom_plugin, custom_service, sample_rules
from tokenlimit.k8s import (
    ServiceManifestOptions,
    TargetRef,
    WasmPluginOptions,
    check_texts,
    format_manifests,
    render_all,
    render_wasmplugin,
    wasmplugin_schema,
)
from tokenlimit.k8s.check import read_objects
from tokenlimit.k8s.settings import (
    FAIL_STRATEGIES,
    MATCH_MODES,
    PHASES,
    PLUGIN_URL,
    PULL_POLICIES,
)

CRD = SHARED / "schemas" / "istio-wasmplugin-crd.yaml"
# The CRD is shared reference data beside the repository, never copied into it; where it is
# absent (a lone clone), the tests that need it say so instead of failing on a missing file.
needs_crd = pytest.mark.skipif(not CRD.exists(), reason=f"{CRD} is not present")


@cache
def istio_schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD.read_text(encoding="utf-8"))
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1")
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def istio_errors(obj: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(istio_schema())
    return [e.message for e in validator.iter_errors(obj)]


def own_errors(obj: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft202012Validator(wasmplugin_schema())
    return [e.message for e in validator.iter_errors(obj)]


def all_objects() -> list[list[dict[str, Any]]]:
    return [
        render_all(sample_rules(), WasmPluginOptions(), ServiceManifestOptions()),
        render_all(sample_rules(), custom_plugin(), custom_service(), PASSWORD),
    ]


@needs_crd
def test_the_crd_is_the_shared_reference() -> None:
    assert istio_schema()["properties"]["spec"]["required"] == ["url"]


@needs_crd
@pytest.mark.parametrize("objects", all_objects(), ids=["defaults", "custom"])
def test_rendered_wasmplugin_passes_istios_crd_schema(objects: list[dict[str, Any]]) -> None:
    plugin = objects[-1]
    assert plugin["kind"] == "WasmPlugin"
    assert istio_errors(plugin) == []
    assert own_errors(plugin) == []


@pytest.mark.parametrize("objects", all_objects(), ids=["defaults", "custom"])
def test_rendered_core_objects_pass_kubernetes_strict_schemas(
        objects: list[dict[str, Any]]) -> None:
    core = [o for o in objects if o["kind"] != "WasmPlugin"]
    assert [o["kind"] for o in core][:1] == ["ServiceAccount"]
    for obj in core:
        kubernetes_validate.validate(obj, kubernetes_validate.latest_version(), strict=True)


def test_kubernetes_validate_really_refuses_a_bad_deployment() -> None:
    deployment = copy.deepcopy(all_objects()[0][2])
    deployment["spec"]["replicas"] = "1"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, kubernetes_validate.latest_version(),
                                     strict=True)


def _mutate(path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    plugin = render_wasmplugin(WasmPluginOptions())
    target: Any = plugin
    for part in path[:-1]:
        target = target[part]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return plugin


_DELETE = object()


@needs_crd
@pytest.mark.parametrize(("path", "value"), [
    (("spec", "failStrategy"), "FAIL_OPN"),
    (("spec", "phase"), "stats"),
    (("spec", "imagePullPolicy"), "Never"),
    (("spec", "priority"), "10"),
    (("spec", "match", 0, "mode"), "CLIENTS"),
    (("spec", "match", 0, "ports", 0, "number"), 0),
    (("spec", "match", 0, "ports", 0, "number"), "80"),
    (("spec", "url"), _DELETE),
    (("spec", "url"), ""),
    (("spec", "pluginConfig"), ["not", "an", "object"]),
])
def test_both_schemas_refuse_what_istio_refuses(path: tuple[str | int, ...], value: Any) -> None:
    bad = _mutate(path, value)
    assert istio_errors(bad) != []
    assert own_errors(bad) != []


@needs_crd
@pytest.mark.parametrize(("path", "value"), [
    (("spec", "pluginConfig", "rateLimitKeys"), _DELETE),
    (("spec", "pluginConfig", "rateLimitKeys"), []),
    (("spec", "pluginConfig", "rateLimitService", "port"), 70000),
    (("spec", "pluginConfig", "rateLimitService"), {"service": "x"}),
    (("spec", "pluginConfig", "matches"), [{"host": {"prefix": "api."}}]),
    (("spec", "fialStrategy"), "FAIL_OPEN"),
    # Istio states this one as a CEL rule, which plain JSON Schema validation does not run.
    (("spec", "selector", "matchLabels", "app"), "sle*p"),
])
def test_own_schema_also_checks_the_plugins_config_and_typos(
        path: tuple[str | int, ...], value: Any) -> None:
    # Istio keeps pluginConfig opaque and prunes unknown fields silently; tokenlimit's schema
    # knows this plug-in's configuration and refuses fields that would be lost.
    bad = _mutate(path, value)
    assert istio_errors(bad) == []
    assert own_errors(bad) != []


_label = st.from_regex(r"\A[a-z]([-a-z0-9]{0,10}[a-z0-9])?\Z")
_port = st.integers(min_value=1, max_value=65535)
# Label values kubectl's YAML reader takes for booleans or numbers unless they are quoted.
_label_value = _label | st.sampled_from(["y", "n", "1e3", "0o17", "0X1F", "1_0", "1.5e3"])


@st.composite
def _plugin_options(draw: st.DrawFn) -> WasmPluginOptions:
    use_refs = draw(st.booleans())
    refs = tuple(TargetRef(draw(st.sampled_from(["Service", "Gateway"])), draw(_label),
                           draw(st.sampled_from(["", "gateway.networking.k8s.io"])))
                 for _ in range(draw(st.integers(1, 3)))) if use_refs else ()
    selector = () if use_refs else tuple(
        (draw(_label), draw(_label_value)) for _ in range(draw(st.integers(0, 2))))
    return WasmPluginOptions(
        name=draw(_label), namespace=draw(_label), selector=selector, target_refs=refs,
        hosts=tuple(draw(st.lists(_label.map(lambda s: s + ".example.com"), min_size=1,
                                  max_size=3))),
        key_templates=tuple(draw(st.lists(st.sampled_from([
            "{{request.headers.user-type}}", "{{source.principal}}", "all", "x:{{request.host}}"
        ]), min_size=1, max_size=3))),
        match_mode=draw(st.sampled_from(MATCH_MODES)),
        match_ports=tuple(draw(st.lists(_port, max_size=3, unique=True))),
        phase=draw(st.sampled_from(PHASES)), priority=draw(st.integers(-(2**31), 2**31 - 1)),
        fail_strategy=draw(st.sampled_from(FAIL_STRATEGIES)),
        url=draw(st.sampled_from([PLUGIN_URL, "oci://r.example.com/p:1",
                                  "https://example.com/p.wasm"])),
        image_pull_policy=draw(st.sampled_from(PULL_POLICIES)),
        service_fqdn=draw(_label) + ".ns.svc.cluster.local", service_port=draw(_port))


@needs_crd
@settings(max_examples=60, deadline=None)
@given(_plugin_options())
def test_property_every_valid_option_set_renders_a_plugin_both_schemas_accept(
        options: WasmPluginOptions) -> None:
    plugin = render_wasmplugin(options)
    assert istio_errors(plugin) == []
    assert own_errors(plugin) == []
    # What kubectl sends: the YAML read as Go's yaml.v2 reads it is the object itself.
    [sent] = read_objects(format_manifests([plugin]), "w.yaml")
    assert (sent.data, sent.coerced) == (plugin, {})
    assert check_texts([(format_manifests([plugin]), "p.yaml")]) == []
