"""The shared handout sums against real Redis (single and cluster), and the
sharing timer through a Redis that goes away and comes back."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.task import deferLater

from mpush.balance import BalancePolicy, Candidate
from mpush.cluster.handout_store import HASH_TTL, RedisHandoutStore, SharedHandoutsError
from mpush.services.handout_sharing import HandoutSharer
from mpush.shared_handouts import EPOCH_FIELD, SHARED_HANDOUTS_KEY
from tests.fixtures_redis import failure_of
from tests.harness.redis import RedisCluster, RedisServer

pytestmark = pytest.mark.integration

A, B = "10.0.0.1:3000", "10.0.0.2:3000"


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await deferLater(reactor, 0.05)


def policy_of(*addresses: str) -> BalancePolicy:
    policy = BalancePolicy()
    policy.set_servers(Candidate(a, a.split(":")[0]) for a in addresses)
    policy.apply_counts(policy.begin_refresh(), {})
    return policy


@pytest_twisted.ensureDeferred
async def test_two_instances_add_into_one_hash_with_an_epoch_and_an_expiry(
    fresh_redis_server: RedisServer, make_service: Any
) -> None:
    server = fresh_redis_server
    one = RedisHandoutStore(make_service("single", [server.address]))
    two = RedisHandoutStore(make_service("single", [server.address]))
    first = await one.exchange({A: 3})
    second = await two.exchange({A: 2, B: 5})
    assert first.sums == {A: 3} and second.sums == {A: 5, B: 5}
    assert first.epoch and first.epoch == second.epoch  # HSETNX: the first writer's
    assert 0 < int(server.call("PTTL", SHARED_HANDOUTS_KEY)) <= HASH_TTL * 1000
    server.call("DEL", SHARED_HANDOUTS_KEY)  # as an expiry or a Redis restarted empty
    third = await one.exchange({})
    assert third.sums == {} and third.epoch not in (None, first.epoch)


@pytest_twisted.ensureDeferred
async def test_foreign_data_is_refused_or_ignored_and_an_oversize_hash_deleted(
    fresh_redis_server: RedisServer, make_service: Any
) -> None:
    server = fresh_redis_server
    service = make_service("single", [server.address])
    server.call("SET", SHARED_HANDOUTS_KEY, "not a hash")
    error, _ = await failure_of(RedisHandoutStore(service).exchange({A: 1}))
    assert isinstance(error, SharedHandoutsError) and "WRONGTYPE" in str(error)
    server.call("DEL", SHARED_HANDOUTS_KEY)
    server.call("HSET", SHARED_HANDOUTS_KEY, "x" * 400, 7, B, "many", A, -3)
    read = await RedisHandoutStore(service).exchange({A: 4}, [B])
    assert read.sums == {A: 1}  # the non-number and the negative dropped
    small = RedisHandoutStore(service, max_fields=2)
    error, _ = await failure_of(small.exchange({}))
    assert isinstance(error, SharedHandoutsError) and "deleted" in str(error)
    await until(lambda: server.call("EXISTS", SHARED_HANDOUTS_KEY) == 0)


@pytest_twisted.ensureDeferred
async def test_only_our_servers_fields_are_read_not_the_whole_hash(
    fresh_redis_server: RedisServer, make_service: Any
) -> None:
    # Servers long gone (or fields something else wrote) stay in the hash
    # until it is too big; reading them all every 250 ms would cost the
    # reactor in proportion, and bring foreign data in.
    server = fresh_redis_server
    server.call("HSET", SHARED_HANDOUTS_KEY,
                *[x for i in range(2000) for x in (f"10.9.{i // 250}.{i % 250}:3000", 1)])
    read = await RedisHandoutStore(make_service("single", [server.address])).exchange(
        {A: 2}, [A, B])
    assert read.sums == {A: 2} and read.epoch


@pytest_twisted.ensureDeferred
async def test_a_sum_beyond_redis_integers_is_ignored_and_get_slash_keeps_answering(
    fresh_redis_server: RedisServer, make_service: Any
) -> None:
    # HINCRBY never makes more than 2**63 - 1; a bigger value was written by
    # something else. Trusted, 4,000 digits overflowed the float load: GET / raised.
    server = fresh_redis_server
    store = RedisHandoutStore(make_service("single", [server.address]))
    policy = policy_of(A, B)
    sharer = HandoutSharer(policy, store, interval=60.0)
    sharer.exchange()
    await until(lambda: sharer.exchanges == 1)
    server.call("HSET", SHARED_HANDOUTS_KEY, A, "9" * 4000, B, str(2**63))
    read = await store.exchange({})
    assert read.sums == {}
    sharer.exchange()
    await until(lambda: sharer.exchanges == 2)
    assert policy.allocate() is not None
    assert {s.shared for s in policy.describe()} == {0}


@pytest_twisted.ensureDeferred
async def test_cluster_mode_one_key_one_master(redis_cluster: RedisCluster,
                                               make_service: Any) -> None:
    owner = redis_cluster.node_for_key(SHARED_HANDOUTS_KEY)
    owner.call("DEL", SHARED_HANDOUTS_KEY)
    store = RedisHandoutStore(make_service("cluster", [redis_cluster.seeds[0]]))
    await store.exchange({A: 2})
    read = await store.exchange({A: 1, B: 1})
    assert read.sums == {A: 3, B: 1}
    assert int(owner.call("HGET", SHARED_HANDOUTS_KEY, A)) == 3
    assert owner.call("HEXISTS", SHARED_HANDOUTS_KEY, EPOCH_FIELD) == 1


@pytest_twisted.ensureDeferred
async def test_sharing_survives_redis_going_away_and_coming_back(
    fresh_redis_server: RedisServer, make_service: Any
) -> None:
    server = fresh_redis_server
    policies = [policy_of(A, B), policy_of(A, B)]
    sharers = [HandoutSharer(p, RedisHandoutStore(make_service("single", [server.address])),
                             interval=0.05, timeout=1.0)
               for p in policies]
    for sharer in sharers:
        sharer.startService()
    try:
        await until(lambda: all(s.exchanges >= 2 for s in sharers))
        for _ in range(6):
            policies[0].allocate()
        # The other instance learns of them: A and B got 3 each from the first.
        await until(lambda: {s.shared for s in policies[1].describe()} == {3})

        server.kill()
        await until(lambda: all(s.last_error is not None for s in sharers))
        for policy in policies:  # serving goes on, counting alone
            for _ in range(4):
                assert policy.allocate() is not None
        failures = [s.failures for s in sharers]
        await until(lambda: all(s.failures > f for s, f in zip(sharers, failures, strict=True)))

        server.start()  # same port, same data (append-only file)
        await until(lambda: all(s.last_error is None for s in sharers), timeout=15.0)

        def summed() -> dict[str, int]:
            raw = server.call("HGETALL", SHARED_HANDOUTS_KEY)
            pairs = dict(zip(raw[::2], raw[1::2], strict=True))
            text = {(k.decode() if isinstance(k, bytes) else k): v for k, v in pairs.items()}
            return {k: int(v) for k, v in text.items() if k != EPOCH_FIELD}

        # Every handout of both instances arrived once, the outage's included.
        totals = {a: sum(p.handout_totals()[a] for p in policies) for a in (A, B)}
        assert sum(totals.values()) == 14
        await until(lambda: summed() == totals)
    finally:
        for sharer in sharers:
            sharer.stopService()
