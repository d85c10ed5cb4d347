"""Core Kubernetes kinds checked against Kubernetes' own schemas (kubernetes-validate).

``kubernetes-validate`` ships the OpenAPI-derived JSON schemas of every supported Kubernetes
release (about 100 MB), so checking needs no network. It is an optional extra
(``tokenlimit[k8s]``) rather than a runtime dependency because of that size; without it,
``CoreChecker.create`` returns ``None`` and the caller says that core kinds went unchecked.

Schemas are the strict ones (unknown fields are errors), which is what a server with field
validation does (``kubectl apply`` defaults to it) and what catches typos such as
``containerport``. Every error of an object is reported, not only the first.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

import jsonschema

from tokenlimit.errors import ConfigError
from tokenlimit.k8s.objects import schema_findings
from tokenlimit.rules import Finding, Severity


@dataclass(frozen=True, slots=True)
class CoreChecker:
    """Validates core objects for one Kubernetes version (``major.minor``)."""

    version: str
    module: Any

    @classmethod
    def create(cls, version: str | None = None) -> CoreChecker | None:
        """A checker for ``version`` (default: the newest shipped), or ``None`` when the
        optional package is missing."""
        try:
            import kubernetes_validate
            from kubernetes_validate import utils
        except ImportError:
            return None
        latest = str(kubernetes_validate.latest_version())
        wanted = (version or latest).lstrip("v")
        if not re.fullmatch(r"\d+\.\d+(\.\d+)?", wanted):
            raise ConfigError(f"--kubernetes-version {version!r}: expected MAJOR.MINOR, "
                              f"e.g. {latest}")
        known = [v for v in utils.all_versions()
                 if utils.major_minor(v) <= utils.major_minor(wanted)]
        if not known or utils.major_minor(wanted) > utils.major_minor(latest):
            raise ConfigError(f"--kubernetes-version {version}: schemas are shipped for "
                              f"{utils.all_versions()[0]} to {latest}")
        return cls(str(known[-1]), utils)

    def check(self, obj: Any) -> Iterator[Finding]:
        """Findings of one ``ManifestObject``: schema errors, or an info if not a core kind."""
        utils = self.module
        folder = f"kubernetes-json-schema/v{self.version}-local-strict"
        name = f"{folder}/{schema_file_name(str(obj.data['apiVersion']), str(obj.data['kind']))}"
        try:
            validator = _validator(utils, folder, name, self.version)
        except FileNotFoundError:
            yield Finding("TL406", Severity.INFO,
                          f"{obj.label}: {obj.data['apiVersion']} {obj.data['kind']} is not a "
                          f"kind Kubernetes {utils.major_minor(self.version)} knows; "
                          "not checked", "Custom resources other than WasmPlugin are skipped.",
                          None, None, obj.where(()))
            return
        errors = sorted(validator.iter_errors(obj.data), key=lambda e: list(map(str, e.path)))
        for error in errors:
            yield from schema_findings(obj, error, "TL404")


def schema_file_name(api_version: str, kind: str) -> str:
    """The file kubernetes-validate keeps a kind's schema in: the API group is shortened to
    its first DNS label.

    >>> schema_file_name("apps/v1", "Deployment"), schema_file_name("v1", "Service")
    ('deployment-apps-v1.json', 'service-v1.json')
    >>> schema_file_name("networking.k8s.io/v1", "Ingress")
    'ingress-networking-v1.json'
    """
    group, _, version = api_version.rpartition("/")
    parts = [kind.lower(), group.split(".")[0], version] if group else [kind.lower(), version]
    return "-".join(parts) + ".json"


@cache
def _validator(utils: Any, folder: str, name: str, version: str) -> jsonschema.Validator:
    # Kubernetes' definitions file is several MB: read and index it once per kind and version.
    schema = utils.schema_contents(name, version)
    definitions = _definitions(utils, folder, version)
    registry = utils.Resource.from_contents(definitions) @ (
        utils.Resource.from_contents(schema) @ utils.Registry())
    return jsonschema.Draft202012Validator(schema, registry=registry)


@cache
def _definitions(utils: Any, folder: str, version: str) -> Any:
    return utils.schema_contents(f"{folder}/_definitions.json", version)
