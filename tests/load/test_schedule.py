"""Load shapes, key mixes and replay order: exact, seeded, and split exactly over workers."""

from __future__ import annotations

import gzip
import itertools
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tokenlimit.errors import ConfigError, TraceError
from tokenlimit.load.driver import LoadPlan, _indices
from tokenlimit.load.loadtest import replay_requests
from tokenlimit.load.modes import KeySpec, Planner, Range
from tokenlimit.load.schedule import ConstantRate, PoissonRate, ReplaySchedule, parse_ramp
from tokenlimit.sim.readers import read_trace


def test_a_ramp_steps_through_its_rates_and_holds_the_last() -> None:
    ramp = parse_ramp("2x1,4x0.5,1x1")
    offsets = list(itertools.islice(ramp.offsets(), 7))
    assert offsets == [0.0, 0.5, 1.0, 1.25, 1.5, 2.5, 3.5]


def test_poisson_arrivals_are_seeded() -> None:
    a = list(itertools.islice(PoissonRate(100, seed=4).offsets(), 50))
    b = list(itertools.islice(PoissonRate(100, seed=4).offsets(), 50))
    assert a == b and a == sorted(a) and a[0] == 0.0
    assert a != list(itertools.islice(PoissonRate(100, seed=5).offsets(), 50))


def test_replay_keeps_the_trace_gaps_divided_by_speed() -> None:
    assert list(ReplaySchedule((10.0, 10.5, 12.0), 2.0).offsets()) == [0.0, 0.25, 1.0]


@given(st.integers(min_value=1, max_value=6), st.integers(min_value=0, max_value=200))
def test_workers_split_the_requests_without_overlap(workers: int, requests: int) -> None:
    plan = LoadPlan("http://127.0.0.1:1", requests=requests)
    taken = sorted(n for w in range(workers) for n in _indices(plan, w, workers))
    assert taken == list(range(requests))


def test_the_key_mix_follows_its_weights_and_seed() -> None:
    keys = (KeySpec("user-type", "a", 3), KeySpec("user-type", "b", 1))
    plans = [Planner(keys, Range(5, 9), 2, Range(0, 0), seed=1).plan(n) for n in range(1)]
    planner = Planner(keys, Range(5, 9), 2, Range(0, 0), seed=1)
    drawn = [planner.plan(n) for n in range(4000)]
    share = sum(p.key == "a" for p in drawn) / len(drawn)
    assert 0.72 < share < 0.78
    assert {p.completion_tokens for p in drawn} == {5, 6, 7, 8, 9}
    assert drawn[0] == plans[0]  # same seed, same first draw


@pytest.mark.parametrize("text", ["x=:1", "=v", "user-type=v:0", "v:-2"])
def test_bad_keys_are_refused(text: str) -> None:
    with pytest.raises(ConfigError, match="--key"):
        KeySpec.parse(text)


def test_a_header_value_may_hold_colons_when_no_weight_follows() -> None:
    assert KeySpec.parse("x-key=a:b") == KeySpec("x-key", "a:b", 1.0)


def test_replay_order_is_by_time_ties_in_file_order(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl.gz"
    with gzip.open(path, "wt") as handle:
        handle.write('{"ts": 5, "key": "b", "completion_tokens": 3}\n\n'
                     '{"ts": 1, "key": "a", "latency": 0.5, "id": "x"}\n{"ts": 5, "key": "d"}\n')
    requests = replay_requests(read_trace(path))
    assert [(r.id, r.keys, r.ts) for r in requests] == [
        ("x", ("a",), 1.0), (0, ("b",), 5.0), (2, ("d",), 5.0)]
    assert requests[1].completion_tokens == 3 and requests[1].total_tokens == 3


@pytest.mark.parametrize(("name", "text", "message"), [
    ("t.jsonl", '{"ts": 1, "key": "a"}\n\n{"ts": 2, "keys": ["a", "b"]}\n',
     ":3: field 'keys': has 2 keys; a load test sends one key per request "
     "(give one key, or one --key-template)"),
    ("t.csv", 'ts,keys\n1,"[""a""]"\n\n2,[]\n', ":4: field 'keys': has no key"),
    ("t.jsonl", "\n\n", ": no requests in the trace"),
])
def test_replay_needs_one_key_per_request(tmp_path: Path, name: str, text: str,
                                          message: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(TraceError) as info:
        replay_requests(read_trace(path))
    assert str(info.value) == str(path) + message


def test_constant_rate_is_exact() -> None:
    assert list(itertools.islice(ConstantRate(8).offsets(), 3)) == [0.0, 0.125, 0.25]
