"""Rules from a file as it was at a git revision: ``REV:PATH`` (``main:deploy/rules.json``).

``git show REV:PATH`` runs in the current directory (PATH is from the repository's root,
``./PATH`` from the current directory), so a CI job can compare a pull request's rules with
its base branch's (``origin/main:rules.json``). A source that names an existing file is that
file, even when it contains a colon.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tokenlimit.errors import RuleError
from tokenlimit.rules.sources import LoadedRules, load_rules, parse_rules_text

GIT_TIMEOUT = 30.0


def is_revision_source(source: str) -> bool:
    """Whether ``source`` means ``REV:PATH`` (a colon, and no file of that name).

    >>> is_revision_source("HEAD~1:rules.json"), is_revision_source("-")
    (True, False)
    """
    rev, sep, path = source.partition(":")
    return bool(sep and rev and path) and not Path(source).exists()


def read_at_revision(source: str) -> str:
    """The text of ``REV:PATH`` from ``git show``; ``RuleError`` with git's reason."""
    rev, _, path = source.partition(":")
    git = shutil.which("git")
    if git is None:
        raise RuleError("git is not installed (needed to read REV:PATH)", path=source)
    try:
        done = subprocess.run([git, "show", f"{rev}:{path}"], capture_output=True,
                              timeout=GIT_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuleError(f"git show failed ({exc})", path=source) from exc
    if done.returncode != 0:
        lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
        reason = lines[0] if lines else f"git show exited with status {done.returncode}"
        if "not a git repository" in reason:
            reason = "not inside a git repository (REV:PATH reads a file at a git revision)"
        raise RuleError(reason.removeprefix("fatal: "), path=source)
    if done.stdout.startswith(f"tree {rev}:{path}\n".encode()):  # git show lists a folder
        raise RuleError("is a directory at that revision, not a rules file", path=source)
    try:
        return done.stdout.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RuleError(f"not UTF-8 text (byte {exc.start})", path=source) from exc


def load_rules_source(source: str) -> LoadedRules:
    """Rules from a file, ``-`` (stdin) or ``REV:PATH``: what ``diff`` accepts for each side."""
    if not is_revision_source(source):
        return load_rules(source)
    text = read_at_revision(source)
    fmt = "json" if source.lower().endswith(".json") else "auto"
    return parse_rules_text(text, source, fmt=fmt)
