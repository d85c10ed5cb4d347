"""The attack and operator probes of ``bench/serve_probes.py``, small enough for CI; each
prints its figures (``pytest -s``) and asserts the bound it stands for."""

from __future__ import annotations

import pytest

from bench.serve_probes import (
    probe_big_heads,
    probe_descriptors,
    probe_expiry,
    probe_graceful_stop,
    probe_pipelining,
    probe_slow_clients,
    probe_unmatched_keys,
)


def _show(name: str, figures: dict[str, float]) -> None:
    print(name, " ".join(f"{key}={value:.1f}" for key, value in figures.items()))


def test_unmatched_keys_do_not_grow_memory() -> None:
    figures = probe_unmatched_keys(requests=400, key_kb=60)
    _show("unmatched-keys", figures)
    # 400 x 60 KB = 24 MB of keys went through; unbounded caches kept all of it.
    assert figures["rss_after_mb"] - figures["rss_before_mb"] < 20


def test_expired_keys_are_freed() -> None:
    figures = probe_expiry(keys=20_000, rounds=3)
    _show("expiry", figures)
    # Each round stores 2 keys per check (some expire while the round still runs); 2.5 s
    # later (TTL 1 s) the sweeper has freed them all, with no request reading them again.
    assert all(0 < figures[f"keys_round{n}"] <= 40_000 for n in (1, 2, 3))
    assert figures["keys_end"] == 0
    assert figures["rss_round3_mb"] - figures["rss_round1_mb"] < 15


@pytest.mark.redis
def test_requests_in_flight_at_sigterm_are_answered() -> None:
    figures = probe_graceful_stop(in_flight=10)
    _show("graceful-stop", figures)
    assert (figures["answered"], figures["exit_code"], figures["unanswered_logged"]) == (10, 0, 0)
    assert figures["exit_seconds"] < 8


@pytest.mark.redis
def test_pipelining_clients_neither_fail_others_nor_starve_them() -> None:
    figures = probe_pipelining(connections=4, checks=2000)
    _show("pipelining", figures)
    assert (figures["answered"], figures["non_200"]) == (8000, 0)
    assert figures["normal_max_ms"] < 1000


def test_slow_clients_are_closed_and_do_not_block_others() -> None:
    figures = probe_slow_clients(slow=50, request_timeout=1.0)
    _show("slow-clients", figures)
    assert figures["all_closed_after_s"] < 1.0 + 2.5  # the timeout plus the 1 s reaper tick
    assert figures["normal_max_ms"] < 1000


def test_running_out_of_file_descriptors_is_said_once() -> None:
    figures = probe_descriptors(limit=64, connections=120)
    _show("descriptors", figures)
    assert figures["accept_failing_lines"] == 1
    assert figures["normal_after_ms"] < 1000


def test_hostile_heads_and_stored_keys_stay_inside_the_deployment_limit() -> None:
    figures = probe_big_heads(connections=100, head_kb=900, key_kb=60, checks=1000)
    _show("big-heads", figures)
    # 90 MB of unfinished heads (reading pauses past 32 MiB held) and 120 MB of matching keys
    # (refused past --max-memory-mb 64): the Deployment's limit is 256 MiB.
    assert figures["rss_mb"] < 230
    assert figures["refused_checks"] > 0
    assert figures["normal_ms"] < 1000
