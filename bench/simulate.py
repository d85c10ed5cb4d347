"""Benchmark of `tokenlimit simulate` (prints figures; never run as a test).

    .venv/bin/python bench/simulate.py [--requests 10000000] [--oracle-slice 200000]

A synthetic trace of two tiers and 10,000 individual keys over one day. Prints:
- the fast engine alone (in-memory trace -> decisions), requests/s;
- the event-by-event oracle on the first ``--oracle-slice`` requests of the same trace,
  requests/s (extrapolated: the oracle's cost per request does not grow with the trace),
  and the ratio engine/oracle, with a check that both decide that slice identically;
- the replay on two partitions (`--jobs 2`) next to the engine alone, and the ratio against
  the 1.6x target;
- the whole CLI (`python -m tokenlimit simulate big.csv --format json`) in a subprocess,
  wall-clock requests/s including start-up, reading and parsing and the report, on the
  trace written as a real export has it (an ``id`` and three extra string columns) in CSV,
  JSON Lines and Parquet, each against its issue-11 target (met / not met): the best of
  ``--cli-rounds`` runs of each (formats in turn, round by round), with the median;
- peak resident memory of this process and of the CLI subprocess;
- a met/not-met verdict for each target (the README's Development section): engine >= 5 M
  requests per CPU-second and >= 25x the oracle per CPU-second (measured side by side in this
  run), the whole CLI from CSV >= 1 M requests per CPU-second, its peak memory < 2 GiB. CPU
  seconds, not wall-clock: on a shared machine the wall clock also counts other work.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tokenlimit.rules.model import Rule
from tokenlimit.sim import replay_oracle
from tokenlimit.sim.engine import OUTCOME_NAMES, replay_asm
from tokenlimit.sim.generate import Tier, TraceSpec, generate_trace
from tokenlimit.sim.trace_table import Trace

RULES = [Rule(0, "regular-user.*", 200, 50, 30, 300), Rule(1, "subscriber.*", 1000, 100, 60, 600)]
RULES_JSON = json.dumps([r.to_config() for r in RULES])
CLI_WRAPPER = """
import runpy, sys
import tokenlimit.cli.batch as batch

def peak():
    # VmHWM belongs to this program's address space (ru_maxrss would carry the parent's
    # resident size across fork and exec).
    with open("/proc/self/status") as status:
        found = [line.split()[1] for line in status if line.startswith("VmHWM")][0]
    print(f"{int(found) / 1024:.0f} MiB", file=sys.stderr)

leave = batch.leave_if_asked

def leave_after_peak(code):  # the command ends the process itself (batch)
    peak()
    leave(code)

batch.leave_if_asked = leave_after_peak
sys.argv = ["tokenlimit", *sys.argv[1:]]
runpy.run_module("tokenlimit", run_name="__main__")
"""


def _slice(trace: Trace, n: int) -> Trace:
    return Trace(trace.path, trace.ts[:n], trace.latency[:n], trace.prompt_tokens[:n],
                 trace.completion_tokens[:n], trace.total_tokens[:n], trace.key_ptr[: n + 1],
                 trace.key_index[:n], trace.key_names, trace.imputed[:n])


@dataclass(frozen=True)
class CliRun:
    """One whole-CLI run: requests per wall-clock second and per CPU-second, peak memory."""

    rate: float
    cpu_rate: float
    peak_mib: float
    engine: str


def _cli(trace_path: Path, rules_path: Path) -> CliRun:
    """Run the whole CLI on ``trace_path`` in a subprocess; return its figures."""
    # The child reports its own peak memory: RUSAGE_CHILDREN would count what it inherited
    # from this (large) process at fork.
    command = [sys.executable, "-c", CLI_WRAPPER, "simulate", str(trace_path), "-r",
               str(rules_path), "--format", "json"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    cli_s = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    report = json.loads(done.stdout)
    total = report["totals"]["requests"]
    peak = done.stderr.strip().splitlines()[-1]
    return CliRun(total / cli_s, total / cpu_s, float(peak.split()[0]), report["engine"])


def _report_cli(label: str, runs: list[CliRun]) -> CliRun:
    """Print one format's runs (best and median) and return the best."""
    best = max(runs, key=lambda r: r.rate)
    median = sorted(r.rate for r in runs)[len(runs) // 2]
    peak = max(r.peak_mib for r in runs)
    target = TARGETS[label]
    verdict = "met" if best.rate / 1e6 >= target else "not met"
    print(f"whole CLI run from {label}: best {best.rate / 1e6:.2f} M requests/s, median "
          f"{median / 1e6:.2f} (of {len(runs)}; best {best.cpu_rate / 1e6:.2f} M requests per "
          f"CPU-second; engine {best.engine}); peak memory {peak:.0f} MiB; target "
          f"{target:g} M/s: {verdict}")
    return CliRun(best.rate, best.cpu_rate, peak, best.engine)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=10_000_000)
    parser.add_argument("--oracle-slice", type=int, default=200_000)
    parser.add_argument("--workdir", default=None, help="keep the exports here between runs")
    parser.add_argument("--cli-rounds", type=int, default=3,
                        help="whole-CLI runs of each format (the best is compared)")
    args = parser.parse_args()
    rate = args.requests / 86400.0
    spec = TraceSpec(duration=86400.0, seed=1, tiers=(
        Tier("regular-user", users=7000, rate=rate * 0.7, arrival="diurnal",
             completion_mean=40.0),
        Tier("subscriber", users=3000, rate=rate * 0.3, arrival="bursty",
             completion_mean=120.0)))
    started = time.perf_counter()
    trace = generate_trace(spec)
    print(f"trace: {len(trace):,} requests, {len(trace.key_names):,} keys "
          f"(generated in {time.perf_counter() - started:.1f} s)")

    replay_asm(RULES, _slice(trace, 1000))  # compile (or load numba's cache) first
    started, cpu = time.perf_counter(), time.process_time()
    fast = replay_asm(RULES, trace)
    engine_s, engine_cpu = time.perf_counter() - started, time.process_time() - cpu
    engine_rate = len(trace) / engine_s
    print(f"engine alone: {engine_s:.2f} s wall, {engine_rate / 1e6:.2f} M requests/s "
          f"({engine_cpu:.2f} s of CPU: {len(trace) / engine_cpu / 1e6:.2f} M requests per "
          f"CPU-second; {float(np.mean(fast.outcome == 1)) * 100:.1f}% limited)")

    from tokenlimit.sim.partition import replay_partitioned

    # --jobs 1 and --jobs 2 in alternating rounds, best of each: on a shared machine other
    # work steals a core now and then, and would decide the ratio.
    one_s, two_s = [engine_s], []
    for _ in range(3):
        started = time.perf_counter()
        parallel = replay_partitioned(RULES, trace, jobs=2)
        two_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        replay_asm(RULES, trace)
        one_s.append(time.perf_counter() - started)
    same_jobs = all(bool(np.array_equal(getattr(parallel, f), getattr(fast, f)))
                    for f in ("outcome", "rule", "key", "balance", "deepest"))
    ratio = min(one_s) / min(two_s)
    print(f"replay on 2 partitions (--jobs 2, threads): {min(two_s):.2f} s wall vs "
          f"{min(one_s):.2f} s for --jobs 1 (best of {len(two_s)} alternating rounds): "
          f"{ratio:.2f}x (target >= 1.6x: {'met' if ratio >= 1.6 else 'not met'}); "
          f"identical decisions: {same_jobs}")

    part = _slice(trace, min(args.oracle_slice, len(trace)))
    requests = part.requests()
    started, cpu = time.perf_counter(), time.process_time()
    slow = replay_oracle(RULES, requests)
    oracle_s, oracle_cpu = time.perf_counter() - started, time.process_time() - cpu
    oracle_rate = len(part) / oracle_s
    same = [d.outcome for d in slow] == [OUTCOME_NAMES[o]
                                        for o in replay_asm(RULES, part).outcome.tolist()]
    print(f"oracle on the first {len(part):,} requests: {oracle_s:.2f} s, "
          f"{oracle_rate / 1e3:.0f} k requests/s (extrapolated to the whole trace: "
          f"{len(trace) / oracle_rate:.0f} s); identical decisions: {same}")
    engine_cpu_rate = len(trace) / engine_cpu
    speedup = engine_cpu_rate / (len(part) / oracle_cpu)
    print(f"engine / oracle: {engine_rate / oracle_rate:.0f}x wall-clock, "
          f"{speedup:.0f}x per CPU-second")
    print(f"peak memory of this process (generator, trace, engine, oracle slice): "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="tokenlimit-bench-"))
    paths = _write_exports(trace, workdir)
    del trace, fast, part, requests, slow
    rules_path = workdir / "rules.json"
    rules_path.write_text(RULES_JSON)
    print(f"targets (id and three extra string columns, whole CLI): "
          f"{', '.join(f'{fmt} >= {t:g} M/s' for fmt, t in TARGETS.items())}")
    # Rounds of the three formats in turn, best of each: on a shared machine other work
    # steals a core now and then (the median is printed too).
    rounds: dict[str, list[CliRun]] = {fmt: [] for fmt in paths}
    for _ in range(args.cli_rounds):
        for fmt, path in paths.items():
            rounds[fmt].append(_cli(path, rules_path))
    runs = {fmt: _report_cli(fmt, found) for fmt, found in rounds.items()}
    csv_run = runs["CSV"]
    checks = [
        (f"engine >= 5 M requests per CPU-second ({engine_cpu_rate / 1e6:.2f} M)",
         engine_cpu_rate >= 5e6),
        (f"engine >= 25x the oracle per CPU-second ({speedup:.0f}x)", speedup >= 25),
        (f"CLI from CSV >= 1 M requests per CPU-second ({csv_run.cpu_rate / 1e6:.2f} M)",
         csv_run.cpu_rate >= 1e6),
        (f"CLI from CSV peak memory < 2 GiB ({csv_run.peak_mib:.0f} MiB)",
         csv_run.peak_mib < 2048),
    ]
    for name, ok in checks:
        print(f"  {'met' if ok else 'NOT met'}: {name}")
    if not args.workdir:
        for path in paths.values():
            path.unlink()
        rules_path.unlink()
        workdir.rmdir()


TARGETS = {"CSV": 3.0, "JSON Lines": 1.0, "Parquet": 6.0}


def _write_exports(trace: Trace, workdir: Path) -> dict[str, Path]:
    """The trace as a real export has it: an ``id`` and three extra string columns, as CSV,
    JSON Lines and Parquet (kept in ``workdir`` between runs)."""
    import polars as pl

    n = len(trace)
    paths = {fmt: workdir / f"trace-{n}.{suffix}"
             for fmt, suffix in (("CSV", "csv"), ("JSON Lines", "jsonl"),
                                 ("Parquet", "parquet"))}
    if all(p.exists() for p in paths.values()):
        return paths
    started = time.perf_counter()
    names = pl.Series(trace.key_names)
    rng = np.random.default_rng(5)
    frame = pl.DataFrame({
        "id": np.arange(n, dtype=np.int64),
        "ts": trace.ts, "key": names.gather(trace.key_index),
        "latency": trace.latency, "prompt_tokens": trace.prompt_tokens,
        "completion_tokens": trace.completion_tokens, "total_tokens": trace.total_tokens,
        "model": np.array(["qwen-max", "qwen-plus", "qwen-turbo"])[rng.integers(0, 3, n)],
        "route": np.array(["/v1/chat/completions", "/v1/completions"])[rng.integers(0, 2, n)],
        "region": np.array(["cn-hangzhou", "cn-beijing", "us-west-1"])[rng.integers(0, 3, n)],
    })
    frame.write_csv(paths["CSV"])
    frame.write_ndjson(paths["JSON Lines"])
    frame.write_parquet(paths["Parquet"])
    sizes = ", ".join(f"{p.stat().st_size / 2**20:.0f} MiB" for p in paths.values())
    print(f"wrote CSV, JSON Lines and Parquet ({sizes}) in "
          f"{time.perf_counter() - started:.1f} s")
    return paths

if __name__ == "__main__":
    main()
