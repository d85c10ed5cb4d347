"""Benchmark of `tokenlimit tune`: the cost of one candidate (prints figures; never a test).

    .venv/bin/python bench/tune.py [--requests 1000000] [--candidates 12]

A synthetic trace (two tiers, 4,000 keys, one hour) held in memory. Prints, side by side in
one run: one plain replay (`replay_asm`, what `simulate` spends per run), then a `tune` search
of ``--candidates`` replays with two goals (a limited share and a peak per-key spend), as
wall-clock and CPU seconds per candidate, and the ratio of a candidate to a plain replay.

The target (what `tune --help` states): on a million requests, a candidate costs at most
0.25 CPU-seconds, and scoring the goals adds at most half of a plain replay's cost (ratio
<= 1.5).
"""

from __future__ import annotations

import argparse
import time

from tokenlimit.rules.model import Rule
from tokenlimit.sim.engine import replay_asm
from tokenlimit.sim.generate import Tier, TraceSpec, generate_trace
from tokenlimit.sim.tune_goals import parse_goal
from tokenlimit.sim.tuning import dimensions_for, tune

RULES = (Rule(0, "regular-user.*", 200, 50, 30, 300), Rule(1, "subscriber.*", 1000, 100, 60, 600))
CPU_TARGET = 0.25
RATIO_TARGET = 1.5


def _timed(work: object) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    work()  # type: ignore[operator]
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--candidates", type=int, default=12)
    args = parser.parse_args()
    rate = args.requests / 3600 / 2
    spec = TraceSpec(duration=3600, seed=5, tiers=(
        Tier("regular-user", users=3000, rate=rate), Tier("subscriber", users=1000, rate=rate)))
    trace = generate_trace(spec)
    print(f"trace: {len(trace):,} requests, {len(trace.key_names):,} keys")
    replay_asm(RULES, trace)  # compile (numba caches) before timing
    replay_wall, replay_cpu = min(_timed(lambda: replay_asm(RULES, trace)) for _ in range(3))
    print(f"one plain replay: {replay_wall:.3f} s wall, {replay_cpu:.3f} CPU-s")
    goals = [parse_goal("subscriber.*: limited <= 5%", None),
             parse_goal("subscriber.*: key_tokens_per_hour <= 20000", None)]
    dims = dimensions_for(RULES, [1], ["tokens_per_fill", "max_tokens"], {})
    wall, cpu = _timed(lambda: tune(trace, RULES, dims, goals, budget=args.candidates))
    # tune also replays the current rules once, outside the budget
    per_wall, per_cpu = wall / (args.candidates + 1), cpu / (args.candidates + 1)
    ratio = per_cpu / replay_cpu if replay_cpu else float("inf")
    print(f"tune, {args.candidates} candidates: {per_wall:.3f} s wall, {per_cpu:.3f} CPU-s "
          f"per candidate; {ratio:.2f} times a plain replay (CPU)")
    met = per_cpu <= CPU_TARGET and ratio <= RATIO_TARGET
    print(f"target (<= {CPU_TARGET} CPU-s a candidate, <= {RATIO_TARGET} times a replay): "
          f"{'met' if met else 'not met'}")


if __name__ == "__main__":
    main()
