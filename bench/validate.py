"""How long `tokenlimit validate`'s linter takes, and what the regex automata cost.

Run: .venv/bin/python bench/validate.py [--tenants 1000]
Prints milliseconds per lint for the samples and for generated rule sets of growing size,
next to the time to only load (decode) the same rules, in one run. Then the target of issue 14:
``tokenlimit validate`` on 100, 300 and ``--tenants`` anchored tenant rules (``^tenant-0042-``),
the whole command in a subprocess (start-up, reading, linting, the text report), wall clock and
CPU time, with a met/not-met verdict: 1,000 rules in under 2 s. CPU time is the verdict's
measure: on a shared machine the wall clock also counts other people's work.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tokenlimit.rules import lint, load_rules, parse_rules_text

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def _best_ms(action: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - start)
    return best * 1000


def _rules(count: int) -> str:
    shapes = ["^tenant-{i}-", "-team{i}$", "user-{i}[0-9]+", "^(gold|silver)-{i}", "svc{i}.*"]
    return json.dumps([{
        "rate_limit_key_regex": shapes[i % len(shapes)].format(i=i), "max_tokens": 1000,
        "tokens_per_fill": 100, "fill_interval_second": 60, "redis_expired_seconds": 600,
    } for i in range(count)])


TARGET_SECONDS = 2.0


def tenant_rules(count: int) -> str:
    """``count`` anchored tenant rules, ``^tenant-0000-`` on, as a JSON array."""
    return json.dumps([{
        "rate_limit_key_regex": f"^tenant-{i:04d}-", "max_tokens": 1000, "tokens_per_fill": 100,
        "fill_interval_second": 60, "redis_expired_seconds": 600} for i in range(count)],
        indent=1)


def _validate_seconds(path: Path) -> tuple[float, float, int]:
    """Wall-clock and CPU seconds of ``tokenlimit validate PATH``, and its output's lines."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "tokenlimit", "validate", str(path)],
                          capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode not in (0, 1):
        raise SystemExit(f"validate failed: {done.stderr}")
    return wall, cpu, len(done.stdout.splitlines())


def at_scale(tenants: int) -> bool:
    """The whole command on growing tenant rule sets; True when the target is met."""
    print(f"\n{'tenant rules':<14}{'wall s':>8}{'cpu s':>8}{'lines':>8}")
    cpu = float("inf")
    with tempfile.TemporaryDirectory() as folder:
        for count in sorted({100, 300, tenants}):
            path = Path(folder) / f"tenants-{count}.json"
            path.write_text(tenant_rules(count))
            wall, cpu, lines = _validate_seconds(path)
            print(f"{count:<14}{wall:>8.2f}{cpu:>8.2f}{lines:>8}")
    met = cpu < TARGET_SECONDS
    print(f"{tenants} anchored tenant rules: {cpu:.2f} s CPU "
          f"(target < {TARGET_SECONDS:g} s): {'met' if met else 'NOT met'}")
    return met


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=1000)
    args = parser.parse_args()
    print(f"{'rules':<24}{'load ms':>10}{'lint ms':>10}{'lint/load':>11}")
    cases: list[tuple[str, Callable[[], object]]] = [
        ("samples/rules.json", lambda: load_rules(SAMPLES / "rules.json")),
        ("samples/mistakes.json", lambda: load_rules(SAMPLES / "mistakes.json")),
    ]
    for count in (5, 10, 20, 40):
        text = _rules(count)
        cases.append((f"generated x{count}", lambda text=text: parse_rules_text(text, "g")))
    for name, load in cases:
        loaded = load()
        load_ms = _best_ms(load, 5)
        lint_ms = _best_ms(lambda loaded=loaded: lint(loaded), 3)  # type: ignore[misc]
        print(f"{name:<24}{load_ms:>10.2f}{lint_ms:>10.1f}{lint_ms / load_ms:>11.0f}")
    at_scale(args.tenants)


if __name__ == "__main__":
    main()
