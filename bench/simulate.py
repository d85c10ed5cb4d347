"""Benchmark of `tokenlimit simulate` (prints figures; never run as a test).

    .venv/bin/python bench/simulate.py [--requests 10000000] [--oracle-slice 200000]

A synthetic trace of two tiers and 10,000 individual keys over one day. Prints:
- the fast engine alone (in-memory trace -> decisions), requests/s;
- the event-by-event oracle on the first ``--oracle-slice`` requests of the same trace,
  requests/s (extrapolated: the oracle's cost per request does not grow with the trace),
  and the ratio engine/oracle, with a check that both decide that slice identically;
- the whole CLI (`python -m tokenlimit simulate big.csv --format json`) in a subprocess,
  wall-clock requests/s including start-up, reading and parsing the CSV and the report;
- the same from a JSON Lines version of the first ``--jsonl-requests`` requests (2 million
  by default: writing ten million JSON lines would take the bench a minute), next to the CSV
  figure;
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
from tokenlimit.sim.writers import write_trace

RULES = [Rule(0, "regular-user.*", 200, 50, 30, 300), Rule(1, "subscriber.*", 1000, 100, 60, 600)]
RULES_JSON = json.dumps([r.to_config() for r in RULES])
_CLI_WRAPPER = """
import runpy, sys
sys.argv = ["tokenlimit", *sys.argv[1:]]
try:
    runpy.run_module("tokenlimit", run_name="__main__")
finally:
    # VmHWM belongs to this program's address space (ru_maxrss would carry the parent's
    # resident size across fork and exec).
    with open("/proc/self/status") as status:
        peak = [line.split()[1] for line in status if line.startswith("VmHWM")][0]
    print(f"{int(peak) / 1024:.0f} MiB", file=sys.stderr)
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


def _cli(trace_path: Path, rules_path: Path, label: str) -> CliRun:
    """Run the whole CLI on ``trace_path`` in a subprocess; print and return its figures."""
    # The child reports its own peak memory: RUSAGE_CHILDREN would count what it inherited
    # from this (large) process at fork.
    command = [sys.executable, "-c", _CLI_WRAPPER, "simulate", str(trace_path), "-r",
               str(rules_path), "--format", "json"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    cli_s = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    report = json.loads(done.stdout)
    total = report["totals"]["requests"]
    rate = total / cli_s
    peak = done.stderr.strip().splitlines()[-1]
    print(f"whole CLI run from {label}: {cli_s:.2f} s wall, {rate / 1e6:.2f} M requests/s "
          f"({cpu_s:.2f} s of CPU: {total / cpu_s / 1e6:.2f} M requests per CPU-second; "
          f"engine {report['engine']}); peak memory {peak}")
    return CliRun(float(rate), float(total / cpu_s), float(peak.split()[0]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=10_000_000)
    parser.add_argument("--oracle-slice", type=int, default=200_000)
    parser.add_argument("--jsonl-requests", type=int, default=2_000_000)
    parser.add_argument("--workdir", default=None, help="keep the CSV here between runs")
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
    csv_path = workdir / f"trace-{len(trace)}.csv"
    if not csv_path.exists():
        started = time.perf_counter()
        write_trace(trace, csv_path)
        print(f"wrote {csv_path} ({csv_path.stat().st_size / 2**20:.0f} MiB) in "
              f"{time.perf_counter() - started:.1f} s")
    jsonl_n = min(args.jsonl_requests, len(trace))
    jsonl_path = workdir / f"trace-{len(trace)}-first-{jsonl_n}.jsonl"
    if not jsonl_path.exists():
        started = time.perf_counter()
        write_trace(_slice(trace, jsonl_n), jsonl_path)
        print(f"wrote {jsonl_path} ({jsonl_path.stat().st_size / 2**20:.0f} MiB) in "
              f"{time.perf_counter() - started:.1f} s")
    del trace, fast, part, requests, slow
    rules_path = workdir / "rules.json"
    rules_path.write_text(RULES_JSON)
    csv_run = _cli(csv_path, rules_path, "CSV")
    jsonl_run = _cli(jsonl_path, rules_path, f"JSONL (the first {jsonl_n:,} requests)")
    print(f"JSONL / CSV: {jsonl_run.rate / csv_run.rate:.2f}x the CSV requests/s")
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
        csv_path.unlink()
        jsonl_path.unlink()
        rules_path.unlink()
        workdir.rmdir()


if __name__ == "__main__":
    main()
