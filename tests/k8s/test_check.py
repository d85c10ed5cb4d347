"""Checking a user's manifests: exact findings with file, line, column and field."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.conftest import SAMPLES
from tokenlimit.errors import ConfigError, RuleError
from tokenlimit.k8s import check_manifests, check_texts
from tokenlimit.rules import Severity

BAD = """\
apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata:
  name: llm-token-ratelimit
spec:
  failStrategy: FAIL_OPN
  selector:
    matchLabels: {app: sleep}
  targetRefs: [{kind: Service, name: x}]
  match:
    - mode: CLIENT
      ports: [{number: "80"}]
  phase: stats
  pluginConfig:
    matches: [{host: {exact: a.com}}]
    rateLimitKey: ["{{request.headers.user-type}}"]
    rateLimitService: {service: nope.default.svc.cluster.local, port: 80}
  priority: 10
  url: ftp://x
---
apiVersion: v1
kind: Service
metadata: {name: svc}
spec:
  ports: [{port: 80, targetport: 8080}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: d}
spec:
  replicas: "1"
  selector: {matchLabels: {a: b}}
  template:
    metadata: {labels: {a: b}}
    spec:
      containers:
        - name: c
          image: i
          env:
            - name: RATE_LIMIT_CONFIG
              value: '[{"rate_limit_key_regex":"(?=x)","max_tokens":1,"tokens_per_fill":1,\
"fill_interval_second":30,"redis_expired_seconds":300}]'
---
apiVersion: foo.example.com/v1
kind: Thing
metadata: {name: t}
"""

W = "WasmPlugin/llm-token-ratelimit"


def test_every_problem_is_found_with_file_line_column_and_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD, encoding="utf-8")
    findings = check_manifests([str(path)])
    lines = [f.one_line().replace(str(path), "bad.yaml") for f in findings]
    assert lines == [
        f"bad.yaml:6:17: error TL402 {W}: spec.failStrategy: 'FAIL_OPN' is not one of "
        "['FAIL_CLOSE', 'FAIL_OPEN', 'FAIL_RELOAD']",
        f"bad.yaml:9:3: error TL402 {W}: spec: only one of selector, targetRef and targetRefs "
        "can be set (found selector, targetRefs)",
        f"bad.yaml:12:24: error TL402 {W}: spec.match[0].ports[0].number: '80' is not of type "
        "'integer'",
        f"bad.yaml:13:10: error TL402 {W}: spec.phase: 'stats' is not one of "
        "['UNSPECIFIED_PHASE', 'AUTHN', 'AUTHZ', 'STATS']",
        f"bad.yaml:15:5: error TL402 {W}: spec.pluginConfig.rateLimitKeys: required field is "
        "missing",
        f"bad.yaml:16:5: warning TL403 {W}: spec.pluginConfig.rateLimitKey: unknown field (not "
        "a setting of ASM's rate-limit plug-in; it is ignored at best)",
        f"bad.yaml:17:33: warning TL407 {W}: spec.pluginConfig.rateLimitService.service: "
        "'nope.default.svc.cluster.local' is not a Service defined in the checked files; the "
        "plug-in's checks would fail and fail-open would decide every request",
        f"bad.yaml:19:8: error TL402 {W}: spec.url: the scheme must be one of oci, http, "
        "https, file (or none, meaning an OCI image)",
        "bad.yaml:25:22: error TL404 Service/svc: spec.ports[0].targetport: unknown field",
        "bad.yaml:31:13: error TL404 Deployment/d: spec.replicas: '1' is not of type "
        "'integer', 'null'",
        "bad.yaml:41:48: error TL107 regex '(?=x)' is refused by Go's regexp (error parsing "
        "regexp: invalid or unsupported Perl syntax: `(?=`): the service exits at start-up",
        "bad.yaml:43:1: info TL406 Thing/t: foo.example.com/v1 Thing is not a kind Kubernetes "
        f"{_k8s_minor()} knows; not checked",
    ]
    by_line = {f.location.line: f for f in findings if f.location}
    assert by_line[16].hint == "Did you mean 'rateLimitKeys'?"
    assert by_line[16].field == "spec.pluginConfig.rateLimitKey"
    assert by_line[25].hint == "Did you mean 'targetPort'?"


def _k8s_minor() -> str:
    import kubernetes_validate

    return ".".join(str(kubernetes_validate.latest_version()).split(".")[:2])


def test_the_guides_own_manifests_are_clean() -> None:
    assert check_manifests([str(SAMPLES / "deployment.yaml")]) == []


def test_list_items_are_checked_at_their_own_lines() -> None:
    text = """\
apiVersion: v1
kind: List
items:
  - apiVersion: v1
    kind: ServiceAccount
    metadata: {name: ok}
  - apiVersion: v1
    kind: ServiceAccount
    metadata: {name: bad, labelz: {}}
"""
    findings = check_texts([(text, "list.yaml")])
    assert [f.one_line() for f in findings] == [
        "list.yaml:9:27: error TL404 ServiceAccount/bad: metadata.labelz: unknown field"]


def test_broken_yaml_is_one_located_error() -> None:
    findings = check_texts([("a: [1, 2\nb: c\n", "broken.yaml")])
    assert len(findings) == 1
    assert findings[0].code == "TL400"
    assert findings[0].location is not None
    assert findings[0].location.path == "broken.yaml"
    assert findings[0].location.line == 2


def test_a_document_that_is_not_an_object() -> None:
    findings = check_texts([("- a\n- b\n", "x.yaml")])
    assert [f.one_line() for f in findings] == [
        "x.yaml:1:1: error TL401 not a Kubernetes object: apiVersion and kind must be strings"]


def test_without_kubernetes_validate_core_kinds_are_reported_unchecked(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A None entry in sys.modules makes `import kubernetes_validate` raise ImportError, as on
    # an install without the k8s extra.
    monkeypatch.setitem(sys.modules, "kubernetes_validate", None)
    findings = check_texts([("apiVersion: v1\nkind: Service\nmetadata: {name: s}\n"
                             "spec: {portz: []}\n", "svc.yaml")])
    assert [(f.code, f.severity) for f in findings] == [("TL405", Severity.WARNING)]
    assert findings[0].message == ("core kinds were not checked (Service/s): the "
                                   "kubernetes-validate package is not installed")
    # It points at the manifest that was not checked, not at "<rules>".
    assert findings[0].one_line().startswith("svc.yaml:1:1: warning TL405 ")


def test_service_port_mismatch_is_a_warning() -> None:
    text = (SAMPLES.parent / "tests" / "k8s" / "expected" / "all-defaults.yaml").read_text(
        encoding="utf-8").replace("      port: 80\n  priority", "      port: 8080\n  priority")
    findings = check_texts([(text, "all.yaml")])
    assert [f.one_line() for f in findings] == [
        "all.yaml:92:13: warning TL407 WasmPlugin/llm-token-ratelimit: "
        "spec.pluginConfig.rateLimitService.port: Service "
        "asm-llm-token-rate-limit-example.default.svc.cluster.local exposes no port 8080"]


def test_missing_file_and_bad_version() -> None:
    with pytest.raises(RuleError, match="no such file"):
        check_manifests(["/nonexistent/x.yaml"])
    with pytest.raises(ConfigError, match=r"--kubernetes-version 'latest': expected MAJOR\.MINOR"):
        check_texts([("apiVersion: v1\nkind: List\nitems: []\n", "x")], kube_version="latest")


def test_inline_password_is_a_warning_that_never_shows_the_value() -> None:
    text = (SAMPLES / "deployment.yaml").read_text(encoding="utf-8").replace(
        "          env:\n",
        "          env:\n            - name: REDIS_PASSWORD\n              value: hunter2\n")
    findings = check_texts([(text, "d.yaml")])
    assert [f.one_line() for f in findings] == [
        "d.yaml:26:22: warning TL408 Deployment/asm-llm-token-rate-limit-example: "
        "spec.template.spec.containers[0].env[0].value: REDIS_PASSWORD is set inline (value "
        "not shown): whoever reads this manifest, or the repository it lives in, reads the "
        "password"]


def test_bad_secret_and_env_values_are_never_quoted() -> None:
    text = """\
apiVersion: v1
kind: Secret
metadata: {name: s}
data: {password: 12345}
---
apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  containers:
    - name: c
      image: i
      env: [{name: REDIS_PASSWORD, value: 67890}]
"""
    findings = check_texts([(text, "s.yaml")])
    assert [f.one_line() for f in findings] == [
        "s.yaml:4:18: error TL404 Secret/s: data.password: the value fails the schema's "
        "'type' rule (value not shown)",
        "s.yaml:13:43: error TL404 Pod/p: spec.containers[0].env[0].value: the value fails "
        "the schema's 'type' rule (value not shown)",
        "s.yaml:13:43: warning TL408 Pod/p: spec.containers[0].env[0].value: REDIS_PASSWORD is "
        "set inline (value not shown): whoever reads this manifest, or the repository it lives "
        "in, reads the password",
    ]
    assert all("12345" not in f.to_dict().__repr__() and "67890" not in repr(f.to_dict())
               for f in findings)


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n---\n"])
def test_a_file_without_objects_is_a_warning_not_a_clean_pass(text: str) -> None:
    findings = check_texts([(text, "empty.yaml")])
    assert [(f.code, f.severity, str(f.location)) for f in findings] == [
        ("TL410", Severity.WARNING, "empty.yaml:1:1")]


def test_plain_values_kubectl_reads_as_booleans_or_numbers() -> None:
    # PyYAML reads plain y, n, 1e3, 0o17 as strings, kubectl (Go's yaml.v2) as true, false,
    # 1000, 15: these manifests passed the check and the API server refused them.
    text = """\
apiVersion: v1
kind: Service
metadata:
  name: svc
  labels: {app: y, tier: n}
spec:
  ports: [{port: 80, targetPort: 0o17}]
---
apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  containers:
    - name: c
      image: i
      env: [{name: TOKEN, value: 1e3}]
---
apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: {name: w}
spec:
  selector:
    matchLabels: {version: 1e3, quoted: '1e3'}
  pluginConfig:
    rateLimitKeys: ["{{request.headers.user-type}}"]
    rateLimitService: {service: svc.default.svc.cluster.local, port: 80}
  url: oci://example.com/p:1
"""
    findings = check_texts([(text, "k.yaml")])
    assert [(f.one_line(), f.hint) for f in findings] == [
        ("k.yaml:5:17: error TL404 Service/svc: metadata.labels.app: kubectl reads this plain "
         "value as a boolean (Go's YAML 1.1), not the string it looks like", "Quote it: 'y'."),
        ("k.yaml:5:26: error TL404 Service/svc: metadata.labels.tier: kubectl reads this plain "
         "value as a boolean (Go's YAML 1.1), not the string it looks like", "Quote it: 'n'."),
        ("k.yaml:16:34: error TL404 Pod/p: spec.containers[0].env[0].value: kubectl reads this "
         "plain value as a number (Go's YAML 1.1), not the string it looks like", "Quote it."),
        ("k.yaml:23:28: error TL402 WasmPlugin/w: spec.selector.matchLabels.version: kubectl "
         "reads this plain value as a number (Go's YAML 1.1), not the string it looks like",
         "Quote it: '1e3'."),
    ]
