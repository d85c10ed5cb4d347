"""What converting option values costs at each command's start: tokenlimit's plain
conversion (tokenlimit/cli/plain_values.py) against Typer's own, through pydantic.

Run: .venv/bin/python bench/startup.py [--rounds 15]
Each round runs the same commands both ways, alternating, each in a fresh interpreter (the
console script's entry point; Typer's own conversion by turning the plain one off in that
process), and prints the best and median wall-clock and CPU times of each. The commands:
`--version` (no option value converted), `validate samples/rules.json --format json` and
`simulate samples/trace.csv ... --format json`.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

_RUN = """
import sys
if sys.argv[1] == "typer":
    import tokenlimit.cli.plain_values as plain
    plain.convert_plain_values = lambda params: None
sys.argv = ["tokenlimit", *sys.argv[2:]]
from tokenlimit.cli.main import run
run()
"""

COMMANDS = {
    "--version": ["--version"],
    "validate": ["validate", "samples/rules.json", "--format", "json"],
    "simulate": ["simulate", "samples/trace.csv", "-r", "samples/rules.json", "--format",
                 "json", "--jobs", "2"],
}


def _run(way: str, argv: list[str]) -> tuple[float, float]:
    """(wall, CPU) seconds of one command in a fresh interpreter."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", _RUN, way, *argv], cwd=REPO, check=True,
                   stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    rounds = parser.parse_args().rounds
    for argv in COMMANDS.values():  # warm the file cache and numba's
        _run("plain", argv)
    print(f"best / median of {rounds} alternating rounds, seconds")
    for label, argv in COMMANDS.items():
        times: dict[str, list[tuple[float, float]]] = {"plain": [], "typer": []}
        for _ in range(rounds):
            for way in times:
                times[way].append(_run(way, argv))
        figures = {way: (min(w for w, _ in runs), statistics.median(w for w, _ in runs),
                         min(c for _, c in runs), statistics.median(c for _, c in runs))
                   for way, runs in times.items()}
        for way, (best, median, cpu_best, cpu_median) in figures.items():
            print(f"{label:10s} {way:6s} wall {best:.3f} / {median:.3f}   "
                  f"CPU {cpu_best:.3f} / {cpu_median:.3f}")
        saved = figures["typer"][1] - figures["plain"][1]
        print(f"{label:10s} plain values save {saved * 1000:.0f} ms of median wall-clock time")


if __name__ == "__main__":
    main()
