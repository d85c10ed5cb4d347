"""Synthetic traces (seeded, shaped as asked) and the replay statistics (exact figures)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tokenlimit.errors import ConfigError
from tokenlimit.rules.model import Rule
from tokenlimit.sim import TraceRequest
from tokenlimit.sim.engine import replay_asm
from tokenlimit.sim.generate import Tier, TraceSpec, generate_trace, spec_from_mapping
from tokenlimit.sim.readers import read_trace
from tokenlimit.sim.replay_stats import summarize
from tokenlimit.sim.sweep import parse_setting, sweep_rules
from tokenlimit.sim.trace_table import trace_from_requests
from tokenlimit.sim.writers import write_decisions, write_trace


def test_same_seed_same_bytes_and_round_trip(tmp_path: Path) -> None:
    spec = TraceSpec(duration=600.0, seed=11)
    write_trace(generate_trace(spec), tmp_path / "a.csv.gz")
    write_trace(generate_trace(spec), tmp_path / "b.csv.gz")
    assert (tmp_path / "a.csv.gz").read_bytes() == (tmp_path / "b.csv.gz").read_bytes()
    original = generate_trace(spec)
    for name in ("t.jsonl", "t.csv"):
        write_trace(original, tmp_path / name)
        back = read_trace(tmp_path / name)
        assert back.ts.tolist() == original.ts.tolist()
        assert [back.keys_of(i) for i in range(len(back))] == [
            original.keys_of(i) for i in range(len(original))]
        assert back.completion_tokens.tolist() == original.completion_tokens.tolist()


def test_arrival_processes_have_their_shape() -> None:
    day = 86400.0
    poisson = generate_trace(TraceSpec(duration=day, start=0.0, seed=1,
                                       tiers=(Tier("p", users=3, rate=0.2),)))
    assert abs(len(poisson) - 0.2 * day) < 5 * np.sqrt(0.2 * day)
    bursty = generate_trace(TraceSpec(duration=day, start=0.0, seed=1, tiers=(
        Tier("b", users=3, rate=0.2, arrival="bursty", burst_size=10, burst_spread=1.0),)))
    gaps = np.diff(bursty.ts)
    assert np.mean(gaps < 1.0) > 0.8                     # most requests come in bursts
    diurnal = generate_trace(TraceSpec(duration=day, start=0.0, seed=1, tiers=(
        Tier("d", users=3, rate=0.2, arrival="diurnal", diurnal_amplitude=0.9,
             peak_hour=12.0),)))
    hours = np.bincount((diurnal.ts // 3600).astype(int), minlength=24)
    assert hours[11:13].mean() > 5 * hours[[0, 23]].mean()  # noon peak, quiet midnight
    assert np.all(np.diff(diurnal.ts) >= 0)


def test_spec_from_yaml_mapping_refuses_unknown_fields() -> None:
    spec = spec_from_mapping({"duration": 60, "seed": 4, "tiers": [
        {"name": "gold", "users": 2, "rate": 1.5, "arrival": "bursty"}]}, "spec.yaml")
    assert (spec.duration, spec.seed, spec.tiers[0].arrival) == (60.0, 4, "bursty")
    with pytest.raises(ConfigError, match=r"spec\.yaml: tiers\[0\]: unknown tier field 'speed'"):
        spec_from_mapping({"tiers": [{"name": "x", "speed": 1}]}, "spec.yaml")
    with pytest.raises(ConfigError, match="arrival one of poisson, bursty, diurnal"):
        generate_trace(TraceSpec(tiers=(Tier("x", arrival="sometimes"),)))


def test_a_misspelt_spec_field_is_refused_not_the_default() -> None:
    """``duraton: 600`` was ignored: the trace lasted the default hour, exit 0."""
    with pytest.raises(ConfigError) as caught:
        spec_from_mapping({"duraton": 600, "tiers": []}, "spec.yaml")
    assert str(caught.value) == (
        "spec.yaml: unknown field 'duraton' (known: duration, seed, start, tiers)")
    with pytest.raises(ConfigError) as caught:
        spec_from_mapping({"duration": "1e12"}, "spec.yaml")  # as YAML reads 1e12
    assert str(caught.value) == (
        "spec.yaml: field 'duration': expected a number, got '1e12' (text in YAML: write 1e9 "
        "as 1000000000 or 1.0e+9)")


RULES = [Rule(0, "^a", 100, 10, 60, 600), Rule(1, "^b", 100, 50, 60, 600)]
REQUESTS = [
    TraceRequest("r0", 0.0, ("a1",), 1.0, 5, 30, 35),   # a1: 10 -> -20
    TraceRequest("r1", 2.0, ("a1",), 0.0, 5, 1, 6),     # deny (first limited at 2)
    TraceRequest("r2", 3.0, ("b1",), 0.0, 1, 20, 21),   # b1: 50 -> 30
    TraceRequest("r3", 4.0, ("zz",), 0.0, 2, 7, 9),     # no rule
    TraceRequest("r4", 5.0, ("a1", "b1"), 0.0, 3, 4, 7),  # a1 limited first: deny
]


def test_summary_figures_per_rule_per_key_and_total() -> None:
    trace = trace_from_requests(REQUESTS)
    replay = replay_asm(RULES, trace)
    summary = summarize(RULES, trace, replay, price_per_1k=2.0)
    data = summary.to_dict()
    assert data["totals"] == {
        "requests": 5, "admitted": 3, "limited": 2, "limited_pct": 40.0, "errors": 0,
        "tokens_admitted": 57, "total_tokens_admitted": 65, "deepest_debt": -20,
        "first_limited": 2.0}
    assert [(r["rule"], r["requests"], r["limited"], r["tokens_admitted"], r["deepest_debt"])
            for r in data["rules"]] == [(0, 3, 2, 30, -20), (1, 1, 0, 20, 0),
                                        (None, 1, 0, 7, 0)]
    assert [(k["key"], k["rule"], k["requests"], k["first_limited"]) for k in data["keys"]] == [
        ("a1", 0, 3, 2.0), ("b1", 1, 1, None)]
    assert data["spend"] == {"price_per_1k_tokens": 2.0, "admitted_usd": 0.13}


def test_debt_of_a_second_key_counts_under_its_own_rule() -> None:
    requests = [TraceRequest(0, 0.0, ("a1", "b1", "zz"), 0.0, 0, 80, 80)]
    trace = trace_from_requests(requests)
    data = summarize(RULES, trace, replay_asm(RULES, trace)).to_dict()
    # Decided by a1 (rule 0); b1 (rule 1) went from 50 to -30; zz matches nothing.
    assert [(r["rule"], r["requests"], r["deepest_debt"]) for r in data["rules"]] == [
        (0, 1, -70), (1, 0, -30)]
    assert data["totals"]["deepest_debt"] == -70
    replay = replay_asm(RULES, trace)
    assert replay.deepest.tolist() == [-70, -30, 0]


def test_decisions_file_in_file_order(tmp_path: Path) -> None:
    trace = trace_from_requests(REQUESTS)
    replay = replay_asm(RULES, trace)
    write_decisions(tmp_path / "d.jsonl", trace, replay.outcome, replay.rule)
    assert (tmp_path / "d.jsonl").read_text().splitlines() == [
        '{"id": "r0", "outcome": "allow", "rule": 0}',
        '{"id": "r1", "outcome": "deny", "rule": 0}',
        '{"id": "r2", "outcome": "allow", "rule": 1}',
        '{"id": "r3", "outcome": "allow", "rule": null}',
        '{"id": "r4", "outcome": "deny", "rule": 0}',
    ]
    assert [p.name for p in tmp_path.iterdir()] == ["d.jsonl"]  # no temporary left behind


def test_sweep_settings_combine_as_a_product() -> None:
    settings = [parse_setting("rules[0].max_tokens=5,50"),
                parse_setting("rules[*].tokens_per_fill=1")]
    variants = sweep_rules(RULES, settings)
    assert [label for label, _ in variants] == [
        "rules[0].max_tokens=5 rules[*].tokens_per_fill=1",
        "rules[0].max_tokens=50 rules[*].tokens_per_fill=1"]
    assert [(r.max_tokens, r.tokens_per_fill) for r in variants[1][1]] == [(50, 1), (100, 1)]
    with pytest.raises(ConfigError, match="there is no rules\\[7\\]"):
        sweep_rules(RULES, [parse_setting("rules[7].max_tokens=1")])
    with pytest.raises(ConfigError, match="'speed' is not one of"):
        parse_setting("rules[0].speed=1")


def test_per_key_figures_counted_in_blocks_on_threads_are_one_passes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """key_figures splits a long trace into blocks of requests, one a thread: counts add up
    and first limited times take the minimum, exactly as in one pass."""
    from tokenlimit.sim import replay_stats

    spec = TraceSpec(duration=3600.0, seed=4, tiers=(
        Tier("regular-user", users=20, rate=2.0, arrival="bursty", completion_mean=60.0),))
    trace = generate_trace(spec)
    rules = [Rule(0, "regular-user.*", 200, 50, 30, 300)]
    replay = replay_asm(rules, trace)
    n_keys = len(trace.key_names)
    assert len(trace) > 16 * (n_keys + 1) and (replay.outcome == 1).any()
    monkeypatch.setattr(replay_stats, "_BLOCK", 10**12)
    counts, first = replay_stats.key_figures(trace, replay, "completion", n_keys)
    monkeypatch.setattr(replay_stats, "_BLOCK", 1)
    monkeypatch.setattr(replay_stats, "usable_cores", lambda: 3)
    in_blocks = replay_stats.key_figures(trace, replay, "completion", n_keys)
    assert counts.tolist() == in_blocks[0].tolist()
    assert first.tolist() == in_blocks[1].tolist()
