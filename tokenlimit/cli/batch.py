"""How a batch command's process starts and ends (``simulate``, ``diff``, ``tune``, ``trace``).

Start: numpy's OpenBLAS starts a thread per core as numpy loads, and the threads spin a while
waiting for work: about a tenth of a CPU-second a run, taken from the trace reader and the
replay on a two-core machine. tokenlimit never multiplies matrices, so a batch command asks
for one BLAS thread (``OPENBLAS_NUM_THREADS``, unless the user set it) before numpy loads.

End: a ``simulate`` of ten million requests leaves a gigabyte of arrays, polars' and numba's
state and thousands of modules behind; Python takes a fifth of a second to free them one by
one at exit, after the report is printed. A command that has nothing left to clean up
(files closed, threads and clusters stopped by its own ``with`` blocks) asks for a quick
exit; the console-script entry point (``main.run``) then flushes stdout and stderr and ends
the process at once. In-process callers (the CLI runner in tests) never exit.
"""

from __future__ import annotations

import os
import sys

_asked = False


def forget() -> None:
    """Start with no quick exit asked (``main.run``: an earlier in-process command's ask,
    such as one run by the CLI runner, does not carry over)."""
    global _asked
    _asked = False


def begin() -> None:
    """A batch command starts: one BLAS thread, and the process ends as soon as the command
    returns (``main.run``)."""
    global _asked
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    _asked = True


def leave_if_asked(code: object) -> None:
    """With an int exit ``code`` and a command that asked: flush and end the process now
    (an unflushable stdout, such as a closed pipe, is left to Python's normal exit)."""
    if not _asked or not isinstance(code, int | None):
        return
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        return
    os._exit(code or 0)
