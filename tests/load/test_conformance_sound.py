"""Soundness: a service that follows the rules is never reported as off them.

Hypothesis builds runs of a correct service: each check is decided by the exact ASM model at a
hidden instant inside the window the generator sees, each report is applied at a hidden instant
inside its window, in the order of those instants. Whatever the instants, conformance may call
a request ambiguous but never a mismatch.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tokenlimit.bucket.limiter import AsmLimiter
from tokenlimit.load.conformance import check_conformance
from tokenlimit.load.observation import Observation
from tokenlimit.rules.model import Rule

RULES = [Rule(0, "u.*", 120, 50, 1, 3), Rule(1, "v.*", 60, 60, 2, 2)]

request = st.tuples(
    st.sampled_from(["u1", "u1", "v1", "x"]),        # key
    st.floats(min_value=0, max_value=0.3),           # gap since the previous send
    st.floats(min_value=0, max_value=0.02),          # send -> check processed
    st.floats(min_value=0, max_value=0.02),          # check processed -> answer
    st.integers(min_value=0, max_value=90),          # completion tokens
    st.floats(min_value=0, max_value=0.2),           # answer -> report sent
    st.floats(min_value=0, max_value=0.02),          # report sent -> applied
    st.floats(min_value=0, max_value=0.02),          # applied -> report answered
)


@settings(max_examples=300, deadline=None)
@given(st.lists(request, min_size=1, max_size=40), st.floats(min_value=0, max_value=1))
def test_a_correct_service_is_never_a_mismatch(reqs: list[tuple], start: float) -> None:
    sends, t = [], 100.0 + start
    for r in reqs:
        t += r[1]
        sends.append(t)
    # Hidden instants: checks, then the reports of the admitted, all in one time order.
    events: list[tuple[float, int, int]] = [(sends[i] + r[2], 1, i) for i, r in enumerate(reqs)]
    events.sort()
    limiter = AsmLimiter(RULES)
    outcome: dict[int, str] = {}
    pending = list(events)
    reports: dict[int, tuple[float, float, float]] = {}
    while pending:
        pending.sort()
        when, kind, i = pending.pop(0)
        key, _, _, d_answer, tokens, d_report, d_apply, d_done = reqs[i]
        if kind == 0:
            limiter.report([key], tokens, when)
            continue
        result = limiter.check([key], when)
        outcome[i] = {"allow": "allowed", "deny": "limited"}.get(result.outcome, "error")
        if result.outcome == "allow":
            answered = when + d_answer
            report_sent = answered + d_report
            applied = report_sent + d_apply
            reports[i] = (report_sent, applied, applied + d_done)
            pending.append((applied, 0, i))
    observations = []
    for i, r in enumerate(reqs):
        key, _, d_check, d_answer, tokens = r[:5]
        done = sends[i] + d_check + d_answer
        lo = hi = None
        if i in reports:
            lo, _, hi = reports[i]
        observations.append(Observation(i, key, sends[i], done, outcome[i],  # type: ignore[arg-type]
                                        tokens, lo, hi))
    conf = check_conformance(RULES, observations, tolerance=0.0)
    assert (conf.over_admitted, conf.under_admitted, conf.other_mismatches) == (0, 0, 0), \
        conf.examples
