"""A batch command starts with one BLAS thread and ends its process without Python's
teardown, losing nothing.

The console-script entry point (``main.run``) ends the process as soon as ``simulate``,
``diff``, ``tune`` or ``trace`` returns. These run it in a fresh interpreter, with an
``atexit`` hook that says whether Python's teardown ran, and check that the report, the
decisions file and the exit status are all there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

# Runs the command as the console script does, with a hook that marks Python's teardown.
_RUN = """
import atexit, sys
atexit.register(lambda: print("TEARDOWN", file=sys.stderr))
sys.argv = ["tokenlimit", *sys.argv[1:]]
from tokenlimit.cli.main import run
run()
"""


def _run(*argv: str, code: str = _RUN) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code, *argv], cwd=REPO, capture_output=True,
                          text=True, timeout=120, check=False)


def test_simulate_skips_teardown_and_loses_no_output(tmp_path: Path) -> None:
    decisions = tmp_path / "decisions.csv"
    done = _run("simulate", "samples/trace.csv", "-r", "samples/rules.json", "--format",
                "json", "--decisions", str(decisions))
    assert (done.returncode, done.stderr) == (0, "")
    report = json.loads(done.stdout)
    assert report["totals"]["requests"] == 1823
    assert len(decisions.read_text().splitlines()) == 1 + 1823


def test_a_failing_simulate_keeps_its_error_and_status() -> None:
    done = _run("simulate", "no-such-trace.csv", "-r", "samples/rules.json")
    assert done.returncode == 1
    assert done.stderr.startswith("error: ") and "no-such-trace.csv" in done.stderr
    assert "TEARDOWN" not in done.stderr


def test_other_commands_tear_down_as_usual() -> None:
    done = _run("validate", "samples/rules.json")
    assert (done.returncode, done.stderr) == (0, "TEARDOWN\n")


def test_an_earlier_in_process_command_does_not_carry_over() -> None:
    # The CLI runner runs simulate in-process (which asks for a quick exit) and must not end
    # the process; the console script's next command then tears down as usual.
    code = _RUN.replace("run()", """
from typer.testing import CliRunner
from tokenlimit.cli.main import app
result = CliRunner().invoke(app, ["simulate", "samples/trace.csv", "-r", "samples/rules.json",
                                  "--format", "json"])
print("IN-PROCESS", result.exit_code, file=sys.stderr)
run()""")
    done = _run("validate", "samples/rules.json", code=code)
    assert (done.returncode, done.stderr) == (0, "IN-PROCESS 0\nTEARDOWN\n")


def test_numpy_loads_after_a_batch_command_asks_for_one_blas_thread() -> None:
    # OpenBLAS reads OPENBLAS_NUM_THREADS once, as numpy loads: begin() must come first.
    probe = _RUN.replace("from tokenlimit.cli.main import run", """
import tokenlimit.cli.batch as batch
begin = batch.begin
def probed_begin():
    print("NUMPY-LOADED", "numpy" in sys.modules, file=sys.stderr)
    begin()
    print("BLAS", os.environ.get("OPENBLAS_NUM_THREADS"), file=sys.stderr)
batch.begin = probed_begin
from tokenlimit.cli.main import run""").replace("import atexit, sys", "import atexit, os, sys")
    argv = ("simulate", "samples/trace.csv", "-r", "samples/rules.json", "--format", "json")
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    done = subprocess.run([sys.executable, "-c", probe, *argv], cwd=REPO, capture_output=True,
                          text=True, timeout=120, check=False, env=env)
    assert (done.returncode, done.stderr) == (0, "NUMPY-LOADED False\nBLAS 1\n")
    mine = subprocess.run([sys.executable, "-c", probe, *argv], cwd=REPO, capture_output=True,
                          text=True, timeout=120, check=False,
                          env={**env, "OPENBLAS_NUM_THREADS": "3"})
    assert (mine.returncode, mine.stderr) == (0, "NUMPY-LOADED False\nBLAS 3\n")


def test_the_replay_loader_is_a_thread_a_usual_exit_waits_for() -> None:
    # On a short trace simulate returns before the thread loading numba is done; as a daemon
    # it was still in numba's loader when an in-process caller's Python tore down (a
    # segfault in test_an_earlier_in_process_command_does_not_carry_over, once).
    from tokenlimit.cli.simulate import _load_engine_meanwhile

    thread = _load_engine_meanwhile()
    assert (thread.name, thread.daemon) == ("load-replay", False)
    thread.join(120)
    assert not thread.is_alive()
