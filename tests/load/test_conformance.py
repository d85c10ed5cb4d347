"""Conformance on hand-made observations: exact agreement, over-admission, ambiguity."""

from __future__ import annotations

from tokenlimit.load.conformance import check_conformance
from tokenlimit.load.observation import Observation
from tokenlimit.rules.model import Rule

# 100 tokens at the first check, +100 per second, at most 300; keys live 300 s.
RULES = [Rule(0, "user.*", 300, 100, 1, 300)]


def obs(i: int, sent: float, outcome: str, tokens: int = 0, report: float | None = None,
        key: str = "user-a", width: float = 0.002) -> Observation:
    lo = None if report is None else report
    hi = None if report is None else report + width
    return Observation(i, key, sent, sent + width, outcome, tokens, lo, hi)  # type: ignore[arg-type]


def test_a_run_that_follows_the_rules_agrees_fully() -> None:
    run = [
        obs(0, 10.100, "allowed", 150, report=10.200),  # balance 100 -> allowed, then -50
        obs(1, 10.300, "limited"),                        # -50: limited
        obs(2, 11.100, "allowed", 10, report=11.200),    # refill +100 -> 50: allowed
        obs(3, 11.300, "allowed", 0, report=11.400),     # 40: allowed
        obs(4, 11.500, "allowed"),                        # no rule matches: always allowed
    ]
    run[4].key = "nobody"
    conf = check_conformance(RULES, run)
    assert (conf.compared, conf.agreed, conf.ambiguous, conf.over_admitted) == (5, 5, 0, 0)
    assert conf.agreement == 100.0
    assert conf.findings() == []


def test_admitting_past_the_budget_is_over_admission_with_its_tokens() -> None:
    run = [
        obs(0, 10.100, "allowed", 150, report=10.200),
        obs(1, 10.300, "allowed", 40, report=10.400),  # the rules limit this one
        obs(2, 10.500, "allowed", 5, report=10.600),   # and this one (-90)
    ]
    conf = check_conformance(RULES, run)
    assert (conf.agreed, conf.over_admitted, conf.under_admitted) == (1, 2, 0)
    assert conf.keys["user-a"].tokens_above == 45
    assert conf.findings()[0].startswith("over-admission: 2 requests")
    assert conf.examples[0]["index"] == 1
    assert conf.examples[0]["predicted"] == "deny"


def test_limiting_within_the_budget_is_under_admission() -> None:
    conf = check_conformance(RULES, [obs(0, 10.1, "limited", 20)])
    assert (conf.under_admitted, conf.keys["user-a"].tokens_below) == (1, 20)
    assert conf.findings() == ["under-admission: 1 requests limited that the rules admit"]


def test_a_report_that_may_have_come_before_or_after_the_check_is_ambiguous() -> None:
    # The report's window [10.300, 10.302] overlaps the check's window [10.301, 10.303]:
    # before it the balance is -50 (deny), after it 100 (allow). Neither answer is a mismatch.
    for outcome in ("allowed", "limited"):
        run = [obs(0, 10.100, "allowed", 150, report=10.300), obs(1, 10.301, outcome)]
        conf = check_conformance(RULES, run)
        assert (conf.agreed, conf.ambiguous, conf.over_admitted, conf.under_admitted) == (
            1, 1, 0, 0)


def test_a_check_straddling_a_refill_second_is_ambiguous() -> None:
    # Balance -50 after the report; a check answered across the 11 s boundary may see the
    # refill (+100 -> 50, allow) or not (-50, deny).
    run = [obs(0, 10.100, "allowed", 150, report=10.200),
           obs(1, 10.9995, "allowed", 1, report=11.1)]
    conf = check_conformance(RULES, run)
    assert (conf.agreed, conf.ambiguous) == (1, 1)
    # The same check well inside the second is certain.
    run[1] = obs(1, 11.0100, "allowed", 1, report=11.1)
    assert check_conformance(RULES, run).agreed == 2


def test_errors_are_not_compared_and_expired_keys_restart() -> None:
    run = [obs(0, 10.1, "allowed", 500, report=10.2),   # -400
           obs(1, 10.3, "error"),
           obs(2, 12.1, "limited"),                       # -400 + 200 = -200: limited
           obs(3, 400.0, "allowed", 1, report=400.1)]    # expired at 312: restarts at 100
    conf = check_conformance(RULES, run)
    assert (conf.not_compared, conf.agreed, conf.compared) == (1, 3, 3)
