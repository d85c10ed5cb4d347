"""The README's two first commands, in its order, on a copy of the repository.

Command 1 (``pip install .`` into a fresh venv, then ``simulate``) once made numba write its
cache inside ``site-packages/tokenlimit/``; command 2 (the editable dev install of
``scripts/test``) then left those unrecorded files behind, ``site-packages/tokenlimit`` became a
namespace package shadowing the editable install, and every ``tokenlimit`` run failed with
``ImportError``. pytest imports from the repository root, so only running the installed command
from outside the repository (``cd /``) shows it.

Slow (a fresh venv, every dependency from pip's cache) but needs no network once the cache holds
the wheels.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _copy_of_repository(target: Path) -> Path:
    """The tracked files (and new ones not yet committed), as a fresh clone would have them."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, check=True, capture_output=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def _run(command: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, f"{command}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return done


def _site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python3*/site-packages"))


def _unrecorded_files(venv: Path) -> list[str]:
    """Files under site-packages/tokenlimit that pip's RECORD does not list."""
    site = _site_packages(venv)
    record = next(site.glob("tokenlimit-*.dist-info/RECORD"))
    recorded = {line.split(",")[0] for line in record.read_text().splitlines()}
    on_disk = {path.relative_to(site).as_posix()
               for path in (site / "tokenlimit").rglob("*") if path.is_file()}
    # pip compiles .pyc files at install time and records them; the interpreter may write
    # more for modules pip did not compile: those are the interpreter's, not ours.
    return sorted(name for name in on_disk - recorded if not name.endswith(".pyc"))


def test_readme_commands_in_order_then_the_installed_command_from_outside(
        tmp_path: Path) -> None:
    repo = _copy_of_repository(tmp_path / "tokenlimit")
    cache = tmp_path / "cache"
    env = {key: value for key, value in os.environ.items()
           if key not in {"NUMBA_CACHE_DIR", "VIRTUAL_ENV", "PYTHONPATH"}}
    env["XDG_CACHE_HOME"] = str(cache)  # the user's cache directory, inside this test
    env["PIP_CACHE_DIR"] = os.environ.get("PIP_CACHE_DIR", str(Path.home() / ".cache" / "pip"))
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PATH"] = os.pathsep.join(
        part for part in env.get("PATH", "").split(os.pathsep)
        if not part.startswith(str(Path(sys.prefix))))

    # Command 1, exactly as the README writes it.
    first = _run("python3 -m venv .venv && .venv/bin/pip install -q . && "
                 ".venv/bin/tokenlimit simulate samples/trace.jsonl --rules samples/rules.json",
                 repo, env)
    assert "Per rule" in first.stdout
    assert _unrecorded_files(repo / ".venv") == []
    where = _run(".venv/bin/python -c 'from tokenlimit.sim.jit import numba_cache_dir; "
                 "print(numba_cache_dir())'", repo, env).stdout.strip()
    assert Path(where).is_relative_to(cache) or sys.platform != "linux", where
    assert list(Path(where).rglob("*.nbi")), f"numba cached nothing in {where}"

    # Command 2: the editable dev install scripts/test makes (its ruff, mypy and pytest are
    # what the rest of the suite is).
    _run(".venv/bin/python -m pip install -q -e '.[dev]'", repo, env)

    tokenlimit = str(repo / ".venv" / "bin" / "tokenlimit")
    version = subprocess.run([tokenlimit, "--version"], cwd="/", env=env, capture_output=True,
                             text=True, timeout=60)
    assert (version.returncode, version.stdout, version.stderr) == (0, "tokenlimit 0.1.0\n", "")
    rules = str(repo / "samples" / "rules.json")
    validated = subprocess.run([tokenlimit, "validate", rules, "--format", "json"], cwd="/",
                               env=env, capture_output=True, text=True, timeout=60)
    assert validated.returncode == 0, validated.stderr
    assert validated.stderr == ""
    replayed = subprocess.run(
        [tokenlimit, "simulate", str(repo / "samples" / "trace.jsonl"), "--rules", rules,
         "--format", "json"], cwd="/", env=env, capture_output=True, text=True, timeout=300)
    assert replayed.returncode == 0, replayed.stderr
