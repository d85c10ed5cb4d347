"""The cluster store against a real three-node Redis Cluster: hash-tagged keys, slot routing."""

from __future__ import annotations

import uuid

import httpx
import pytest
from hypothesis import HealthCheck, given, settings

from tests.service.conftest import RedisCluster
from tests.service.helpers import allowed, check, report
from tests.service.redis_helpers import injected_start, redis_call, run
from tests.service.test_redis_store import EVENTS, KEYS, RULES
from tokenlimit.bucket.limiter import AsmLimiter
from tokenlimit.bucket.reserve import ReserveLimiter
from tokenlimit.service import BackendConfig, EstimatePolicy, ManualClock, running_service
from tokenlimit.service.stores.cluster import ClusterNodes, ClusterStore, key_slot

pytestmark = pytest.mark.redis


def _owner(cluster: RedisCluster, slot: int) -> int:
    ranges = ((0, 5460), (5461, 10922), (10923, 16383))
    for node, (start, end) in zip(cluster.nodes, ranges, strict=True):
        if start <= slot <= end:
            return node.port
    raise AssertionError(slot)


def test_keys_live_hash_tagged_on_the_owning_node(redis_cluster: RedisCluster) -> None:
    backend = BackendConfig("redis-cluster", "127.0.0.1", redis_cluster.seed.port)
    keys = [f"regular-user-{i}" for i in range(12)]
    with running_service(RULES, backend=backend) as svc, httpx.Client() as client:
        for key in keys:
            assert allowed(check(client, svc.url, [key]))
            assert report(client, svc.url, [key], 60).status_code == 200
            assert not allowed(check(client, svc.url, [key]))
        assert client.get(f"{svc.url}/readyz").status_code == 200
        for odd in ("}regular-user", "regular-user-{x}", "regular-user}{"):  # as standalone
            assert allowed(check(client, svc.url, [odd]))
            assert report(client, svc.url, [odd], 60).status_code == 200
            assert not allowed(check(client, svc.url, [odd]))
        tagged = "{\x00}\x00}regular-user"
        owner = _owner(redis_cluster, key_slot(tagged))
        assert run(lambda: redis_call(owner, "GET", tagged)) == b"-10"
    owners = {_owner(redis_cluster, key_slot(key)) for key in keys}
    assert len(owners) == 3  # the keys really spread over the three nodes
    for key in keys:
        port = _owner(redis_cluster, key_slot(key))
        assert run(lambda k=key, p=port: redis_call(p, "GET", "{" + k + "}")) == b"-10"
        assert run(lambda k=key, p=port: redis_call(
            p, "EXISTS", "{" + k + "}_last_fill_time")) == 1


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(events=EVENTS)
def test_cluster_decisions_equal_the_reference_model(redis_cluster: RedisCluster,
                                                     events: list) -> None:  # type: ignore[type-arg]
    salt = uuid.uuid4().hex  # fresh keys per example instead of FLUSHALL on every node

    async def scenario() -> None:
        clock = ManualClock(injected_start())
        store = ClusterStore(RULES, "127.0.0.1", redis_cluster.seed.port, clock=clock)
        model = AsmLimiter(RULES)
        rename = {key: f"{key}-{salt}" for key in KEYS}
        try:
            for kind, keys, tokens, step in events:
                clock.advance(step)
                named = [rename[k] for k in keys]
                if kind == "report":
                    await store.report(named, tokens)
                    model.report(named, tokens, clock())
                else:
                    assert await store.check(named) == model.check(named, clock())
        finally:
            await store.close()

    run(scenario)


def test_a_stale_slot_map_follows_moved(redis_cluster: RedisCluster) -> None:
    async def scenario() -> None:
        store = ClusterStore(RULES, "127.0.0.1", redis_cluster.seed.port)
        nodes = store.nodes
        assert isinstance(nodes, ClusterNodes)
        try:
            assert (await store.check(["regular-user-warm"])).outcome == "allow"  # map read
            key = "regular-user-moved"
            slot = key_slot("{" + key + "}")
            owner = _owner(redis_cluster, slot)
            wrong = next(n.port for n in redis_cluster.nodes if n.port != owner)
            manager = nodes.client.nodes_manager
            wrong_node = manager.get_node("127.0.0.1", wrong)
            manager.slots_cache[slot] = [wrong_node]  # as if the slot had moved away
            assert (await store.check([key])).outcome == "allow"  # MOVED followed
            assert manager.slots_cache[slot][0].port == owner  # map read again
            assert run_value(redis_cluster, owner, "{" + key + "}") == b"50"
        finally:
            await store.close()

    run(scenario)


def run_value(cluster: RedisCluster, port: int, name: str) -> object:
    import asyncio
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # outside the running loop
        return pool.submit(lambda: asyncio.run(redis_call(port, "GET", name))).result()


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(events=EVENTS)
def test_cluster_reserve_mode_equals_its_model(redis_cluster: RedisCluster,
                                               events: list) -> None:  # type: ignore[type-arg]
    salt = uuid.uuid4().hex
    policy = EstimatePolicy(default=40, average=True, per_rule={4: 150})

    async def scenario() -> None:
        clock = ManualClock(injected_start())
        store = ClusterStore(RULES, "127.0.0.1", redis_cluster.seed.port, clock=clock)
        model = AsmLimiter(RULES)
        book = ReserveLimiter(model, policy)
        rename = {key: f"{key}-{salt}" for key in KEYS}
        try:
            for kind, keys, tokens, step in events:
                clock.advance(step)
                named = [rename[k] for k in keys]
                if kind == "report":
                    await store.report(named, tokens, settle=True)
                    book.report(named, tokens, clock())
                else:
                    assert await store.check(named, policy) == book.check(named, clock())
        finally:
            await store.close()

    run(scenario)
