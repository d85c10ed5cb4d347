"""What a user can set in the rendered manifests, with the ASM guide's values as defaults.

Two frozen values, ``WasmPluginOptions`` and ``ServiceManifestOptions``; their constructors check
every field at once and raise ``ConfigError`` naming the option, so the renderers can trust
them. Parsing of ``KEY=VALUE`` selectors and ``[GROUP/]KIND/NAME`` target references lives
here too, so the command line stays thin.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from tokenlimit.errors import ConfigError

# The ASM guide's WasmPlugin, as samples/wasmplugin.yaml holds it.
PLUGIN_NAME = "llm-token-ratelimit"
PLUGIN_URL = (
    "registry-cn-hangzhou.ack.aliyuncs.com/acs/"
    "asm-wasm-llm-token-ratelimit:v1.23.6.34-g92d6a4b-aliyun"
)
DEFAULT_NAMESPACE = "default"
DEFAULT_SELECTOR: tuple[tuple[str, str], ...] = (("app", "sleep"),)
DEFAULT_HOSTS: tuple[str, ...] = ("dashscope.aliyuncs.com",)
DEFAULT_KEY_TEMPLATES: tuple[str, ...] = ("{{request.headers.user-type}}",)
SERVICE_NAME = "asm-llm-token-rate-limit-example"
SERVICE_PORT = 80
DEFAULT_SERVICE_FQDN = f"{SERVICE_NAME}.{DEFAULT_NAMESPACE}.svc.cluster.local"
CONTAINER_PORT = 8080
# The image of the ASM example service (the one samples/deployment.yaml runs).
ASM_SERVICE_IMAGE = (
    "registry-cn-hangzhou.ack.aliyuncs.com/acs/asm-llm-token-rate-limit-example:v1"
)
DEFAULT_REDIS_ADDRESS = "redis.default.svc.cluster.local:6379"
DEFAULT_PASSWORD_KEY = "password"

# Enumerations of Istio's WasmPlugin CRD that ASM's plug-in can use.
MATCH_MODES = ("CLIENT", "SERVER", "CLIENT_AND_SERVER")
PHASES = ("AUTHN", "AUTHZ", "STATS", "UNSPECIFIED_PHASE")
FAIL_STRATEGIES = ("FAIL_OPEN", "FAIL_CLOSE", "FAIL_RELOAD")
PULL_POLICIES = ("IfNotPresent", "Always")

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
_KIND = re.compile(r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_URL_SCHEMES = ("oci://", "http://", "https://", "file://")


@dataclass(frozen=True, slots=True)
class TargetRef:
    """One entry of ``spec.targetRefs``: ``group`` is empty for core kinds (e.g. Service)."""

    kind: str
    name: str
    group: str = ""

    def to_manifest(self) -> dict[str, str]:
        out = {"group": self.group} if self.group else {}
        return {**out, "kind": self.kind, "name": self.name}


@dataclass(frozen=True, slots=True)
class WasmPluginOptions:
    """Every field of the rendered WasmPlugin; the defaults are the ASM guide's."""

    name: str = PLUGIN_NAME
    namespace: str = DEFAULT_NAMESPACE
    selector: tuple[tuple[str, str], ...] = DEFAULT_SELECTOR
    target_refs: tuple[TargetRef, ...] = ()
    hosts: tuple[str, ...] = DEFAULT_HOSTS
    key_templates: tuple[str, ...] = DEFAULT_KEY_TEMPLATES
    match_mode: str = "CLIENT"
    match_ports: tuple[int, ...] = (SERVICE_PORT,)
    phase: str = "STATS"
    priority: int = 10
    fail_strategy: str = "FAIL_OPEN"
    url: str = PLUGIN_URL
    image_pull_policy: str = "IfNotPresent"
    service_fqdn: str = DEFAULT_SERVICE_FQDN
    service_port: int = SERVICE_PORT

    def __post_init__(self) -> None:
        _check_dns("--name", self.name, subdomain=True)
        _check_dns("--namespace", self.namespace, subdomain=False)
        if self.selector and self.target_refs:
            raise ConfigError("--selector and --target-ref exclude each other (Istio accepts "
                              "only one of selector and targetRefs)")
        for key, value in self.selector:
            _check_label("--selector", key, value)
        if len(self.target_refs) > 16:
            raise ConfigError("--target-ref: at most 16 (Istio's limit)")
        if not self.hosts:
            raise ConfigError("--llm-host: give at least one host, or the plug-in matches nothing")
        for host in self.hosts:
            if not host or any(c.isspace() for c in host):
                raise ConfigError(f"--llm-host {host!r}: not a host name")
        if not self.key_templates:
            raise ConfigError("--key-template: give at least one rate-limit key template")
        for template in self.key_templates:
            if not template.strip():
                raise ConfigError("--key-template: a template must not be empty")
        _check_choice("--match-mode", self.match_mode, MATCH_MODES)
        for port in self.match_ports:
            _check_port("--match-port", port)
        _check_choice("--phase", self.phase, PHASES)
        if not -(2**31) <= self.priority < 2**31:
            raise ConfigError(f"--priority {self.priority}: outside the int32 range")
        _check_choice("--fail-strategy", self.fail_strategy, FAIL_STRATEGIES)
        _check_url(self.url)
        _check_choice("--image-pull-policy", self.image_pull_policy, PULL_POLICIES)
        _check_dns("--rate-limit-service", self.service_fqdn, subdomain=True)
        _check_port("--rate-limit-service-port", self.service_port)


@dataclass(frozen=True, slots=True)
class ServiceManifestOptions:
    """The rate-limit service's ServiceAccount, Service, Deployment and optional Secret.

    ``image`` empty means the ASM example image; otherwise tokenlimit's own ``serve`` runs
    from that image, with probes. The Redis password never travels in here: only the name of
    the Secret and key it is read from (``password_secret`` empty: no REDIS_PASSWORD at all).
    """

    name: str = SERVICE_NAME
    namespace: str = DEFAULT_NAMESPACE
    image: str = ""
    replicas: int = 1
    redis_address: str = DEFAULT_REDIS_ADDRESS
    redis_db: int | None = None
    password_secret: str = f"{SERVICE_NAME}-redis"
    password_key: str = DEFAULT_PASSWORD_KEY

    def __post_init__(self) -> None:
        _check_dns("--service-name", self.name, subdomain=False)
        if len(self.name) > 63:
            raise ConfigError(f"--service-name {self.name!r}: longer than 63 characters")
        _check_dns("--service-namespace", self.namespace, subdomain=False)
        if self.image and any(c.isspace() for c in self.image):
            raise ConfigError(f"--image {self.image!r}: not an image reference")
        if not 0 <= self.replicas <= 1000:
            raise ConfigError(f"--replicas {self.replicas}: expected 0 to 1000")
        host, sep, port = self.redis_address.rpartition(":")
        if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ConfigError(f"--redis-address {self.redis_address!r}: expected HOST:PORT")
        if self.redis_db is not None and self.redis_db < 0:
            raise ConfigError(f"--redis-db {self.redis_db}: must not be negative")
        if self.password_secret:
            _check_dns("--redis-password-secret", self.password_secret, subdomain=True)
            if not re.fullmatch(r"[-._a-zA-Z0-9]+", self.password_key):
                raise ConfigError(f"--redis-password-key {self.password_key!r}: not a valid "
                                  "Secret key")

    @property
    def fqdn(self) -> str:
        """The in-cluster name the plug-in calls: ``NAME.NAMESPACE.svc.cluster.local``."""
        return f"{self.name}.{self.namespace}.svc.cluster.local"


def parse_labels(option: str, pairs: list[str]) -> tuple[tuple[str, str], ...]:
    """``["app=sleep", "tier=web"]`` as ordered pairs; ``ConfigError`` for a bad pair.

    >>> parse_labels("--selector", ["app=sleep"])
    (('app', 'sleep'),)
    """
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"{option} {pair!r}: expected KEY=VALUE")
        if key in out:
            raise ConfigError(f"{option} {pair!r}: key {key!r} given twice")
        out[key] = value
    return tuple(out.items())


def parse_target_ref(text: str) -> TargetRef:
    """``[GROUP/]KIND/NAME``: ``Service/llm`` or ``gateway.networking.k8s.io/Gateway/gw``.

    >>> parse_target_ref("gateway.networking.k8s.io/Gateway/gw")
    TargetRef(kind='Gateway', name='gw', group='gateway.networking.k8s.io')
    """
    parts = text.split("/")
    if len(parts) not in (2, 3) or not all(parts[-2:]):
        raise ConfigError(f"--target-ref {text!r}: expected [GROUP/]KIND/NAME")
    group = parts[0] if len(parts) == 3 else ""
    kind, name = parts[-2], parts[-1]
    if not _KIND.match(kind):
        raise ConfigError(f"--target-ref {text!r}: {kind!r} is not a kind")
    if group and not _DNS_SUBDOMAIN.match(group):
        raise ConfigError(f"--target-ref {text!r}: {group!r} is not an API group")
    _check_dns("--target-ref", name, subdomain=True)
    return TargetRef(kind, name, group)


def password_from_env(variable: str, environ: Mapping[str, str] | None = None) -> str:
    """The Redis password from environment variable ``variable``.

    Errors name the variable, never the value: the value must not reach logs or stderr.
    """
    if not _ENV_NAME.match(variable):
        # Not echoed: a user who got this wrong may have typed the password itself.
        raise ConfigError("--redis-password-env: the value given is not an environment "
                          "variable name (give the variable's name, never the password)")
    env = os.environ if environ is None else environ
    value = env.get(variable)
    if value is None:
        raise ConfigError(f"--redis-password-env: environment variable {variable} is not set")
    if value == "":
        raise ConfigError(f"--redis-password-env: environment variable {variable} is empty")
    return value


def _check_choice(option: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{option} {value!r}: choose one of {', '.join(choices)}")


def _check_port(option: str, port: int) -> None:
    if not 1 <= port <= 65535:
        raise ConfigError(f"{option} {port}: a port is 1 to 65535")


def _check_dns(option: str, value: str, *, subdomain: bool) -> None:
    pattern, limit, what = ((_DNS_SUBDOMAIN, 253, "DNS subdomain") if subdomain
                            else (_DNS_LABEL, 63, "DNS label"))
    if not pattern.match(value) or len(value) > limit:
        raise ConfigError(f"{option} {value!r}: not a valid {what} (lower-case letters, digits "
                          f"and '-'{', dots' if subdomain else ''}; at most {limit} characters)")


def _check_label(option: str, key: str, value: str) -> None:
    prefix, slash, name = key.rpartition("/")
    if (slash and (not prefix or not _DNS_SUBDOMAIN.match(prefix))) or not name \
            or len(name) > 63 or not _LABEL_NAME.match(name):
        raise ConfigError(f"{option} {key}={value}: {key!r} is not a valid label key")
    if len(value) > 63 or not _LABEL_NAME.match(value):
        raise ConfigError(f"{option} {key}={value}: {value!r} is not a valid label value")


def _check_url(url: str) -> None:
    if not url or any(c.isspace() for c in url):
        raise ConfigError(f"--url {url!r}: not a Wasm module URL")
    if "://" in url and not url.startswith(_URL_SCHEMES):
        raise ConfigError(f"--url {url!r}: the scheme must be one of oci, http, https, file "
                          "(or none, which means an OCI image)")
