"""How long `tokenlimit validate`'s linter takes, and what the regex automata cost.

Run: .venv/bin/python bench/validate.py
Prints milliseconds per lint for the samples and for generated rule sets of growing size,
next to the time to only load (decode) the same rules, in one run.
"""

from __future__ import annotations

import json
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


def main() -> None:
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


if __name__ == "__main__":
    main()
