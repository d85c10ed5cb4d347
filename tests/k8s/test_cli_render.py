"""``tokenlimit render`` through the real entry point: exact output, exit codes, secrets."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import REPO, SAMPLES
from tests.k8s.test_check import BAD
from tokenlimit.cli.main import app

EXPECTED = Path(__file__).parent / "expected"
RULES = str(SAMPLES / "rules.json")
PASSWORD = "pa ss:wörd"
CUSTOM = [
    "--rules", str(SAMPLES / "rules.yaml"), "--name", "team-limits", "--namespace", "llm-clients",
    "--target-ref", "gateway.networking.k8s.io/Gateway/egress", "--target-ref", "Service/chat",
    "--llm-host", "api.openai.com", "--llm-host", "dashscope.aliyuncs.com",
    "--key-template", "{{request.headers.x-tenant}}", "--key-template", "global",
    "--match-mode", "CLIENT_AND_SERVER", "--match-port", "443", "--match-port", "8443",
    "--phase", "AUTHZ", "--priority", "-5", "--fail-strategy", "FAIL_CLOSE",
    "--url", "oci://example.com/wasm/ratelimit:v2", "--image-pull-policy", "Always",
    "--rate-limit-service-port", "80", "--service-name", "llm-quota",
    "--service-namespace", "platform", "--image", "ghcr.io/example/tokenlimit:0.1.0",
    "--replicas", "3", "--redis-address", "redis-master.platform.svc.cluster.local:6380",
    "--redis-db", "2", "--redis-password-secret", "llm-quota-redis-auth",
    "--redis-password-key", "redis-password", "--redis-password-env", "LLM_REDIS_PW",
]

GLOBAL_LINE = 127  # of the rateLimitKeys entry 'global' in expected/all-custom.yaml
TL409_HINT = ("    hint: Add a rule whose rate_limit_key_regex matches it, or use a template "
              "such as {{request.headers.user-type}}.\n")


def invoke(args: list[str], env: dict[str, str] | None = None,
           stdin: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, args, env=env, input=stdin)
    return result.exit_code, result.stdout, result.stderr


def expected(name: str) -> str:
    return (EXPECTED / name).read_text(encoding="utf-8")


def test_render_all_defaults_to_stdout_exactly() -> None:
    code, out, err = invoke(["render", "all", "--rules", RULES])
    assert (code, out, err) == (0, expected("all-defaults.yaml"), "")


def test_render_all_customised_exactly_and_the_password_stays_in_the_secret() -> None:
    code, out, err = invoke(["render", "all", *CUSTOM, "--check"],
                            env={"LLM_REDIS_PW": PASSWORD})
    # stderr holds exactly one warning, about the constant key "global" (samples' rules are
    # per user type), and nothing of the password.
    assert (code, out, err) == (0, expected("all-custom.yaml"),
                                f"<stdout>:{GLOBAL_LINE}:9: warning TL409 rateLimitKeys entry "
                                "'global' is a constant key that no rule matches: the service "
                                f"never limits it\n{TL409_HINT}")
    assert out.splitlines()[GLOBAL_LINE - 1] == "      - global"
    encoded = base64.b64encode(PASSWORD.encode()).decode()
    assert PASSWORD not in out
    assert out.count(encoded) == 1
    assert out.index(encoded) < out.index("kind: Service\n")


def test_render_wasmplugin_and_service_are_the_parts_of_all() -> None:
    whole = expected("all-defaults.yaml")
    code, plugin, _ = invoke(["render", "wasmplugin"])
    assert code == 0
    code, service, _ = invoke(["render", "service", "--rules", RULES])
    assert code == 0
    assert service + plugin == whole
    assert plugin.startswith("---\napiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\n")


def test_values_kubectl_would_read_as_booleans_or_numbers_are_quoted() -> None:
    # kubectl reads YAML with Go's yaml.v2: plain y, n, 1e3, 0o17, 0X1F, 1.5e3 and 1_0 are
    # booleans and numbers there (PyYAML reads them as strings, so it did not quote them), and
    # the API server refused `app: y` or `version: 1e3` in matchLabels as not a string.
    code, out, err = invoke(["render", "wasmplugin", "--namespace", "y", "--selector", "app=n",
                             "--selector", "version=1e3", "--selector", "octal=0o17",
                             "--selector", "hex=0X1F", "--selector", "exp=1.5e3",
                             "--selector", "digits=1_0", "--selector", "cpu=50m",
                             "--llm-host", "1e5"])
    assert (code, err) == (0, "")
    assert out.splitlines()[4:20] == [
        "  name: llm-token-ratelimit",
        "  namespace: 'y'",
        "spec:",
        "  failStrategy: FAIL_OPEN",
        "  imagePullPolicy: IfNotPresent",
        "  selector:",
        "    matchLabels:",
        "      app: 'n'",
        "      version: '1e3'",
        "      octal: '0o17'",
        "      hex: '0X1F'",
        "      exp: '1.5e3'",
        "      digits: '1_0'",
        "      cpu: 50m",
        "  match:",
        "    - mode: CLIENT",
    ]
    assert "          exact: '1e5'\n" in out


def test_a_regex_with_a_character_yaml_reads_as_a_line_break_survives(tmp_path: Path) -> None:
    # NEL (U+0085) was written raw inside single quotes, where YAML reads it as a line break
    # folded into a space: the Deployment gave the service '^a b$' for the regex '^a\x85b$'.
    rules = ('[{"rate_limit_key_regex":"^a\\u0085b$","max_tokens":1,"tokens_per_fill":1,'
             '"fill_interval_second":1,"redis_expired_seconds":10}]')
    code, out, _ = invoke(["render", "service", "--config-json", rules, "--no-redis-password"])
    assert code == 0
    line = next(x for x in out.splitlines() if "rate_limit_key_regex" in x)
    assert line == ('              value: "[{\\"rate_limit_key_regex\\":\\"^a\\Nb$\\",'
                    '\\"max_tokens\\":1,\\"tokens_per_fill\\":1,\\"fill_interval_second\\":1,'
                    '\\"redis_expired_seconds\\":10}]"')
    path = tmp_path / "service.yaml"
    path.write_text(out, encoding="utf-8")
    code, body, _ = invoke(["validate", str(path), "-f", "json"])
    assert json.loads(body)["rules"][0]["rate_limit_key_regex"] == "^a\x85b$"


def test_render_wasmplugin_with_rules_validates_them() -> None:
    bad = '[{"rate_limit_key_regex":"a","max_tokens":1,"tokens_per_fill":1,' \
          '"fill_interval_second":0,"redis_expired_seconds":5}]'
    code, out, err = invoke(["render", "wasmplugin", "--config-json", bad])
    assert (code, out) == (1, "")
    # One "error", not two ("error: ...: error TL108").
    assert err.startswith("error: <config-json>:1:88: TL108 fill_interval_second is 0")
    assert err.count("\n") == 1


def test_rules_with_warnings_render_and_warn_on_stderr() -> None:
    text = '[{"rate_limit_key_regex":"a","max_tokens":10,"tokens_per_fill":1,' \
           '"fill_interval_second":5,"redis_expired_seconds":50,"max_token":3}]'
    code, out, err = invoke(["render", "service", "--config-json", text])
    assert code == 0
    assert err.startswith("<config-json>:1:")
    assert " warning TL206 " in err
    assert '"rate_limit_key_regex":"a","max_tokens":10' in out


def test_output_dir_writes_one_file_per_object(tmp_path: Path) -> None:
    target = tmp_path / "manifests"
    code, out, err = invoke(["render", "all", "--rules", RULES, "-o", str(target),
                             "--redis-password-env", "PW"], env={"PW": PASSWORD})
    assert (code, out) == (0, "")
    names = sorted(p.name for p in target.iterdir())
    assert names == [
        "01-serviceaccount-asm-llm-token-rate-limit-example.yaml",
        "02-secret-asm-llm-token-rate-limit-example-redis.yaml",
        "03-service-asm-llm-token-rate-limit-example.yaml",
        "04-deployment-asm-llm-token-rate-limit-example.yaml",
        "05-wasmplugin-llm-token-ratelimit.yaml",
    ]
    assert err == "".join(f"wrote {target / n}\n" for n in names) + (
        f"note: {target} holds a Secret with the Redis password (mode 0600): keep it out of "
        "version control\n")
    assert PASSWORD not in err
    assert base64.b64encode(PASSWORD.encode()).decode() not in err


def test_output_dir_with_an_earlier_renders_files_is_refused(tmp_path: Path) -> None:
    # Rendering again without the Secret moved the numbering: the old 04-deployment (old rules)
    # stayed beside the new 03-deployment, and `kubectl apply -f DIR` applied it last.
    target = tmp_path / "manifests"
    code, _, _ = invoke(["render", "all", "--rules", RULES, "-o", str(target),
                         "--redis-password-env", "PW"], env={"PW": PASSWORD})
    assert code == 0
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    code, out, err = invoke(["render", "all", "--rules", RULES, "-o", str(target),
                             "--no-redis-password"])
    assert (code, out) == (1, "")
    assert err == (
        f"error: {target}: 03-service-asm-llm-token-rate-limit-example.yaml (and 2 more) is "
        "from an earlier render and not written by this one; kubectl apply -f "
        f"{target} would apply it too: remove it, or write to an empty directory (nothing "
        "was written)\n")
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    # The same objects again, or other kinds into the same directory, are fine.
    assert invoke(["render", "all", "--rules", RULES, "-o", str(target),
                   "--redis-password-env", "PW"], env={"PW": PASSWORD})[0] == 0
    shared = tmp_path / "shared"
    assert invoke(["render", "wasmplugin", "-o", str(shared)])[0] == 0
    assert invoke(["render", "service", "--rules", RULES, "--no-redis-password", "-o",
                   str(shared)])[0] == 0
    assert len(list(shared.iterdir())) == 4


def test_missing_password_variable_fails_without_output(tmp_path: Path) -> None:
    code, out, err = invoke(["render", "all", "--rules", RULES, "-o", str(tmp_path / "o"),
                             "--redis-password-env", "NOT_SET_HERE"], env={})
    assert (code, out, err) == (
        1, "", "error: --redis-password-env: environment variable NOT_SET_HERE is not set\n")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(("args", "fragment"), [
    (["render", "service"], "give the rules"),
    (["render", "all", "--rules", RULES, "--no-redis-password", "--redis-password-env", "X"],
     "--no-redis-password excludes"),
    (["render", "wasmplugin", "--selector", "app=a", "--target-ref", "Service/x"],
     "give --selector or --target-ref, not both"),
    (["render", "wasmplugin", "--phase", "stats"], "--phase 'stats': choose one of"),
    (["render", "wasmplugin", "--match-port", "0"], "--match-port 0: a port is 1 to 65535"),
    (["render", "check"], "Missing argument"),
])
def test_usage_errors_exit_2(args: list[str], fragment: str) -> None:
    code, out, err = invoke(args)
    assert (code, out) == (2, "")
    assert fragment in " ".join(err.replace("│", " ").split())


def test_check_files_text_and_exit_codes(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD, encoding="utf-8")
    good = tmp_path / "good.yaml"
    good.write_text(expected("all-defaults.yaml"), encoding="utf-8")
    assert invoke(["render", "--check", str(good)]) == (
        0, "1 file(s) checked: 0 error(s), 0 warning(s)\n", "")
    code, out, err = invoke(["render", "--check", str(bad), str(good)])
    assert code == 1
    lines = out.splitlines()
    assert lines[0].startswith(f"{bad}:6:17: error TL402 WasmPlugin/llm-token-ratelimit: "
                               "spec.failStrategy:")
    assert lines[-1] == "2 file(s) checked: 9 error(s), 2 warning(s)"
    assert invoke(["render", "check", str(bad), str(good)]) == (code, out, err)


def test_check_json_format_and_strict(tmp_path: Path) -> None:
    warn = tmp_path / "warn.yaml"
    warn.write_text(expected("all-defaults.yaml").replace(
        "    rateLimitService:", "    timeout: 5\n    rateLimitService:"), encoding="utf-8")
    code, out, _ = invoke(["render", "--check", str(warn), "--format", "json"])
    report = json.loads(out)
    assert code == 0
    assert report["summary"] == {"errors": 0, "warnings": 1, "infos": 0}
    assert report["files"] == [str(warn)]
    assert report["findings"] == [{
        "code": "TL403", "severity": "warning",
        "message": "WasmPlugin/llm-token-ratelimit: spec.pluginConfig.timeout: unknown field "
                   "(not a setting of ASM's rate-limit plug-in; it is ignored at best)",
        "hint": "Known fields here: matches, rateLimitKeys, rateLimitService.",
        "rule_index": None, "field": "spec.pluginConfig.timeout", "path": str(warn),
        "line": 90, "column": 5}]
    assert invoke(["render", "--check", str(warn), "--strict"])[0] == 1


def test_check_reads_stdin() -> None:
    code, out, _ = invoke(["render", "check", "-"], stdin=BAD)
    assert code == 1
    assert out.splitlines()[0].startswith("<stdin>:6:17: error TL402")


def test_check_of_a_missing_file_is_one_line() -> None:
    assert invoke(["render", "check", "/nonexistent/m.yaml"]) == (
        1, "", "error: /nonexistent/m.yaml: no such file\n")


def _run(args: list[str], stdin: str | None = None,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "REDIS_PW"}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "tokenlimit", *args], input=stdin,
                          capture_output=True, text=True, timeout=60, cwd=REPO, env=full_env,
                          check=False)


def test_subprocess_render_then_validate_round_trip() -> None:
    rendered = _run(["render", "all", "--rules", RULES, "--redis-password-env", "REDIS_PW",
                     "--check"], env={"REDIS_PW": PASSWORD})
    assert (rendered.returncode, rendered.stderr) == (0, "")
    assert PASSWORD not in rendered.stdout
    validated = _run(["validate", "-", "--format", "json"], stdin=rendered.stdout)
    assert validated.returncode == 0
    report = json.loads(validated.stdout)
    fields = ("rate_limit_key_regex", "max_tokens", "tokens_per_fill", "fill_interval_second",
              "redis_expired_seconds")
    found = [{name: rule[name] for name in fields} for rule in report["rules"]]
    assert found == json.loads((SAMPLES / "rules.json").read_text(encoding="utf-8"))
    # The same rules give the same findings, wherever they were read from.
    source = json.loads(_run(["validate", RULES, "--format", "json"]).stdout)
    assert [f["code"] for f in report["findings"]] == [f["code"] for f in source["findings"]]
    assert report["summary"] == source["summary"]
    assert (report["summary"]["errors"], report["summary"]["warnings"]) == (0, 0)
    checked = _run(["render", "--check", "-"], stdin=rendered.stdout)
    assert (checked.returncode, checked.stdout) == (
        0, "1 file(s) checked: 0 error(s), 0 warning(s)\n")


def test_rules_from_stdin() -> None:
    rules = (SAMPLES / "rules.json").read_text(encoding="utf-8")
    code, out, err = invoke(["render", "service", "--rules", "-"], stdin=rules)
    assert (code, err) == (0, "")
    assert out == expected("all-defaults.yaml").split("---\napiVersion: extensions")[0]


def test_a_failing_check_writes_nothing(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    # Options are validated before rendering, so the renderer cannot be made to produce a bad
    # object from the command line; hand the emitter one directly.
    from tokenlimit.cli.render import _emit
    from tokenlimit.errors import ConfigError

    bad = [{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
            "spec": {"portz": []}}]
    with pytest.raises(ConfigError, match="failed the check; nothing was written"):
        _emit(bad, str(tmp_path / "out"), check=True)
    assert not (tmp_path / "out").exists()
    with pytest.raises(ConfigError):
        _emit(bad, None, check=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("<rendered>:7:3: error TL404 Service/s: spec.portz: unknown "
                              "field\n") == 2


def test_the_readme_example_is_real_output() -> None:
    import shlex

    section = (REPO / "docs" / "render.md").read_text(encoding="utf-8")
    block = section[section.index("$ tokenlimit render wasmplugin"):]
    block = block[:block.index("```")]
    command, _, shown = block.partition("\n    ")
    continuation, _, shown = shown.partition("\n")
    args = shlex.split(command.removeprefix("$ ").removesuffix("\\") + continuation)
    code, out, err = invoke(args[1:])
    assert (code, err) == (0, "")
    assert out == shown


def test_constant_key_templates_are_located_in_the_file_written(tmp_path: Path) -> None:
    code, _, err = invoke(["render", "all", "--rules", RULES, "--key-template", "global",
                           "-o", str(tmp_path)])
    plugin = tmp_path / "04-wasmplugin-llm-token-ratelimit.yaml"
    assert code == 0
    assert err.startswith(f"{plugin}:23:9: warning TL409 rateLimitKeys entry 'global' ")
    assert plugin.read_text().splitlines()[22] == "      - global"


def test_constant_key_templates_no_rule_matches_warn() -> None:
    code, out, err = invoke(["render", "all", "--rules", RULES, "--key-template", "global",
                             "--key-template", "regular-user-x",
                             "--key-template", "{{request.headers.user-type}}"])
    assert code == 0
    assert err == ("<stdout>:89:9: warning TL409 rateLimitKeys entry 'global' is a constant "
                   f"key that no rule matches: the service never limits it\n{TL409_HINT}")
    assert out.splitlines()[88] == "      - global"
    assert "      - global\n      - regular-user-x\n" in out
    # Without rules there is nothing to compare with, so no warning.
    assert invoke(["render", "wasmplugin", "--key-template", "global"])[2] == ""


def test_the_old_host_spelling_still_renders_the_same() -> None:
    # render's --host became --llm-host (--host is the listen address everywhere else); the
    # old spelling stays, hidden from --help, so existing scripts keep working.
    old = [("--host" if arg == "--llm-host" else arg) for arg in CUSTOM]
    assert old != CUSTOM
    assert invoke(["render", "all", *old])[:2] == invoke(["render", "all", *CUSTOM])[:2]
    mixed = invoke(["render", "wasmplugin", "--llm-host", "a.example", "--host", "b.example"])
    assert ("      - host:\n          exact: a.example\n"
            "      - host:\n          exact: b.example") in mixed[1]
    assert "--host" not in invoke(["render", "wasmplugin", "--help"])[1].replace(
        "--llm-host", "")
