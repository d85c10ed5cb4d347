"""The driver against real loopback servers: exact counts, bounds, conformance, workers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import RedisServer
from tests.load.servers import AdmitAllHandler, AsmServiceHandler, ChatGatewayHandler, serve
from tokenlimit.load.conformance import check_conformance
from tokenlimit.load.driver import LoadPlan, run
from tokenlimit.load.loadtest import replay_requests, run_loadtest
from tokenlimit.load.modes import KeySpec, Range
from tokenlimit.load.multiprocess import run_workers
from tokenlimit.load.schedule import ConstantRate, PoissonRate, ReplaySchedule
from tokenlimit.rules import load_rules
from tokenlimit.rules.model import Rule
from tokenlimit.service import BackendConfig, running_service
from tokenlimit.sim.readers import read_trace

# Small budgets refilled every second or two, so a few seconds of load cross many refills.
RULES = [Rule(0, "regular-user.*", 300, 100, 1, 300), Rule(1, "subscriber.*", 1000, 400, 2, 600)]
KEYS = (KeySpec("user-type", "regular-user", 3), KeySpec("user-type", "subscriber", 1),
        KeySpec("user-type", "other", 1))


@pytest.fixture
def own_service() -> Iterator[str]:
    """The project's own rate-limit service (memory backend) on a free port."""
    with running_service(RULES, port=0) as svc:
        yield svc.url


def service_plan(url: str, **kw: object) -> LoadPlan:
    base: dict[str, object] = dict(mode="service", keys=KEYS, observe=True,
                                   latency=Range(0, 0.03), tokens=Range(5, 40))
    base.update(kw)
    return LoadPlan(url, **base)  # type: ignore[arg-type]


def test_closed_loop_sends_exactly_the_requests_asked() -> None:
    with serve(AsmServiceHandler, RULES) as (url, calls):
        result = run(service_plan(url, concurrency=4, requests=60))
    s = result.stats
    assert (s.sent, s.completed, calls.count("check")) == (60, 60, 60)
    assert calls.count("report") == s.outcomes["allowed"] == s.report_latency.count
    assert sum(k.requests for k in s.keys.values()) == 60
    assert s.lateness.count == 0  # a closed loop has no schedule to be late for
    assert len(result.observations) == 60 and not result.interrupted


def test_open_loop_stops_at_the_request_bound() -> None:
    with serve(AsmServiceHandler, RULES) as (url, calls):
        result = run(service_plan(url, shape="open", schedule=ConstantRate(200), requests=40,
                                  duration=10))
    assert (result.stats.sent, calls.count("check"), result.stats.lateness.count) == (40, 40, 40)


def test_open_loop_stops_at_the_duration_bound() -> None:
    # 100/s for 0.5 s: offsets 0.00 ... 0.49, exactly 50 requests.
    with serve(AsmServiceHandler, RULES) as (url, calls):
        result = run(service_plan(url, shape="open", schedule=ConstantRate(100), requests=None,
                                  duration=0.5))
    assert (result.stats.sent, calls.count("check")) == (50, 50)


def test_conformance_is_complete_against_the_project_service(own_service: str) -> None:
    plan = service_plan(own_service, shape="open", schedule=PoissonRate(300, 7), requests=900,
                        duration=4)
    report = run_loadtest(plan, rules=RULES)
    conf = report.conformance
    assert conf is not None
    assert report.stats.sent == 900 and report.stats.outcomes["error"] == 0
    assert (conf.over_admitted, conf.under_admitted, conf.other_mismatches) == (0, 0, 0)
    assert conf.agreement == 100.0
    assert conf.ambiguous < 90  # about 1 % in practice; under 10 % even on a busy machine
    assert report.stats.outcomes["limited"] > 100  # the budgets were really exercised


def test_conformance_catches_a_limiter_that_admits_everything() -> None:
    with serve(AdmitAllHandler, RULES) as (url, _):
        report = run_loadtest(service_plan(url, concurrency=4, requests=200), rules=RULES)
    conf = report.conformance
    assert conf is not None
    assert report.stats.outcomes == {"allowed": 200, "limited": 0, "error": 0}
    assert conf.over_admitted > 100
    assert conf.findings()[0].startswith("over-admission:")
    assert conf.keys["other"].over_admitted == 0  # unlimited keys are right to pass


def test_gateway_mode_streams_measures_ttfb_and_conforms() -> None:
    with serve(ChatGatewayHandler, RULES) as (url, _):
        plan = LoadPlan(url, keys=KEYS, shape="open", schedule=ConstantRate(100), requests=200,
                        duration=5, stream=True, observe=True)
        report = run_loadtest(plan, rules=RULES)
    s = report.stats
    assert (s.sent, s.statuses.get("200", 0) + s.statuses.get("429", 0)) == (200, 200)
    assert s.ttfb.count == 200
    assert s.keys["other"].tokens_admitted == 40 * s.keys["other"].allowed
    conf = report.conformance
    assert conf is not None
    assert (conf.over_admitted, conf.under_admitted) == (0, 0)
    assert conf.agreement == 100.0 and conf.compared > 140


def test_two_workers_split_the_schedule_and_merge_exactly(own_service: str) -> None:
    plan = service_plan(own_service, shape="open", schedule=ConstantRate(200), requests=300,
                        duration=5)
    result = run_workers(plan, 2)
    s = result.stats
    assert (s.sent, s.completed, s.latency.count, s.lateness.count) == (300, 300, 300, 300)
    # Each request index was sent by exactly one worker.
    assert [o.index for o in result.observations] == list(range(300))
    conf = check_conformance(RULES, result.observations)
    assert (conf.requests, conf.over_admitted, conf.under_admitted) == (300, 0, 0)
    assert conf.agreement == 100.0


def test_replay_sends_the_trace_keys_and_tokens(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    trace.write_text("".join(
        f'{{"ts": {100 + i * 0.01}, "key": "regular-user", "latency": 0.001, '
        f'"completion_tokens": 60}}\n' for i in range(5)))
    requests = replay_requests(read_trace(str(trace)))
    with serve(AsmServiceHandler, RULES) as (url, _):
        plan = service_plan(url, shape="open", schedule=ReplaySchedule(
            tuple(r.ts for r in requests), 1.0), requests=None, duration=2, replay=requests)
        report = run_loadtest(plan, rules=RULES)
    s = report.stats
    assert s.sent == 5 and set(s.keys) == {"regular-user"}
    # 100 tokens at first: the first two pass (100, 40), then -20: the rest are limited,
    # unless a report was still in flight (then the check is counted ambiguous, not wrong).
    assert s.outcomes["allowed"] >= 2 and s.keys["regular-user"].tokens_admitted % 60 == 0
    assert report.conformance is not None and report.conformance.agreed + \
        report.conformance.ambiguous == 5


def test_rules_from_a_file_drive_the_same_check(own_service: str) -> None:
    loaded = load_rules(config_json='[{"rate_limit_key_regex": "regular-user.*", '
                        '"max_tokens": 300, "tokens_per_fill": 100, "fill_interval_second": 1, '
                        '"redis_expired_seconds": 300}]')
    report = run_loadtest(service_plan(own_service, concurrency=2, requests=50),
                          rules=list(loaded.rules))
    conf = report.conformance
    assert conf is not None
    # subscriber has no rule in this file, yet the service limits it: under-admission.
    assert conf.keys["regular-user"].over_admitted == conf.keys["regular-user"].under_admitted


def test_a_silent_server_times_out_and_the_run_still_ends() -> None:
    # Accepts connections, reads, never answers.
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
                accepted.append(conn)
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        result = run(LoadPlan(url, concurrency=2, requests=4, timeout=0.3))
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in accepted:
            conn.close()
        listener.close()
    s = result.stats
    assert (s.sent, s.errors, s.outcomes["error"]) == (4, {"timeout": 4}, 4)
    # The 0.3 s timeout was applied (event-loop timers may ring up to 1 ms early).
    assert s.by_outcome["error"].min_us is not None and s.by_outcome["error"].min_us >= 299_000


@pytest.mark.redis
def test_conformance_against_the_project_service_on_redis(redis_server: RedisServer) -> None:
    backend = BackendConfig("redis", redis_server.host, redis_server.port)
    with running_service(RULES, port=0, backend=backend) as svc:
        plan = service_plan(svc.url, shape="open", schedule=PoissonRate(200, 3), requests=500,
                            duration=4)
        report = run_loadtest(plan, rules=RULES)
    conf = report.conformance
    assert conf is not None and report.stats.outcomes["error"] == 0
    assert (conf.over_admitted, conf.under_admitted, conf.other_mismatches) == (0, 0, 0)
    assert conf.agreement == 100.0 and conf.ambiguous < 50
