"""RedisService against real Redis servers: single, sentinel and cluster,
with the faults a daemon meets (stopped, killed, frozen, wrong password)."""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.logger import formatEvent

from mpush.cluster.redis import RedisAuthError, RedisUnavailable
from mpush.cluster.redis_cluster import key_slot
from tests.fixtures_redis import BOUND, REDIS_TEST_PASSWORD, REPLY_TIMEOUT, SLACK, failure_of
from tests.harness.redis import (
    RedisCluster,
    RedisReplyError,
    RedisSentinel,
    RedisServer,
    SyncRedisClient,
    free_port,
    parse_info,
    wait_for,
)

pytestmark = pytest.mark.integration

T = TypeVar("T")



def cache_messages(events: list[dict[str, Any]]) -> list[str]:
    return [formatEvent(e) for e in events if e.get("log_namespace") == "mpush.cluster.redis"]


async def sleep(seconds: float) -> None:
    await deferLater(reactor, seconds)


async def eventually(
    fn: Callable[[], Awaitable[T]], timeout: float = 8.0, interval: float = 0.05
) -> T:
    """The first successful result of ``fn()``, retried until ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await fn()
        except Exception:
            if time.monotonic() >= deadline:
                raise
        await sleep(interval)


async def until(predicate: Callable[[], bool], timeout: float = 8.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await sleep(0.05)


def stat(server: RedisServer, name: str) -> int:
    return int(server.info("stats")[name])


# ---------------------------------------------------------------------------
# single
# ---------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_single_reads_the_mpush_keys(redis_server: RedisServer, make_service: Any) -> None:
    redis_server.call("ZADD", "mp:oul:10.0.0.1", 1, "u1", 2, "u2", 3, "u3")
    redis_server.call("ZADD", "mp:oul:10.0.0.2", 1, "u4")
    route = '{"port":3001,"host":"10.0.0.5","osName":"android","connId":"c1"}'
    redis_server.call("HSET", "mp:ur:u1", "1", route, "2", "{}")
    service = make_service("single", [redis_server.address])

    assert await service.zcard("mp:oul:10.0.0.1") == 3
    routes = await service.hgetall("mp:ur:u1")
    assert routes == {"1": route, "2": "{}"}  # "1" stays a string (convertNumbers=False)
    assert await service.hgetall("mp:ur:nobody") == {}
    assert await service.online_counts(["10.0.0.1", "10.0.0.2", "10.0.0.9"]) == {
        "10.0.0.1": 3,
        "10.0.0.2": 1,
        "10.0.0.9": 0,
    }
    assert await service.execute("SET", "k", "007") == "OK"
    assert await service.execute("GET", "k") == "007"
    assert service.healthy and service.last_error is None


@pytest_twisted.ensureDeferred
async def test_password_is_sent(redis_password_server: RedisServer, make_service: Any) -> None:
    server = redis_password_server
    server.call("ZADD", "mp:oul:1.1.1.1", 1, "a")
    auths = parse_info(server.call("INFO", "commandstats")).get("cmdstat_auth", "calls=0")
    service = make_service("single", [server.address], REDIS_TEST_PASSWORD)
    assert await service.zcard("mp:oul:1.1.1.1") == 1
    after = parse_info(server.call("INFO", "commandstats"))["cmdstat_auth"]
    assert after.split(",")[0] != auths.split(",")[0]


@pytest_twisted.ensureDeferred
async def test_wrong_password_is_clear_and_not_retried_in_a_loop(
    redis_password_server: RedisServer, make_service: Any, log_events: list[dict[str, Any]]
) -> None:
    server = redis_password_server
    wrong = "not-the-password-42"
    before = stat(server, "total_connections_received")
    service = make_service("single", [server.address], wrong)

    error, took = await failure_of(service.zcard("mp:oul:x"))
    assert isinstance(error, RedisAuthError)
    assert "authentication failed" in str(error) and "WRONGPASS" in str(error)
    assert took < BOUND
    # Hammer it for a second: the failure is remembered, not retried.
    for _ in range(20):
        error, took = await failure_of(service.zcard("mp:oul:x"))
        assert isinstance(error, RedisAuthError) and took < 0.05
        await sleep(0.05)
    assert stat(server, "total_connections_received") - before <= 1
    assert not service.healthy
    assert "authentication failed" in (service.last_error or "")

    messages = cache_messages(log_events)
    assert len([m for m in messages if "unavailable" in m]) == 1  # once per change
    everything = repr(log_events) + repr(error) + str(service.last_error)
    assert wrong not in everything and REDIS_TEST_PASSWORD not in everything


@pytest_twisted.ensureDeferred
async def test_missing_password_is_clear(
    redis_password_server: RedisServer, make_service: Any
) -> None:
    service = make_service("single", [redis_password_server.address], "")  # "" = none
    error, _ = await failure_of(service.zcard("k"))
    assert isinstance(error, RedisAuthError)
    assert "requires a password" in str(error)


@pytest_twisted.ensureDeferred
async def test_online_counts_are_pipelined(redis_server: RedisServer, make_service: Any) -> None:
    ips = [f"10.1.{i // 256}.{i % 256}" for i in range(300)]
    expected = {ip: i % 5 for i, ip in enumerate(ips)}
    with redis_server.client() as c:
        c.pipeline(
            [
                ("ZADD", f"mp:oul:{ip}", *[x for m in range(n) for x in (m, f"u{m}")])
                for ip, n in expected.items()
                if n
            ]
        )
    # Round trips are counted here, not time: the short reply timeout of the
    # failure tests (0.5 s) once ran out on a loaded machine.
    service = make_service("single", [redis_server.address], probe_interval=60,
                           reply_timeout=10.0)
    await service.execute("PING")  # connected

    # The metric counts round trips: one read event per awaited command ...
    reads = stat(redis_server, "total_reads_processed")
    for ip in ips[:30]:
        await service.zcard(f"mp:oul:{ip}")
    one_by_one = stat(redis_server, "total_reads_processed") - reads - 1  # - INFO
    assert one_by_one >= 30

    # ... while the 300 counts arrive in a handful of reads.
    reads = stat(redis_server, "total_reads_processed")
    counts = await service.online_counts(ips)
    together = stat(redis_server, "total_reads_processed") - reads - 1
    assert counts == expected
    assert together <= 5, together


@pytest_twisted.ensureDeferred
async def test_online_counts_fail_fast_when_redis_is_down(
    fresh_redis_server: RedisServer, make_service: Any
) -> None:
    service = make_service("single", [fresh_redis_server.address])
    assert await service.online_counts(["1.2.3.4"]) == {"1.2.3.4": 0}
    fresh_redis_server.stop()
    error, took = await failure_of(service.online_counts([f"10.0.0.{i}" for i in range(50)]))
    assert isinstance(error, RedisUnavailable)
    assert took < 0.5
    assert not service.healthy


@pytest_twisted.ensureDeferred
async def test_killed_and_restarted_redis_recovers(
    fresh_redis_server: RedisServer, make_service: Any
) -> None:
    server = fresh_redis_server
    server.call("ZADD", "mp:oul:1.2.3.4", 1, "a", 2, "b")
    service = make_service("single", [server.address])
    assert await service.zcard("mp:oul:1.2.3.4") == 2
    assert service.healthy

    server.kill()
    error, took = await failure_of(service.zcard("mp:oul:1.2.3.4"))
    assert isinstance(error, RedisUnavailable) and took < 0.5
    error, took = await failure_of(service.zcard("mp:oul:1.2.3.4"))
    assert isinstance(error, RedisUnavailable) and took < 0.5
    assert str(server.port) in str(error)
    assert not service.healthy
    assert str(server.port) in (service.last_error or "")

    server.start()  # same port, same data (append-only file)
    assert await eventually(lambda: service.zcard("mp:oul:1.2.3.4")) == 2
    await until(lambda: service.healthy)
    assert service.last_error is None


@pytest.mark.parametrize("password", [None, "pw-frozen"])
@pytest_twisted.ensureDeferred
async def test_frozen_redis_fails_within_the_timeouts_then_recovers(
    password: str | None, redis_factory: Callable[..., RedisServer], make_service: Any
) -> None:
    server = redis_factory(password)
    service = make_service("single", [server.address], password)
    assert await service.execute("SET", "k", "v") == "OK"

    server.freeze()
    try:
        # On the open connection: the reply timeout.
        error, took = await failure_of(service.execute("GET", "k"))
        assert isinstance(error, RedisUnavailable) and "no reply" in str(error)
        assert REPLY_TIMEOUT - 0.1 <= took <= BOUND + SLACK
        # On a new connection (the port still accepts): within the bound too.
        error, took = await failure_of(service.execute("GET", "k"))
        assert isinstance(error, RedisUnavailable)
        assert took <= BOUND + SLACK
        # Many calls at once, later: none outlives the bound.
        await sleep(0.3)
        start = time.monotonic()
        for d in [service.execute("GET", "k") for _ in range(20)]:
            error, _ = await failure_of(d)
            assert isinstance(error, RedisUnavailable)
        assert time.monotonic() - start <= BOUND + SLACK
        assert not service.healthy
    finally:
        server.thaw()
    assert await eventually(lambda: service.execute("GET", "k")) == "v"
    await until(lambda: service.healthy)


@pytest_twisted.ensureDeferred
async def test_redis_down_at_start_then_up(
    redis_factory: Callable[..., RedisServer], make_service: Any
) -> None:
    port = free_port()
    service = make_service("single", [("127.0.0.1", port)])
    error, took = await failure_of(service.zcard("k"))
    assert isinstance(error, RedisUnavailable) and "cannot connect" in str(error)
    assert took < 0.5
    await until(lambda: service.last_error is not None)
    assert not service.healthy

    server = redis_factory(port=port)
    server.call("ZADD", "k", 1, "a")
    # The probe finds it without any call being made.
    await until(lambda: service.healthy)
    assert await service.zcard("k") == 1


@pytest_twisted.ensureDeferred
async def test_stop_service_closes_its_connections(
    redis_server: RedisServer, make_service: Any
) -> None:
    service = make_service("single", [redis_server.address])
    await service.execute("PING")
    clients = int(redis_server.info("clients")["connected_clients"])
    await service.stopService()
    await until(lambda: int(redis_server.info("clients")["connected_clients"]) == clients - 1, 2.0)
    error, took = await failure_of(service.zcard("k"))
    assert isinstance(error, RedisUnavailable) and "not running" in str(error)
    assert took < 0.05
    assert not service.healthy


# ---------------------------------------------------------------------------
# cluster
# ---------------------------------------------------------------------------


def test_key_slots_agree_with_redis(redis_cluster: RedisCluster) -> None:
    rng = random.Random(7)
    keys = ["mp:oul:10.0.0.1", "{user1000}.following", "foo{}{bar}", "foo{{bar}}zap", "中文"]
    keys += ["".join(rng.choice("ab{}:x中") for _ in range(rng.randint(0, 12))) for _ in range(300)]
    node = redis_cluster.nodes[0]
    with node.client() as c:
        theirs = c.pipeline([("CLUSTER", "KEYSLOT", k) for k in keys])
    assert [key_slot(k) for k in keys] == theirs


@pytest_twisted.ensureDeferred
async def test_cluster_reads_keys_on_every_node(
    redis_cluster: RedisCluster, make_service: Any
) -> None:
    ips = [f"10.2.0.{i}" for i in range(30)]
    owners = set()
    for i, ip in enumerate(ips):
        node = redis_cluster.node_for_key(f"mp:oul:{ip}")
        owners.add(node.port)
        if i:
            node.call("ZADD", f"mp:oul:{ip}", *[x for m in range(i) for x in (m, f"u{m}")])
    assert len(owners) == 3  # the keys really are spread over the masters
    redis_cluster.node_for_key("mp:ur:u1").call("HSET", "mp:ur:u1", "1", "{}")

    service = make_service("cluster", [redis_cluster.seeds[0]])  # one seed is enough
    assert await service.online_counts(ips) == {ip: i for i, ip in enumerate(ips)}
    assert await service.hgetall("mp:ur:u1") == {"1": "{}"}
    assert await service.execute("PING") == "PONG"  # key-less: any node
    assert sorted(a[1] for a in service.router.masters()) == sorted(
        n.port for n in redis_cluster.nodes
    )
    await until(lambda: service.healthy)


@pytest_twisted.ensureDeferred
async def test_cluster_follows_moved_after_a_slot_migration(
    redis_cluster: RedisCluster, make_service: Any
) -> None:
    key = "mp:oul:10.3.0.1"
    slot = key_slot(key)
    source = redis_cluster.node_for_key(key)
    source.call("ZADD", key, 1, "a", 2, "b")
    service = make_service("cluster", redis_cluster.seeds, probe_interval=60)
    assert await service.zcard(key) == 2
    assert service.router.node_for_slot(slot) == source.address

    target = next(n for n in redis_cluster.nodes if n is not source)
    redis_cluster.migrate_slot(slot, target)
    assert service.router.node_for_slot(slot) == source.address  # stale map
    assert await service.zcard(key) == 2  # MOVED followed
    assert service.router.node_for_slot(slot) == target.address


@pytest_twisted.ensureDeferred
async def test_cluster_follows_ask_during_a_migration(
    redis_cluster: RedisCluster, make_service: Any
) -> None:
    moved, stays = "mp:oul:{10.4.0.1}", "mp:ur:{10.4.0.1}"
    slot = key_slot(moved)
    assert key_slot(stays) == slot
    source = redis_cluster.owner(slot)
    source.call("ZADD", moved, 1, "a", 2, "b", 3, "c")
    source.call("HSET", stays, "1", "x")
    service = make_service("cluster", redis_cluster.seeds, probe_interval=60)
    assert await service.zcard(moved) == 3

    target = next(n for n in redis_cluster.nodes if n is not source)
    redis_cluster.begin_migration(slot, target)
    redis_cluster.migrate_keys(slot, [moved])
    # The scenario is real: the source sends ASK, the target wants ASKING.
    with pytest.raises(RedisReplyError, match=r"^ASK "):
        source.call("ZCARD", moved)
    with pytest.raises(RedisReplyError, match=r"^MOVED "):
        target.call("ZCARD", moved)

    assert await service.zcard(moved) == 3  # via ASK + ASKING on the target
    assert await service.hgetall(stays) == {"1": "x"}  # still on the source
    assert service.router.node_for_slot(slot) == source.address  # map untouched


@pytest_twisted.ensureDeferred
async def test_cluster_with_password_and_a_dead_node(make_service: Any) -> None:
    with RedisCluster(3, password=REDIS_TEST_PASSWORD) as cluster:
        keys = {n.port: None for n in cluster.nodes}
        i = 0
        while None in keys.values():  # one key per node
            key = f"mp:oul:10.5.0.{i}"
            node = cluster.node_for_key(key)
            if keys[node.port] is None:
                keys[node.port] = key
                node.call("ZADD", key, 1, "a")
            i += 1
        service = make_service("cluster", cluster.seeds, REDIS_TEST_PASSWORD)
        counts = await service.online_counts([k[len("mp:oul:") :] for k in keys.values()])
        assert set(counts.values()) == {1}
        await until(lambda: service.healthy)

        dead = cluster.nodes[1]
        dead.kill()
        error, took = await failure_of(service.zcard(keys[dead.port]))
        assert isinstance(error, RedisUnavailable) and took < BOUND
        assert str(dead.port) in str(error)
        await until(lambda: not service.healthy)
        assert str(dead.port) in (service.last_error or "")


# ---------------------------------------------------------------------------
# sentinel
# ---------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_sentinel_resolves_the_master_and_only_it_gets_the_password(
    redis_sentinel: RedisSentinel, make_service: Any
) -> None:
    master = redis_sentinel.master
    master.call("ZADD", "mp:oul:10.6.0.1", 1, "a")
    # Premise: this sentinel would fail a client that sent it the password.
    with pytest.raises(RedisReplyError, match="AUTH"):
        SyncRedisClient(*redis_sentinel.address, password=REDIS_TEST_PASSWORD)

    service = make_service(
        "sentinel", [redis_sentinel.address], REDIS_TEST_PASSWORD, sentinel_master="mymaster"
    )
    assert await service.zcard("mp:oul:10.6.0.1") == 1
    assert service.connection.address == master.address
    assert "cmdstat_auth" in parse_info(master.call("INFO", "commandstats"))
    await until(lambda: service.healthy)


@pytest_twisted.ensureDeferred
async def test_sentinel_failover_is_followed(
    redis_sentinel: RedisSentinel,
    redis_factory: Callable[..., RedisServer],
    make_service: Any,
) -> None:
    master = redis_sentinel.master
    replica = redis_factory(REDIS_TEST_PASSWORD, replicaof=master.address)
    wait_for(
        lambda: replica.info("replication").get("master_link_status") == "up",
        10,
        "the replica to sync",
    )
    master.call("SET", "k", "v")
    # Replication is asynchronous: a failover forced before the replica has
    # the write loses it (seen under load: the replica's offset still 0). WAIT
    # returns once the replica acknowledged it, so "v" must survive.
    assert master.call("WAIT", 1, 10_000) == 1
    service = make_service(
        "sentinel", [redis_sentinel.address], REDIS_TEST_PASSWORD, sentinel_master="mymaster"
    )
    assert await service.execute("CONFIG", "GET", "port") == ["port", str(master.port)]

    assert redis_sentinel.failover() == replica.address

    async def served_by_replica() -> None:
        reply = await service.execute("CONFIG", "GET", "port")
        assert reply == ["port", str(replica.port)]

    await eventually(served_by_replica, timeout=15)
    assert await service.execute("GET", "k") == "v"
    assert service.connection.address == replica.address


@pytest_twisted.ensureDeferred
async def test_sentinel_errors_are_clear(redis_sentinel: RedisSentinel, make_service: Any) -> None:
    nobody = ("127.0.0.1", free_port())
    unknown = make_service(
        "sentinel", [redis_sentinel.address], REDIS_TEST_PASSWORD, sentinel_master="other"
    )
    error, took = await failure_of(unknown.zcard("k"))
    assert isinstance(error, RedisUnavailable) and took < BOUND
    assert "does not know master 'other'" in str(error)

    unreachable = make_service("sentinel", [nobody], None, sentinel_master="mymaster")
    error, took = await failure_of(unreachable.zcard("k"))
    assert isinstance(error, RedisUnavailable) and took < BOUND
    assert "no sentinel" in str(error) and str(nobody[1]) in str(error)
