"""``tokenlimit render``: manifests for kubectl (wasmplugin, service, all) and ``check``.

``tokenlimit render --check FILE...`` is the same as ``tokenlimit render check FILE...``;
``--check`` on a rendering command checks what it rendered before anything is written.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from tokenlimit.cli.help_layout import TidyGroup
from tokenlimit.cli.options import (
    ConfigJsonOption,
    FromEnvOption,
    RulesOption,
    read_rules,
    runnable,
)
from tokenlimit.errors import ConfigError
from tokenlimit.k8s import (
    Manifest,
    ServiceManifestOptions,
    TargetRef,
    WasmPluginOptions,
    format_manifests,
    key_template_findings,
    key_template_locations,
    manifest_filename,
    parse_labels,
    parse_target_ref,
    password_from_env,
    render_all,
    render_service,
    render_wasmplugin,
    write_manifests,
)
from tokenlimit.k8s import settings as defaults
from tokenlimit.rules import Finding, Rule, Severity


class RenderGroup(TidyGroup):
    """Lets ``render --check FILE...`` stand for ``render check FILE...``."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] == "--check":
            args = ["check", *args[1:]]
        return super().parse_args(ctx, args)


render_app = typer.Typer(
    cls=RenderGroup, name="render", no_args_is_help=True, add_completion=False,
    help="Render WasmPlugin and rate-limit service manifests for kubectl, or check manifests.",
)

_P = "WasmPlugin"
_S = "Service"
Name = Annotated[str, typer.Option("--name", help="WasmPlugin name.", rich_help_panel=_P)]
Namespace = Annotated[str, typer.Option("--namespace", help="WasmPlugin namespace.",
                                        rich_help_panel=_P)]
Selector = Annotated[list[str] | None, typer.Option(
    "--selector", metavar="KEY=VALUE", rich_help_panel=_P,
    help="Workload label (repeatable) (default: app=sleep).")]
TargetRefs = Annotated[list[str] | None, typer.Option(
    "--target-ref", metavar="[GROUP/]KIND/NAME", rich_help_panel=_P,
    help="Attach to these targets instead of a selector (repeatable).")]
Hosts = Annotated[list[str] | None, typer.Option(
    "--llm-host", metavar="HOST", rich_help_panel=_P,
    help="LLM host the plug-in limits, exact match (repeatable; default: "
    "dashscope.aliyuncs.com).")]
# --llm-host was --host, which elsewhere is the address a command listens on; render listens on
# nothing, so the old spelling stays as a hidden alias.
LegacyHosts = Annotated[list[str] | None, typer.Option("--host", hidden=True)]
KeyTemplates = Annotated[list[str] | None, typer.Option(
    "--key-template", metavar="TEMPLATE", rich_help_panel=_P,
    help="rateLimitKeys entry (repeatable; default: {{request.headers.user-type}}).")]
MatchMode = Annotated[str, typer.Option("--match-mode", rich_help_panel=_P,
                                        help=f"One of {', '.join(defaults.MATCH_MODES)}.")]
MatchPorts = Annotated[list[int] | None, typer.Option(
    "--match-port", rich_help_panel=_P, help="Traffic port (repeatable; default: 80).")]
Phase = Annotated[str, typer.Option("--phase", rich_help_panel=_P,
                                    help=f"One of {', '.join(defaults.PHASES)}.")]
Priority = Annotated[int, typer.Option("--priority", rich_help_panel=_P)]
FailStrategy = Annotated[str, typer.Option(
    "--fail-strategy", rich_help_panel=_P, help=f"One of {', '.join(defaults.FAIL_STRATEGIES)}.")]
Url = Annotated[str, typer.Option("--url", rich_help_panel=_P, help="The plug-in's Wasm image.")]
PullPolicy = Annotated[str, typer.Option("--image-pull-policy", rich_help_panel=_P,
                                         help="IfNotPresent or Always.")]
ServiceFqdn = Annotated[str | None, typer.Option(
    "--rate-limit-service", metavar="FQDN", rich_help_panel=_P,
    help="The rate-limit service the plug-in calls (default: NAME.NAMESPACE.svc.cluster.local "
    "of --service-name and --service-namespace).")]
ServicePort = Annotated[int, typer.Option("--rate-limit-service-port", rich_help_panel=_P)]

ServiceName = Annotated[str, typer.Option("--service-name", rich_help_panel=_S,
                                          help="Name of the ServiceAccount/Service/Deployment.")]
ServiceNamespace = Annotated[str, typer.Option("--service-namespace", rich_help_panel=_S)]
Image = Annotated[str | None, typer.Option(
    "--image", rich_help_panel=_S,
    help="Run tokenlimit's own serve from this image (with probes) instead of the ASM example.")]
Replicas = Annotated[int, typer.Option("--replicas", rich_help_panel=_S)]
RedisAddress = Annotated[str, typer.Option("--redis-address", metavar="HOST:PORT",
                                           rich_help_panel=_S)]
RedisDb = Annotated[int | None, typer.Option("--redis-db", rich_help_panel=_S,
                                             help="REDIS_DB_INDEX (unset: 0).")]
PasswordSecret = Annotated[str | None, typer.Option(
    "--redis-password-secret", rich_help_panel=_S,
    help="Secret holding the Redis password (default: SERVICE-NAME-redis).")]
PasswordKey = Annotated[str, typer.Option("--redis-password-key", rich_help_panel=_S)]
PasswordEnv = Annotated[str | None, typer.Option(
    "--redis-password-env", metavar="VARIABLE", rich_help_panel=_S,
    help="Also render the Secret, its value read from this environment variable.")]
NoPassword = Annotated[bool, typer.Option("--no-redis-password", rich_help_panel=_S,
                                          help="Redis has no password: no REDIS_PASSWORD.")]
OutputDir = Annotated[str | None, typer.Option(
    "--output-dir", "-o", metavar="DIR",
    help="Write one file per object here (default, or -: stdout).")]
Check = Annotated[bool, typer.Option("--check", help="Check the output against the schemas "
                                     "first; write nothing if it fails.")]


def _hosts(hosts: list[str] | None, legacy: list[str] | None) -> list[str] | None:
    """``--llm-host`` values, then those given with the old spelling ``--host``."""
    given = [*(hosts or []), *(legacy or [])]
    return given or None


def _rules(source: str | None, config_json: str | None, from_env: bool, *,
           required: bool) -> tuple[Rule, ...]:
    if source is None and config_json is None and not from_env:
        if required:
            raise typer.BadParameter("give the rules: --rules SOURCE, --config-json or "
                                     "--from-env", param_hint="--rules")
        return ()
    return runnable(read_rules(source, config_json, from_env)).rules


def _plugin(name: str, namespace: str, selector: list[str] | None,
            target_ref: list[str] | None, host: list[str] | None,
            key_template: list[str] | None, match_mode: str, match_port: list[int] | None,
            phase: str, priority: int, fail_strategy: str, url: str, pull_policy: str,
            fqdn: str, port: int) -> WasmPluginOptions:
    if target_ref and selector:
        raise typer.BadParameter("give --selector or --target-ref, not both",
                                 param_hint="--target-ref")
    with _usage_errors():
        refs = tuple(parse_target_ref(t) for t in target_ref or ())
        return _plugin_options(name, namespace, selector, refs, host, key_template, match_mode,
                               match_port, phase, priority, fail_strategy, url, pull_policy,
                               fqdn, port)


@contextmanager
def _usage_errors() -> Iterator[None]:
    """A bad option value is a usage error (exit 2), like any other click complains about."""
    try:
        yield
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from None


def _plugin_options(name: str, namespace: str, selector: list[str] | None,
                    refs: tuple[TargetRef, ...], host: list[str] | None,
                    key_template: list[str] | None, match_mode: str,
                    match_port: list[int] | None, phase: str, priority: int,
                    fail_strategy: str, url: str, pull_policy: str, fqdn: str,
                    port: int) -> WasmPluginOptions:
    return WasmPluginOptions(
        name=name, namespace=namespace,
        selector=() if refs else (parse_labels("--selector", selector) if selector
                                  else defaults.DEFAULT_SELECTOR),
        target_refs=refs, hosts=tuple(host or defaults.DEFAULT_HOSTS),
        key_templates=tuple(key_template or defaults.DEFAULT_KEY_TEMPLATES),
        match_mode=match_mode, match_ports=tuple(match_port or (defaults.SERVICE_PORT,)),
        phase=phase, priority=priority, fail_strategy=fail_strategy, url=url,
        image_pull_policy=pull_policy, service_fqdn=fqdn, service_port=port)


def _service(name: str, namespace: str, image: str | None, replicas: int, redis_address: str,
             redis_db: int | None, secret: str | None, key: str, password_env: str | None,
             no_password: bool) -> tuple[ServiceManifestOptions, str | None]:
    if no_password and (password_env or secret):
        raise typer.BadParameter("--no-redis-password excludes --redis-password-env and "
                                 "--redis-password-secret", param_hint="--no-redis-password")
    with _usage_errors():
        options = ServiceManifestOptions(
            name=name, namespace=namespace, image=image or "", replicas=replicas,
            redis_address=redis_address, redis_db=redis_db,
            password_secret="" if no_password else (secret or f"{name}-redis"),
            password_key=key)
    # The password is read here and handed to the renderer only; it is never printed.
    password = password_from_env(password_env) if password_env else None
    return options, password


def _emit(objects: list[Manifest], output_dir: str | None, check: bool) -> None:
    text = format_manifests(objects)
    if check:
        from tokenlimit.k8s.check import check_texts  # jsonschema loads only to check

        findings = check_texts([(text, "<rendered>")])
        _print_findings([f for f in findings if f.severity is not Severity.INFO], err=True)
        if any(f.severity is Severity.ERROR for f in findings):
            raise ConfigError("the rendered manifests failed the check; nothing was written")
    if output_dir is None or output_dir == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    for path in write_manifests(objects, output_dir):
        typer.echo(f"wrote {path}", err=True)
    if any(obj.get("kind") == "Secret" for obj in objects):
        typer.echo(f"note: {output_dir} holds a Secret with the Redis password (mode 0600): "
                   "keep it out of version control", err=True)


def _print_findings(findings: list[Finding], *, err: bool = False) -> None:
    for finding in findings:
        typer.echo(finding.one_line(), err=err)
        typer.echo(f"    hint: {finding.hint}", err=err)


def _key_template_warnings(objects: list[Manifest], rules: Sequence[Rule],
                           output_dir: str | None) -> list[Finding]:
    """TL409 for constant rateLimitKeys no rule matches, located in the manifest written:
    the file under ``output_dir``, or the line of the stream on stdout."""
    plugin_at = next(i for i, obj in enumerate(objects) if obj.get("kind") == "WasmPlugin")
    plugin = objects[plugin_at]
    templates = plugin["spec"]["pluginConfig"]["rateLimitKeys"]
    if output_dir is None or output_dir == "-":
        locations = key_template_locations(format_manifests(objects), "<stdout>")
    else:
        path = str(Path(output_dir) / manifest_filename(plugin_at, plugin))
        locations = key_template_locations(format_manifests([plugin]), path)
    return key_template_findings(templates, rules, locations)


@render_app.command("wasmplugin")
def wasmplugin(
    rules: RulesOption = None, config_json: ConfigJsonOption = None,
    from_env: FromEnvOption = False,
    name: Name = defaults.PLUGIN_NAME, namespace: Namespace = defaults.DEFAULT_NAMESPACE,
    selector: Selector = None, target_ref: TargetRefs = None, host: Hosts = None,
    legacy_host: LegacyHosts = None,
    key_template: KeyTemplates = None, match_mode: MatchMode = "CLIENT",
    match_port: MatchPorts = None, phase: Phase = "STATS", priority: Priority = 10,
    fail_strategy: FailStrategy = "FAIL_OPEN", url: Url = defaults.PLUGIN_URL,
    image_pull_policy: PullPolicy = "IfNotPresent", rate_limit_service: ServiceFqdn = None,
    rate_limit_service_port: ServicePort = defaults.SERVICE_PORT,
    output_dir: OutputDir = None, check: Check = False,
) -> None:
    """Render the WasmPlugin of the ASM guide (rules, when given, are validated first).

    Example: tokenlimit render wasmplugin --llm-host dashscope.aliyuncs.com --selector app=sleep
    """
    found = _rules(rules, config_json, from_env, required=False)
    fqdn = rate_limit_service or defaults.DEFAULT_SERVICE_FQDN
    plugin = _plugin(name, namespace, selector, target_ref, _hosts(host, legacy_host),
                     key_template, match_mode,
                     match_port, phase, priority, fail_strategy, url, image_pull_policy, fqdn,
                     rate_limit_service_port)
    objects = [render_wasmplugin(plugin)]
    _print_findings(_key_template_warnings(objects, found, output_dir), err=True)
    _emit(objects, output_dir, check)


@render_app.command("service")
def service(
    rules: RulesOption = None, config_json: ConfigJsonOption = None,
    from_env: FromEnvOption = False,
    service_name: ServiceName = defaults.SERVICE_NAME,
    service_namespace: ServiceNamespace = defaults.DEFAULT_NAMESPACE, image: Image = None,
    replicas: Replicas = 1, redis_address: RedisAddress = defaults.DEFAULT_REDIS_ADDRESS,
    redis_db: RedisDb = None, redis_password_secret: PasswordSecret = None,
    redis_password_key: PasswordKey = defaults.DEFAULT_PASSWORD_KEY,
    redis_password_env: PasswordEnv = None, no_redis_password: NoPassword = False,
    output_dir: OutputDir = None, check: Check = False,
) -> None:
    """Render the rate-limit service's ServiceAccount, Service, Deployment (and Secret).

    Example: tokenlimit render service --rules samples/rules.json --redis-password-env REDIS_PW
    """
    found = _rules(rules, config_json, from_env, required=True)
    options, password = _service(service_name, service_namespace, image, replicas,
                                 redis_address, redis_db, redis_password_secret,
                                 redis_password_key, redis_password_env, no_redis_password)
    _emit(render_service(found, options, password), output_dir, check)


@render_app.command("all")
def render_everything(
    rules: RulesOption = None, config_json: ConfigJsonOption = None,
    from_env: FromEnvOption = False,
    name: Name = defaults.PLUGIN_NAME, namespace: Namespace = defaults.DEFAULT_NAMESPACE,
    selector: Selector = None, target_ref: TargetRefs = None, host: Hosts = None,
    legacy_host: LegacyHosts = None,
    key_template: KeyTemplates = None, match_mode: MatchMode = "CLIENT",
    match_port: MatchPorts = None, phase: Phase = "STATS", priority: Priority = 10,
    fail_strategy: FailStrategy = "FAIL_OPEN", url: Url = defaults.PLUGIN_URL,
    image_pull_policy: PullPolicy = "IfNotPresent", rate_limit_service: ServiceFqdn = None,
    rate_limit_service_port: ServicePort = defaults.SERVICE_PORT,
    service_name: ServiceName = defaults.SERVICE_NAME,
    service_namespace: ServiceNamespace = defaults.DEFAULT_NAMESPACE, image: Image = None,
    replicas: Replicas = 1, redis_address: RedisAddress = defaults.DEFAULT_REDIS_ADDRESS,
    redis_db: RedisDb = None, redis_password_secret: PasswordSecret = None,
    redis_password_key: PasswordKey = defaults.DEFAULT_PASSWORD_KEY,
    redis_password_env: PasswordEnv = None, no_redis_password: NoPassword = False,
    output_dir: OutputDir = None, check: Check = False,
) -> None:
    """Render the service's objects and the WasmPlugin calling it, as one kubectl stream.

    Example: tokenlimit render all --rules samples/rules.json | kubectl apply -f -
    """
    found = _rules(rules, config_json, from_env, required=True)
    options, password = _service(service_name, service_namespace, image, replicas,
                                 redis_address, redis_db, redis_password_secret,
                                 redis_password_key, redis_password_env, no_redis_password)
    plugin = _plugin(name, namespace, selector, target_ref, _hosts(host, legacy_host),
                     key_template, match_mode,
                     match_port, phase, priority, fail_strategy, url, image_pull_policy,
                     rate_limit_service or options.fqdn, rate_limit_service_port)
    objects = render_all(found, plugin, options, password)
    _print_findings(_key_template_warnings(objects, found, output_dir), err=True)
    _emit(objects, output_dir, check)


@render_app.command("check")
def check_files(
    files: Annotated[list[str], typer.Argument(metavar="FILE...",
                                               help="Manifests (YAML); - for stdin.")],
    output_format: Annotated[str, typer.Option("--format", "-f", help="text or json.")] = "text",
    strict: Annotated[bool, typer.Option("--strict", help="Warnings fail too.")] = False,
    kubernetes_version: Annotated[str | None, typer.Option(
        "--kubernetes-version", metavar="MAJOR.MINOR",
        help="Check core kinds against this release (default: newest shipped).")] = None,
) -> None:
    """Check existing manifests: WasmPlugin, core kinds and RATE_LIMIT_CONFIG.

    Example: tokenlimit render check k8s/*.yaml (tokenlimit render --check works too)
    """
    from tokenlimit.k8s.check import check_manifests, check_texts

    if output_format not in ("text", "json"):
        raise typer.BadParameter("choose text or json", param_hint="--format")
    if "-" in files:
        if files != ["-"]:
            raise typer.BadParameter("- (stdin) cannot be mixed with files", param_hint="FILE")
        findings = check_texts([(sys.stdin.read(), "<stdin>")], kube_version=kubernetes_version)
    else:
        findings = check_manifests(files, kube_version=kubernetes_version)
    counts = {s: sum(f.severity is s for f in findings) for s in Severity}
    if output_format == "json":
        typer.echo(json.dumps({
            "files": files,
            "findings": [f.to_dict() for f in findings],
            "summary": {"errors": counts[Severity.ERROR], "warnings": counts[Severity.WARNING],
                        "infos": counts[Severity.INFO]},
        }, indent=2))
    else:
        _print_findings(findings)
        typer.echo(f"{len(files)} file(s) checked: {counts[Severity.ERROR]} error(s), "
                   f"{counts[Severity.WARNING]} warning(s)")
    failing = {Severity.ERROR, Severity.WARNING} if strict else {Severity.ERROR}
    if any(f.severity in failing for f in findings):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(render_app, name="render")
