"""Rendering: exact YAML for the guide's defaults and for every field customised, stable bytes,
the Redis password only in the Secret, render -> load gives the same rules."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import SAMPLES
from tokenlimit.errors import ConfigError
from tokenlimit.k8s import (
    ServiceManifestOptions,
    TargetRef,
    WasmPluginOptions,
    format_manifests,
    parse_labels,
    parse_target_ref,
    password_from_env,
    render_all,
    render_service,
    render_wasmplugin,
    rules_config_json,
    write_manifests,
)
from tokenlimit.rules import Rule, load_rules, parse_rules_text

EXPECTED = Path(__file__).parent / "expected"
PASSWORD = "pa ss:wörd"


def sample_rules() -> tuple[Rule, ...]:
    return load_rules(SAMPLES / "rules.json").rules


def custom_plugin() -> WasmPluginOptions:
    return WasmPluginOptions(
        name="team-limits", namespace="llm-clients", selector=(),
        target_refs=(TargetRef("Gateway", "egress", "gateway.networking.k8s.io"),
                     TargetRef("Service", "chat")),
        hosts=("api.openai.com", "dashscope.aliyuncs.com"),
        key_templates=("{{request.headers.x-tenant}}", "global"),
        match_mode="CLIENT_AND_SERVER", match_ports=(443, 8443), phase="AUTHZ", priority=-5,
        fail_strategy="FAIL_CLOSE", url="oci://example.com/wasm/ratelimit:v2",
        image_pull_policy="Always", service_fqdn="llm-quota.platform.svc.cluster.local",
        service_port=80)


def custom_service() -> ServiceManifestOptions:
    return ServiceManifestOptions(
        name="llm-quota", namespace="platform", image="ghcr.io/example/tokenlimit:0.1.0",
        replicas=3, redis_address="redis-master.platform.svc.cluster.local:6380", redis_db=2,
        password_secret="llm-quota-redis-auth", password_key="redis-password")


def test_defaults_are_the_guides_manifests_exactly() -> None:
    text = format_manifests(render_all(sample_rules(), WasmPluginOptions(),
                                       ServiceManifestOptions()))
    assert text == (EXPECTED / "all-defaults.yaml").read_text(encoding="utf-8")


def test_every_field_customised_exactly() -> None:
    objects = render_all(sample_rules(), custom_plugin(), custom_service(), PASSWORD)
    assert format_manifests(objects) == (EXPECTED / "all-custom.yaml").read_text(
        encoding="utf-8")


def test_the_wasmplugin_is_the_guides_example() -> None:
    # The guide's WasmPlugin (docs/asm-semantics.md, samples/wasmplugin.yaml), field for field.
    assert render_wasmplugin(WasmPluginOptions()) == {
        "apiVersion": "extensions.istio.io/v1alpha1",
        "kind": "WasmPlugin",
        "metadata": {"name": "llm-token-ratelimit", "namespace": "default"},
        "spec": {
            "failStrategy": "FAIL_OPEN",
            "imagePullPolicy": "IfNotPresent",
            "selector": {"matchLabels": {"app": "sleep"}},
            "match": [{"mode": "CLIENT", "ports": [{"number": 80}]}],
            "phase": "STATS",
            "pluginConfig": {
                "matches": [{"host": {"exact": "dashscope.aliyuncs.com"}}],
                "rateLimitKeys": ["{{request.headers.user-type}}"],
                "rateLimitService": {
                    "service": "asm-llm-token-rate-limit-example.default.svc.cluster.local",
                    "port": 80},
            },
            "priority": 10,
            "url": "registry-cn-hangzhou.ack.aliyuncs.com/acs/"
                   "asm-wasm-llm-token-ratelimit:v1.23.6.34-g92d6a4b-aliyun",
        },
    }


def test_output_is_stable_byte_for_byte() -> None:
    first = format_manifests(render_all(sample_rules(), custom_plugin(), custom_service(),
                                        PASSWORD))
    second = format_manifests(render_all(load_rules(SAMPLES / "rules.yaml").rules,
                                         custom_plugin(), custom_service(), PASSWORD))
    assert first.encode() == second.encode()


def test_rate_limit_config_is_compact_json_in_to_config_order() -> None:
    assert rules_config_json(sample_rules()) == (
        '[{"rate_limit_key_regex":"regular-user.*","max_tokens":200,"tokens_per_fill":50,'
        '"fill_interval_second":30,"redis_expired_seconds":300},'
        '{"rate_limit_key_regex":"subscriber.*","max_tokens":1000,"tokens_per_fill":100,'
        '"fill_interval_second":60,"redis_expired_seconds":600}]')


def test_password_only_in_the_secret_data_base64() -> None:
    objects = render_all(sample_rules(), WasmPluginOptions(), ServiceManifestOptions(), PASSWORD)
    text = format_manifests(objects)
    encoded = base64.b64encode(PASSWORD.encode()).decode()
    assert PASSWORD not in text
    assert text.count(encoded) == 1
    secret = [o for o in objects if o["kind"] == "Secret"]
    assert secret[0]["data"] == {"password": encoded}
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env[1] == {"name": "REDIS_PASSWORD", "valueFrom": {"secretKeyRef": {
        "name": "asm-llm-token-rate-limit-example-redis", "key": "password"}}}
    assert all("value" not in e for e in env if e["name"] == "REDIS_PASSWORD")


def test_without_a_password_no_secret_and_no_redis_password() -> None:
    objects = render_service(sample_rules(), ServiceManifestOptions(password_secret=""))
    assert [o["kind"] for o in objects] == ["ServiceAccount", "Service", "Deployment"]
    env = objects[2]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert [e["name"] for e in env] == ["REDIS_ADDRESS", "RATE_LIMIT_CONFIG"]


def test_asm_image_has_no_probes_and_no_command() -> None:
    container = render_service(sample_rules(), ServiceManifestOptions())[2]["spec"]["template"][
        "spec"]["containers"][0]
    assert container["image"] == (
        "registry-cn-hangzhou.ack.aliyuncs.com/acs/asm-llm-token-rate-limit-example:v1")
    assert sorted(container) == ["env", "image", "name", "ports", "resources"]


def test_round_trip_render_then_load_finds_the_same_rules(tmp_path: Path) -> None:
    path = tmp_path / "all.yaml"
    path.write_text(format_manifests(render_all(sample_rules(), custom_plugin(),
                                                custom_service(), PASSWORD)), encoding="utf-8")
    loaded = load_rules(path)
    assert [r.to_config() for r in loaded.rules] == [r.to_config() for r in sample_rules()]
    assert loaded.findings == ()


# With the characters YAML takes for line breaks or escapes: a NEL written raw inside single
# quotes was read back as a space.
_regex_text = st.text(alphabet="ab.*+?|()[]^$\\'\"{}:# -é\t\n\r\x85\u2028\u2029\ufeff\xa0",
                      min_size=1, max_size=12)
_ints = st.integers(min_value=1, max_value=2**31 - 1)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(_regex_text, _ints, _ints, _ints, _ints), min_size=1, max_size=4))
def test_property_render_then_load_gives_the_same_rules(
        specs: list[tuple[str, int, int, int, int]]) -> None:
    rules = tuple(Rule(i, *spec) for i, spec in enumerate(specs))
    text = format_manifests(render_service(rules, ServiceManifestOptions()))
    loaded = parse_rules_text(text, "<rendered>")
    assert [r.to_config() for r in loaded.rules] == [r.to_config() for r in rules]


def test_write_manifests_one_file_per_object(tmp_path: Path) -> None:
    objects = render_all(sample_rules(), WasmPluginOptions(), ServiceManifestOptions(), PASSWORD)
    paths = write_manifests(objects, tmp_path / "out")
    assert [p.name for p in paths] == [
        "01-serviceaccount-asm-llm-token-rate-limit-example.yaml",
        "02-secret-asm-llm-token-rate-limit-example-redis.yaml",
        "03-service-asm-llm-token-rate-limit-example.yaml",
        "04-deployment-asm-llm-token-rate-limit-example.yaml",
        "05-wasmplugin-llm-token-ratelimit.yaml",
    ]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [p.name for p in paths]
    assert "".join(p.read_text(encoding="utf-8") for p in paths) == format_manifests(objects)
    assert stat.S_IMODE(paths[1].stat().st_mode) == 0o600
    assert stat.S_IMODE(paths[0].stat().st_mode) == 0o644


def test_write_manifests_to_a_file_path_fails_cleanly(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x", encoding="utf-8")
    with pytest.raises(ConfigError, match="file"):
        write_manifests([{"kind": "ServiceAccount", "metadata": {"name": "a"}}], blocker)
    assert blocker.read_text(encoding="utf-8") == "x"


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"name": "Bad_Name"}, "--name 'Bad_Name': not a valid DNS subdomain"),
    ({"namespace": "a.b"}, "--namespace 'a.b': not a valid DNS label"),
    ({"target_refs": (TargetRef("Service", "x"),)},
     "--selector and --target-ref exclude each other"),
    ({"match_ports": (0,)}, "--match-port 0: a port is 1 to 65535"),
    ({"phase": "stats"}, "--phase 'stats': choose one of AUTHN, AUTHZ, STATS"),
    ({"fail_strategy": "OPEN"}, "--fail-strategy 'OPEN': choose one of FAIL_OPEN"),
    ({"url": "ftp://x/y"}, "--url 'ftp://x/y': the scheme must be one of"),
    ({"priority": 2**31}, "--priority 2147483648: outside the int32 range"),
    ({"hosts": ()}, "--llm-host: give at least one host"),
    ({"hosts": ("a b",)}, "--llm-host 'a b': not a host name"),
    ({"key_templates": ("  ",)}, "--key-template: a template must not be empty"),
    ({"service_fqdn": "Bad..name"}, "--rate-limit-service 'Bad..name'"),
])
def test_bad_plugin_options_name_the_option(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        WasmPluginOptions(**kwargs)  # type: ignore[arg-type]
    assert str(info.value).startswith(message)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"redis_address": "redis"}, "--redis-address 'redis': expected HOST:PORT"),
    ({"redis_address": "redis:99999"}, "--redis-address 'redis:99999': expected HOST:PORT"),
    ({"replicas": -1}, "--replicas -1: expected 0 to 1000"),
    ({"name": "x" * 64}, "--service-name"),
    ({"password_key": "a/b"}, "--redis-password-key 'a/b': not a valid Secret key"),
    ({"redis_db": -2}, "--redis-db -2: must not be negative"),
])
def test_bad_service_options_name_the_option(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        ServiceManifestOptions(**kwargs)  # type: ignore[arg-type]
    assert str(info.value).startswith(message)


def test_parse_labels_and_target_refs() -> None:
    assert parse_labels("--selector", ["app=sleep", "tier="]) == (("app", "sleep"),
                                                                   ("tier", ""))
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_labels("--selector", ["app"])
    assert parse_target_ref("Service/chat") == TargetRef("Service", "chat")
    with pytest.raises(ConfigError, match=r"expected \[GROUP/\]KIND/NAME"):
        parse_target_ref("chat")


def test_password_errors_never_carry_the_value() -> None:
    assert password_from_env("PW", {"PW": PASSWORD}) == PASSWORD
    with pytest.raises(ConfigError) as info:
        password_from_env("PW", {})
    assert str(info.value) == "--redis-password-env: environment variable PW is not set"
    with pytest.raises(ConfigError) as info:
        password_from_env("PW", {"PW": ""})
    assert str(info.value) == "--redis-password-env: environment variable PW is empty"
    with pytest.raises(ConfigError) as info:
        password_from_env("hunter2!", {"hunter2!": "x"})
    assert "not an environment variable name" in str(info.value)
    assert "hunter2" not in str(info.value)


def test_rendered_stream_parses_as_the_objects() -> None:
    objects = render_all(sample_rules(), custom_plugin(), custom_service(), PASSWORD)
    assert list(yaml.safe_load_all(format_manifests(objects))) == objects
    deployment = objects[3]
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    assert json.loads(env[-1]["value"]) == [r.to_config() for r in sample_rules()]


def test_samples_rendered_are_up_to_date(tmp_path: Path) -> None:
    # samples/rendered is `tokenlimit render all --rules samples/rules.json -o samples/rendered`
    objects = render_all(sample_rules(), WasmPluginOptions(), ServiceManifestOptions())
    paths = write_manifests(objects, tmp_path)
    shipped = SAMPLES / "rendered"
    assert sorted(p.name for p in shipped.iterdir()) == [p.name for p in paths]
    for path in paths:
        assert (shipped / path.name).read_bytes() == path.read_bytes()
