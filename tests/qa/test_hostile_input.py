"""Regression tests for hostile and sloppy input found in QA: exact messages and exit codes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.conftest import SAMPLES
from tokenlimit.cli.main import app
from tokenlimit.sim.readers import _mapped

runner = CliRunner()
RULES = str(SAMPLES / "rules.json")
TRACE = str(SAMPLES / "trace.jsonl")


def _run(*args: str) -> Any:
    return runner.invoke(app, list(args))


def _error(result: Any) -> str:
    """The one stderr line of a tokenlimit error (exit 1), with no traceback."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return str(lines[0])


def test_an_error_while_a_csv_map_is_viewed_is_not_replaced_by_buffer_error(
        tmp_path: Path) -> None:
    # Ctrl-C while the fast CSV reader held a numpy view of the map raised BufferError
    # (with a traceback) instead of the interrupt.
    path = tmp_path / "t.csv"
    path.write_bytes(b"ts,key\n1,a\n")
    with pytest.raises(KeyboardInterrupt), _mapped(str(path)) as data:
        view = np.frombuffer(data, dtype=np.uint8)
        assert view.size == 11
        raise KeyboardInterrupt
