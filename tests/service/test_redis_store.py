"""The Redis store against a real redis-server: the same decisions as the reference model."""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import RedisServer
from tests.service.redis_helpers import injected_start, redis_call, run, value_at
from tokenlimit.bucket.limiter import AsmLimiter
from tokenlimit.bucket.reserve import ReserveLimiter
from tokenlimit.rules.model import Rule
from tokenlimit.service import EstimatePolicy, ManualClock
from tokenlimit.service.stores.redis import RedisStore

pytestmark = pytest.mark.redis

RULES = (
    Rule(0, "regular-user.*", 200, 50, 30, 300),
    Rule(1, "short", 30, 10, 5, 12),         # expires between refills now and then
    Rule(2, "tiny", 50, 20, 10, 4),          # TTL below the interval: only ever resets
    Rule(3, "zero", 10, 5, 10, 0),           # the script fails: 400 in the example
    Rule(4, "subscriber.*", 1000, 100, 60, 600),
)
KEYS = ["regular-user", "regular-user-2", "short", "tiny", "zero", "subscriber", "nobody"]
EVENTS = st.lists(
    st.tuples(
        st.sampled_from(["check", "check", "report"]),
        st.lists(st.sampled_from(KEYS), min_size=0, max_size=3),
        st.integers(-20, 300),
        # Steps are exact binary fractions on the millisecond grid (Redis keeps expiry in ms),
        # so the model's float times and the scripts' milliseconds say the same thing.
        st.sampled_from([0, 0, 0.25, 0.875, 1, 3.5, 4, 5, 10, 12, 12.125, 29, 30, 61]),
    ),
    min_size=1, max_size=30,
)


def test_layout_ttl_and_time_match_the_example(redis_server: RedisServer) -> None:
    port = redis_server.port

    async def scenario() -> None:
        store = RedisStore(RULES, port=port)  # no clock: the script reads Redis TIME
        try:
            before = int(time.time())
            first = await store.check(["nobody", "regular-user"])
            assert (first.outcome, first.rule, first.remaining) == ("allow", 0, 50)
            await store.report(["regular-user"], 60)
            limited = await store.check(["regular-user"])
            assert (limited.outcome, limited.limited_key, limited.remaining) == (
                "deny", "regular-user", -10)
            assert limited.retry_after in (29, 30)  # 30 - seconds since the refill
            assert await redis_call(port, "GET", "regular-user") == b"-10"
            last = int(await redis_call(port, "GET", "regular-user_last_fill_time"))
            assert before <= last <= int(time.time())
            assert await redis_call(port, "TTL", "regular-user") in (299, 300)
            assert await redis_call(port, "TTL", "regular-user_last_fill_time") in (299, 300)
            assert await redis_call(port, "EXISTS", "nobody") == 0
            await store.report(["nobody"], 5)  # the example's leak: a key with no TTL
            assert await redis_call(port, "TTL", "nobody") == -1
        finally:
            await store.close()

    run(scenario)


def test_noscript_reloads_the_scripts(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        store = RedisStore(RULES, port=redis_server.port)
        try:
            assert (await store.check(["regular-user"])).outcome == "allow"
            await redis_call(redis_server.port, "SCRIPT", "FLUSH")
            assert (await store.check(["regular-user"])).outcome == "allow"
        finally:
            await store.close()

    run(scenario)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(events=EVENTS)
def test_decisions_and_state_equal_the_reference_model(redis_server: RedisServer,
                                                       events: list) -> None:  # type: ignore[type-arg]
    port = redis_server.port

    async def scenario() -> None:
        await redis_call(port, "FLUSHALL")
        clock = ManualClock(injected_start())
        store = RedisStore(RULES, port=port, clock=clock)
        model = AsmLimiter(RULES)
        try:
            for kind, keys, tokens, step in events:
                clock.advance(step)
                if kind == "report":
                    await store.report(keys, tokens)
                    model.report(keys, tokens, clock())
                else:
                    assert await store.check(keys) == model.check(keys, clock())
            for key in KEYS + [k + "_last_fill_time" for k in KEYS]:
                assert await value_at(port, key, clock()) == model.keyspace.get(key, clock()), key
        finally:
            await store.close()

    run(scenario)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(events=EVENTS, average=st.booleans())
def test_reserve_mode_equals_its_model(redis_server: RedisServer, events: list,  # type: ignore[type-arg]
                                       average: bool) -> None:
    port = redis_server.port
    policy = EstimatePolicy(default=40, average=average, per_rule={4: 150})

    async def scenario() -> None:
        await redis_call(port, "FLUSHALL")
        clock = ManualClock(injected_start())
        store = RedisStore(RULES, port=port, clock=clock)
        model = AsmLimiter(RULES)
        book = ReserveLimiter(model, policy)
        try:
            for kind, keys, tokens, step in events:
                clock.advance(step)
                if kind == "report":
                    await store.report(keys, tokens, settle=True)
                    book.report(keys, tokens, clock())
                else:
                    assert await store.check(keys, policy) == book.check(keys, clock())
            suffixes = ("", "_reserved", "_reserved_n", "_avg_tokens")
            for key in KEYS:
                for suffix in suffixes:
                    name = key + suffix
                    assert await value_at(port, name, clock()) == model.keyspace.get(
                        name, clock()), name
        finally:
            await store.close()

    run(scenario)


@pytest.mark.parametrize(("step", "balance"), [(12.0, 30), (12.125, 10)])
def test_expiry_boundary_is_inclusive(redis_server: RedisServer, step: float,
                                      balance: int) -> None:
    # Written at t with TTL 12: alive at t + 12 (refilled 10 + 2 x 10, capped at 30),
    # gone just after (reset to tokens_per_fill).
    async def scenario() -> None:
        clock = ManualClock(injected_start())
        store = RedisStore(RULES, port=redis_server.port, clock=clock)
        try:
            await store.check(["short"])
            clock.advance(step)
            assert (await store.check(["short"])).remaining == balance
        finally:
            await store.close()

    run(scenario)
