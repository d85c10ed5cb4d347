"""Typer commands: parse arguments, call the core, render the result. Nothing else."""

from __future__ import annotations

import contextlib
import os
import signal
import sys

# Run as the command (not imported by a test or a program): until ``main.run`` takes over,
# Ctrl-C while the modules load ends the process quietly instead of printing a traceback
# from inside some import.
if os.path.basename(sys.argv[0]) in ("tokenlimit", "__main__.py"):
    with contextlib.suppress(ValueError):  # not the main thread
        signal.signal(signal.SIGINT, signal.SIG_DFL)
