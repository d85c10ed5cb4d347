"""The event-by-event ASM model against hand-worked timelines from docs/asm-semantics.md."""

from __future__ import annotations

from tokenlimit.bucket import AsmLimiter
from tokenlimit.rules.model import Rule
from tokenlimit.sim import TraceRequest, replay_oracle

REGULAR = Rule(0, "regular-user.*", 200, 50, 30, 300)


def test_new_bucket_starts_at_tokens_per_fill_not_max() -> None:
    limiter = AsmLimiter([REGULAR])
    assert limiter.check(["regular-user"], 100.0).remaining == 50


def test_partial_interval_is_lost_at_each_refill() -> None:
    limiter = AsmLimiter([REGULAR])
    limiter.check(["regular-user"], 0.0)          # created at 50, last = 0
    limiter.report(["regular-user"], 50, 0.5)      # balance 0
    assert limiter.check(["regular-user"], 59.9).outcome == "allow"  # one interval: 50, last = 59
    limiter.report(["regular-user"], 50, 60.0)     # 0 again
    # 59 -> 88 is 29 s: no refill, although 88 - 30*2 = 28 s have passed since the first refill.
    assert limiter.check(["regular-user"], 88.9).outcome == "deny"
    assert limiter.check(["regular-user"], 89.0).outcome == "allow"


def test_expiry_forgives_debt_and_alive_includes_the_boundary() -> None:
    rule = Rule(0, "k", 100, 10, 60, 50)  # TTL shorter than the interval: never refills
    limiter = AsmLimiter([rule])
    limiter.check(["k"], 0.0)
    limiter.report(["k"], 500, 1.0)  # deep debt
    assert limiter.check(["k"], 50.0).outcome == "deny"   # alive up to and including 0 + 50
    assert limiter.check(["k"], 50.5).outcome == "allow"  # expired: reset at tokens_per_fill


def test_first_limited_key_ends_the_check_and_later_keys_are_untouched() -> None:
    rules = [Rule(0, "^a$", 10, 1, 60, 600), Rule(1, "^b$", 10, 1, 60, 600)]
    limiter = AsmLimiter(rules)
    limiter.check(["a"], 0.0)
    limiter.report(["a"], 5, 0.0)
    result = limiter.check(["a", "b"], 1.0)
    assert (result.outcome, result.description, result.rule) == (
        "deny", "a is being rate-limited", 0)
    assert limiter.balance("b", 1.0) is None


def test_zero_latency_report_goes_before_later_checks_at_the_same_instant() -> None:
    rule = Rule(0, "u", 100, 10, 60, 600)
    reqs = [TraceRequest(0, 5.0, ("u",), 0.0, completion_tokens=10),
            TraceRequest(1, 5.0, ("u",), 0.0, completion_tokens=10)]
    assert [d.outcome for d in replay_oracle([rule], reqs)] == ["allow", "deny"]


def test_report_on_expired_key_recreates_it_without_ttl_and_the_next_check_resets() -> None:
    rule = Rule(0, "u", 100, 10, 60, 100)
    limiter = AsmLimiter([rule])
    limiter.check(["u"], 0.0)
    limiter.report(["u"], 30, 200.0)  # the bucket expired at 100
    assert limiter.keyspace.values["u"] == -30
    assert "u" not in limiter.keyspace.expires_at
    assert limiter.check(["u"], 201.0).remaining == 10


def test_unmatched_key_report_leaks_a_key() -> None:
    limiter = AsmLimiter([REGULAR])
    assert limiter.check(["guest"], 0.0).outcome == "allow"
    limiter.report(["guest"], 7, 1.0)
    assert limiter.keyspace.values == {"guest": -7}


def test_zero_interval_jumps_to_max_tokens_when_the_second_changes() -> None:
    limiter = AsmLimiter([Rule(0, "u", 500, 10, 0, 600)])
    limiter.check(["u"], 3.2)
    limiter.report(["u"], 40, 3.5)                                   # -30
    assert limiter.check(["u"], 3.9).outcome == "deny"               # same second: no refill
    assert limiter.check(["u"], 4.0).remaining == 500                # +inf intervals: max


def test_deny_carries_rule_remaining_and_retry_after() -> None:
    limiter = AsmLimiter([REGULAR])
    limiter.check(["regular-user"], 100.0)
    limiter.report(["regular-user"], 80, 101.0)
    result = limiter.check(["regular-user"], 110.5)
    assert (result.outcome, result.rule, result.remaining, result.retry_after) == (
        "deny", 0, -30, 20)
