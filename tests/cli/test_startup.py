"""Start-up stays light: a command imports its heavy machinery only when it runs.

Every ``tokenlimit`` invocation imports ``tokenlimit.cli.main``, which registers every command.
When the command modules imported aiohttp, uvicorn, numpy or jsonschema at the top,
``tokenlimit --version`` took ~0.7 s; these tests keep them out of the start-up path.
"""

from __future__ import annotations

import ast
import gc
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

import tokenlimit
from tests.conftest import REPO

HEAVY = ("aiohttp", "httptools", "jsonschema", "kubernetes_validate", "matplotlib", "numba",
         "numpy", "pydantic", "redis", "uvicorn")
LAZY_PACKAGES = ("tokenlimit.gateway", "tokenlimit.k8s", "tokenlimit.load",
                 "tokenlimit.service")

# Prints, as JSON, the heavy top-level packages loaded once the code given has run (at exit,
# so that a command's own run counts too).
# A batch command ends the process with os._exit (tokenlimit.cli.batch): report there too.
_PROBE = """
import atexit, json, os, sys
heavy = set(json.loads(sys.argv[1]))
def report():
    print("HEAVY=" + json.dumps(sorted({m.split(".")[0] for m in sys.modules} & heavy)),
          file=sys.stderr, flush=True)
atexit.register(report)
os._exit = lambda code, leave=os._exit: (report(), leave(code))
"""


def _heavy_after(code: str, *argv: str) -> tuple[list[str], subprocess.CompletedProcess[str]]:
    """Run ``code`` in a fresh interpreter; the heavy packages it imported, and the process."""
    done = subprocess.run(
        [sys.executable, "-c", _PROBE + code, json.dumps(HEAVY), *argv],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "100", "NO_COLOR": "1"})
    lines = [line for line in done.stderr.splitlines() if line.startswith("HEAVY=")]
    assert len(lines) == 1, done.stderr
    return json.loads(lines[0][len("HEAVY="):]), done


def test_importing_the_cli_loads_no_heavy_package() -> None:
    heavy, done = _heavy_after("import tokenlimit.cli.main")
    assert (heavy, done.returncode) == ([], 0), done.stderr


# The command runs in the probe's interpreter, as the console script runs it.
_RUN = "sys.argv = ['tokenlimit', *sys.argv[2:]]\nfrom tokenlimit.cli.main import run\nrun()\n"


def test_version_loads_no_heavy_package() -> None:
    heavy, done = _heavy_after(_RUN, "--version")
    version = f"tokenlimit {tokenlimit.__version__}\n"
    assert (heavy, done.returncode, done.stdout) == ([], 0, version)


def test_help_loads_no_heavy_package() -> None:
    heavy, done = _heavy_after(_RUN, "--help")
    assert (heavy, done.returncode) == ([], 0), done.stderr
    assert "validate" in done.stdout and "loadtest" in done.stdout


def test_validate_loads_no_heavy_package() -> None:
    heavy, done = _heavy_after(_RUN, "validate", "samples/rules.json")
    assert (heavy, done.returncode) == ([], 0), done.stderr
    assert done.stdout.endswith("0 errors, 0 warnings, 7 infos\n")


def test_option_values_convert_without_pydantic() -> None:
    # Typer converts option values through pydantic, whose import and adapters took about
    # 0.08 s of every command's start; plain values (tokenlimit.cli.plain_values) need none.
    heavy, done = _heavy_after(_RUN, "simulate", "samples/trace.csv", "-r", "samples/rules.json",
                               "--format", "json", "--jobs", "2", "--seed", "7",
                               "--price", "1.5")
    assert done.returncode == 0, done.stderr
    assert "numpy" in heavy and "pydantic" not in heavy


def _loaded_rich(*argv: str) -> tuple[bool, subprocess.CompletedProcess[str]]:
    """Run the CLI with ``argv`` in a fresh interpreter: whether rich was loaded, and how."""
    code = _RUN.replace("run()\n", "import atexit\natexit.register(lambda: print("
                        "'RICH=' + str('rich' in sys.modules), file=sys.stderr))\n"
                        "os._exit = lambda code, leave=os._exit: (print('RICH=' + str('rich' in "
                        "sys.modules), file=sys.stderr, flush=True), leave(code))\nrun()\n")
    _, done = _heavy_after(code, *argv)
    found = [line for line in done.stderr.splitlines() if line.startswith("RICH=")]
    return found[0] == "RICH=True", done


@pytest.mark.parametrize(("argv", "rich"), [
    # Machine-readable reports (CI's) start without rich (about 30 ms); text ones load it.
    (("validate", "samples/rules.json", "--format", "json"), False),
    (("simulate", "samples/trace.csv", "-r", "samples/rules.json", "--format", "json"), False),
    (("validate", "samples/rules.json"), True),
    (("simulate", "samples/trace.csv", "-r", "samples/rules.json"), True),
])
def test_rich_loads_only_for_a_text_report(argv: tuple[str, ...], rich: bool) -> None:
    loaded, done = _loaded_rich(*argv)
    assert (loaded, done.returncode) == (rich, 0), done.stderr


def test_the_probe_sees_a_heavy_import() -> None:
    # The checks above must be able to fail: modules that import httptools are seen.
    heavy, done = _heavy_after("import tokenlimit.gateway.proxy, tokenlimit.gateway.server")
    assert (heavy, done.returncode) == (["httptools"], 0), done.stderr


def test_a_command_that_needs_numpy_still_loads_it() -> None:
    # Lazy, not lost: generating a trace imports the generator (and numpy) when it runs.
    heavy, done = _heavy_after(_RUN, "trace", "generate", "-o", "-", "--duration", "2",
                               "--tier", "regular-user:1:1", "--seed", "1")
    assert done.returncode == 0, done.stderr
    assert "numpy" in heavy
    assert done.stdout.count("\n") >= 1


def _type_checking_imports(package: str) -> list[tuple[str, str]]:
    """(module, name) of each ``from module import name`` under ``if TYPE_CHECKING:``."""
    path = REPO / Path(*package.split(".")) / "__init__.py"
    pairs = []
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            pairs += [(stmt.module or "", alias.name) for stmt in node.body
                      if isinstance(stmt, ast.ImportFrom) for alias in stmt.names]
    return pairs


@pytest.mark.parametrize("package", LAZY_PACKAGES)
def test_lazy_packages_give_what_mypy_sees(package: str) -> None:
    # What mypy reads (the TYPE_CHECKING imports), __all__ and the lazy lookup agree.
    module = importlib.import_module(package)
    pairs = _type_checking_imports(package)
    assert sorted(name for _, name in pairs) == sorted(module.__all__)
    for source, name in pairs:
        assert getattr(module, name) is getattr(importlib.import_module(source), name), name
        assert name in dir(module), name
    with pytest.raises(AttributeError, match=f"module '{package}' has no attribute 'nope'"):
        module.nope  # noqa: B018


def test_from_imports_of_lazy_names_work_in_a_fresh_interpreter() -> None:
    code = ("from tokenlimit.gateway import LOOPBACK, Gateway, MockLLM\n"
            "from tokenlimit.k8s import check_manifests\n"
            "from tokenlimit.load import LoadPlan, run_loadtest\n"
            "from tokenlimit.service import running_service\n"
            "from tokenlimit.k8s import settings\n"
            "import tokenlimit.gateway.server as server\n"
            "assert server.LOOPBACK == LOOPBACK == '127.0.0.1'\n"
            "assert Gateway.__module__ == 'tokenlimit.gateway.proxy'\n"
            "assert settings.__name__ == 'tokenlimit.k8s.settings'\n")
    heavy, done = _heavy_after(code)
    assert done.returncode == 0, done.stderr
    assert {"httptools", "jsonschema", "numpy"} <= set(heavy)


# Runs ``--version`` through the console-script entry point; prints the collector's state.
_COLLECTOR = """
import gc, sys
sys.argv = ["tokenlimit", "--version"]
import tokenlimit.cli.main as main
before = gc.get_freeze_count()
try:
    main.run()
except SystemExit:
    pass
print(before, gc.isenabled(), gc.get_freeze_count() > 10000)
"""


def test_the_command_sets_its_modules_objects_aside_from_cycle_collection() -> None:
    """Each full collection walked every object the imports had made (about 0.09 s of
    `validate --format json`'s 0.34 s): the command sets them aside (``gc.freeze``) before
    it parses its options, and goes on collecting (`serve` and `up` run for hours)."""
    done = subprocess.run([sys.executable, "-c", _COLLECTOR], capture_output=True, text=True,
                          check=True, cwd=REPO)
    assert done.stdout.splitlines()[-1] == "0 True True"


def test_a_program_that_imports_tokenlimit_keeps_its_cycle_collection() -> None:
    done = subprocess.run([sys.executable, "-c", "import gc, tokenlimit, tokenlimit.cli.main; "
                           "print(gc.isenabled(), gc.get_freeze_count())"],
                          capture_output=True, text=True, check=True, cwd=REPO)
    assert done.stdout.split() == ["True", "0"]


def test_what_loading_the_replay_made_is_set_aside_from_cycle_collection_too() -> None:
    """Loading numba and polars while the collector is paused makes about 150,000 objects
    that live as long as the process; the first collection after walked them all (0.045 s
    at the end of a 10-million-request replay, on one core). The console script sets them
    aside as it did the start-up's; an in-process caller's collector is left as it was."""
    from tokenlimit.cli.simulate import _collector_paused

    gc.unfreeze()
    try:
        with _collector_paused():
            made: list[list[int]] = [[] for _ in range(5000)]
        assert (gc.isenabled(), gc.get_freeze_count(), len(made)) == (True, 0, 5000)
        gc.freeze()  # as cli.main.run does
        before = gc.get_freeze_count()
        with _collector_paused():
            loaded: list[list[int]] = [[] for _ in range(5000)]
        assert gc.isenabled()
        assert gc.get_freeze_count() >= before + len(loaded)
        assert gc.get_count()[0] < 100  # nothing left for the next collection to walk
    finally:
        gc.unfreeze()


# Counts the commands Typer builds while the console script runs the command line given.
_BUILT = """
import sys
import typer.main
built = []
build = typer.main.get_command_from_info
typer.main.get_command_from_info = lambda command_info, **kw: (
    built.append(command_info.name), build(command_info=command_info, **kw))[1]
sys.argv = ["tokenlimit", *sys.argv[1:]]
from tokenlimit.cli.main import run
try:
    run()
except SystemExit:
    pass
print("BUILT=" + ",".join(built), file=sys.stderr)
"""


@pytest.mark.parametrize(("argv", "built"), [
    (("validate", "samples/rules.json", "--format", "json"), "validate"),
    (("render", "check", "--help"), "wasmplugin,service,all,check"),  # the group's commands
    (("--version",), "validate,simulate,diff,tune,serve,inspect,gateway,mock-llm,up,loadtest,"
                     "generate,convert,wasmplugin,service,all,check"),
    (("valdate",), "validate,simulate,diff,tune,serve,inspect,gateway,mock-llm,up,loadtest,"
                   "generate,convert,wasmplugin,service,all,check"),  # "No such command"
])
def test_the_console_script_builds_only_the_command_that_runs(argv: tuple[str, ...],
                                                               built: str) -> None:
    """Typer builds every command from its signature before it parses: 0.035 s of each
    start, spent on commands that do not run."""
    done = subprocess.run([sys.executable, "-c", _BUILT, *argv], capture_output=True,
                          text=True, timeout=120, check=False, cwd=REPO)
    lines = [line for line in done.stderr.splitlines() if line.startswith("BUILT=")]
    assert lines == [f"BUILT={built}"], done.stderr


def _console(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "import sys\n" + _RUN, "", *argv],
                          capture_output=True,
                          text=True, timeout=120, check=False, cwd=REPO,
                          env={"PATH": "/usr/bin:/bin", "COLUMNS": "100", "NO_COLOR": "1",
                               "TERM": "dumb"})


@pytest.mark.parametrize("argv", [
    ("simulate", "--help"), ("render", "--help"), ("trace", "convert", "--help"),
    ("simulate", "--bogus"), ("render", "chek"), ("serve", "--port", "x"),
])
def test_a_command_built_alone_says_what_it_says_among_the_others(argv: tuple[str, ...]
                                                                   ) -> None:
    from typer.testing import CliRunner

    from tokenlimit.cli.main import app

    alone = _console(*argv)
    among = CliRunner().invoke(app, list(argv), env={"COLUMNS": "100", "NO_COLOR": "1",
                                                     "TERM": "dumb"})
    assert (alone.returncode, alone.stdout + alone.stderr) == (among.exit_code, among.output)
