"""Counters and a latency histogram, rendered in the Prometheus text format (0.0.4).

Plain integers bumped from the event loop's one thread: no locks, no client library.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Sequence

from tokenlimit.rules.model import Rule

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class Metrics:
    """What the service counts: checks by outcome, limits by rule, tokens, errors, latency."""

    def __init__(self) -> None:
        self.checks: Counter[str] = Counter()
        self.limited_by_rule: Counter[int] = Counter()
        self.shadow_limited = 0
        self.reports = 0
        self.reported_tokens = 0
        self.backend_errors = 0
        self.bad_requests = 0
        self.latency_counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0

    def checked(self, outcome: str, rule: int | None, seconds: float) -> None:
        self.checks[outcome] += 1
        if outcome == "deny" and rule is not None:
            self.limited_by_rule[rule] += 1
        self.latency_counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.latency_sum += seconds

    def reported(self, tokens: int) -> None:
        self.reports += 1
        self.reported_tokens += tokens

    def render(self, rules: Sequence[Rule], memory_keys: int | None = None) -> str:
        """The Prometheus exposition text; ``memory_keys``: live keys of the memory store."""
        out: list[str] = []

        def metric(name: str, kind: str, text: str) -> None:
            out.append(f"# HELP tokenlimit_{name} {text}")
            out.append(f"# TYPE tokenlimit_{name} {kind}")

        metric("checks_total", "counter", "Checks answered, by decision (before --shadow).")
        for outcome in ("allow", "deny", "error"):
            out.append(f'tokenlimit_checks_total{{outcome="{outcome}"}} {self.checks[outcome]}')
        metric("limited_total", "counter", "Checks limited, by rule index and regex.")
        for index, rule in enumerate(rules):
            regex = _label(rule.regex)
            out.append(f'tokenlimit_limited_total{{rule="{index}",regex={regex}}} '
                       f"{self.limited_by_rule[index]}")
        metric("shadow_limited_total", "counter", "Checks that --shadow let through.")
        out.append(f"tokenlimit_shadow_limited_total {self.shadow_limited}")
        metric("reports_total", "counter", "Usage reports applied.")
        out.append(f"tokenlimit_reports_total {self.reports}")
        metric("reported_tokens_total", "counter", "Tokens charged by usage reports.")
        out.append(f"tokenlimit_reported_tokens_total {self.reported_tokens}")
        metric("backend_errors_total", "counter", "Store calls that failed or timed out.")
        out.append(f"tokenlimit_backend_errors_total {self.backend_errors}")
        metric("bad_requests_total", "counter", "Requests refused as malformed or too large.")
        out.append(f"tokenlimit_bad_requests_total {self.bad_requests}")
        metric("check_seconds", "histogram", "Time to decide a check, in seconds.")
        total = 0
        for bound, count in zip(LATENCY_BUCKETS, self.latency_counts, strict=False):
            total += count
            out.append(f'tokenlimit_check_seconds_bucket{{le="{bound}"}} {total}')
        total += self.latency_counts[-1]
        out.append(f'tokenlimit_check_seconds_bucket{{le="+Inf"}} {total}')
        out.append(f"tokenlimit_check_seconds_sum {self.latency_sum:.6f}")
        out.append(f"tokenlimit_check_seconds_count {total}")
        if memory_keys is not None:
            metric("memory_keys", "gauge", "Keys held by the memory store (expired ones are "
                   "freed within about 0.1 s).")
            out.append(f"tokenlimit_memory_keys {memory_keys}")
        return "\n".join(out) + "\n"


def _label(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'
