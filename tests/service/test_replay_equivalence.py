"""A trace replayed through the running service (HTTP, memory and Redis) gives the decisions of
``tokenlimit.sim.replay_oracle``: the oracle drives the service through an adapter, so both
see the same events in the same order (the replay ordering convention)."""

from __future__ import annotations

import json
from collections.abc import Sequence

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import RedisServer
from tests.service.redis_helpers import injected_start, redis_call, run
from tests.service.test_redis_store import KEYS, RULES
from tokenlimit.bucket import CheckResult
from tokenlimit.bucket.reserve import EstimatePolicy
from tokenlimit.service import BackendConfig, ManualClock, ServiceOptions, running_service
from tokenlimit.sim import TraceRequest, replay_oracle
from tokenlimit.sim.algorithms import ALGORITHMS
from tokenlimit.sim.trace_table import trace_from_requests


class HttpLimiter:
    """Looks like ``AsmLimiter`` to the oracle; every call goes to the service over HTTP."""

    def __init__(self, client: httpx.Client, url: str, clock: ManualClock, start: float) -> None:
        self.client, self.url, self.clock, self.start = client, url, clock, start

    def check(self, keys: Sequence[str], now: float) -> CheckResult:
        self.clock.set(self.start + now)
        answer = self.client.get(f"{self.url}/ratelimit",
                                 params={"ratelimit_keys": json.dumps(list(keys))})
        if answer.status_code == 400:
            return CheckResult("error")
        body = answer.json()
        if body["allow"]:
            return CheckResult("allow")
        return CheckResult("deny", body["description"].removesuffix(" is being rate-limited"))

    def report(self, keys: Sequence[str], tokens: int, now: float) -> None:
        self.clock.set(self.start + now)
        body = {"ratelimit_keys": list(keys), "completion_tokens": tokens}
        assert self.client.post(f"{self.url}/update_ratelimit_record", json=body).status_code == 200


EIGHTHS = st.integers(0, 8 * 90).map(lambda n: n / 8)  # exact on the millisecond grid
TRACES = st.lists(
    st.builds(lambda ts, keys, latency, tokens: (ts, tuple(keys), latency, tokens),
              EIGHTHS, st.lists(st.sampled_from(KEYS), max_size=3),
              st.sampled_from([0, 0.125, 1, 4.5, 12, 31]), st.integers(0, 120)),
    min_size=1, max_size=25,
)


def _trace(rows: list[tuple[float, tuple[str, ...], float, int]]) -> list[TraceRequest]:
    return [TraceRequest(i, ts, keys, latency, completion_tokens=tokens)
            for i, (ts, keys, latency, tokens) in enumerate(rows)]


def _outcomes(rows: list, backend: BackendConfig | None,  # type: ignore[type-arg]
              estimate: EstimatePolicy | None = None) -> None:
    requests = _trace(rows)
    if estimate is None:
        expected = [d.outcome for d in replay_oracle(RULES, requests)]
        options = ServiceOptions()
    else:  # what `simulate --semantics asm-reserve --estimate ...` decides
        replay = ALGORITHMS["asm-reserve"].replay(RULES, trace_from_requests(requests),
                                                   estimate=estimate)
        expected = [replay.outcome_name(i) for i in range(len(requests))]
        options = ServiceOptions(mode="reserve", estimate=estimate)
    start = injected_start()
    clock = ManualClock(start)
    with running_service(RULES, clock=clock, backend=backend, options=options) as svc, \
            httpx.Client() as client:
        limiter = HttpLimiter(client, svc.url, clock, start)
        got = [d.outcome for d in replay_oracle(RULES, requests, limiter=limiter)]  # type: ignore[arg-type]
    assert got == expected


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=TRACES)
def test_memory_service_replays_like_the_oracle(rows: list) -> None:  # type: ignore[type-arg]
    _outcomes(rows, None)


@pytest.mark.redis
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(rows=TRACES)
def test_redis_service_replays_like_the_oracle(redis_server: RedisServer,
                                               rows: list) -> None:  # type: ignore[type-arg]
    run(lambda: redis_call(redis_server.port, "FLUSHALL"))
    _outcomes(rows, BackendConfig("redis", "127.0.0.1", redis_server.port))


ESTIMATES = st.sampled_from([EstimatePolicy(40, average=True, per_rule={4: 150}),
                             EstimatePolicy(25, average=False)])


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=TRACES, estimate=ESTIMATES)
def test_reserve_mode_service_decides_like_simulate_asm_reserve(
        rows: list, estimate: EstimatePolicy) -> None:  # type: ignore[type-arg]
    _outcomes(rows, None, estimate)


@pytest.mark.redis
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(rows=TRACES, estimate=ESTIMATES)
def test_reserve_mode_redis_service_decides_like_simulate_asm_reserve(
        redis_server: RedisServer, rows: list,  # type: ignore[type-arg]
        estimate: EstimatePolicy) -> None:
    run(lambda: redis_call(redis_server.port, "FLUSHALL"))
    _outcomes(rows, BackendConfig("redis", "127.0.0.1", redis_server.port), estimate)
