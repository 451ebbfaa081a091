"""Online counts at scale and with bad keys: read in pipelined batches, the
reactor free between two, and a key of the wrong type costing only its own
server's count. Real Redis (single and cluster) for the reads; the
refresher's batching on fakes and a ``task.Clock``; the per-server series
of ``/metrics`` bounded whatever the number of servers."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from twisted.internet.task import Clock
from twisted.logger import formatEvent

from mpush.balance import BalancePolicy, Candidate
from mpush.cluster.redis import RedisUnavailable
from mpush.cluster.redis_cluster import key_slot
from mpush.daemon.metrics import Metrics, StateCollector
from mpush.daemon.server_series import SERVER_SERIES_LIMIT
from mpush.interfaces import OnlineCounts
from mpush.services.refresher import Refresher, RefreshSchedule
from mpush.services.status import Status
from tests.fakes import Cache, Node, View
from tests.fixtures_redis import BOUND, SLACK, failure_of
from tests.harness.redis import RedisCluster, RedisServer, parse_info
from tests.metrics_samples import labelled, samples, scrape

BAD = "10.7.0.2"


def refresher_messages(events: list[dict[str, Any]]) -> list[str]:
    return [formatEvent(e) for e in events
            if str(e.get("log_namespace", "")).startswith("mpush.services.refresher")]


def zadd(server: RedisServer, ip: str, users: int) -> None:
    server.call("DEL", f"mp:oul:{ip}")
    server.call("ZADD", f"mp:oul:{ip}", *[x for u in range(users) for x in (0, f"u{u}")])


def online(policy: BalancePolicy) -> dict[str, float]:
    return {s.ip: s.online for s in policy.describe()}


# ------------------------------------------------------------ real Redis


@pytest.mark.integration
@pytest_twisted.ensureDeferred
async def test_a_key_of_the_wrong_type_costs_only_its_own_count(
    redis_server: RedisServer, make_service: Any, log_events: list[dict[str, Any]],
) -> None:
    for ip, users in (("10.7.0.1", 3), (BAD, 5), ("10.7.0.3", 1)):
        zadd(redis_server, ip, users)
    view = View(*(Node(f"n{i}", f"10.7.0.{i}") for i in (1, 2, 3)))
    policy = BalancePolicy()
    refresher = Refresher(policy, view, make_service("single", [redis_server.address]),
                          schedule=RefreshSchedule(interval=3600))
    metrics = Metrics()
    metrics.attach(refresher=refresher)
    refresher.startService()
    try:
        await refresher.refresh()
        assert online(policy) == {"10.7.0.1": 3, BAD: 5, "10.7.0.3": 1}

        redis_server.call("DEL", f"mp:oul:{BAD}")
        redis_server.call("SET", f"mp:oul:{BAD}", "garbage")
        zadd(redis_server, "10.7.0.1", 7)
        zadd(redis_server, "10.7.0.3", 2)
        await refresher.refresh()
        await refresher.refresh()
        # Every other count is fresh; the bad key's server keeps its last one.
        assert online(policy) == {"10.7.0.1": 7, BAD: 5, "10.7.0.3": 2}
        assert refresher.failures == 0 and refresher.last_error is None
        assert list(refresher.unreadable) == [BAD]
        assert "WRONGTYPE" in refresher.unreadable[BAD]
        found = scrape(metrics)
        assert found[("mpush_alloc_unreadable_count_keys", ())] == 1
        assert found[("mpush_alloc_refresh_failures_total", ())] == 0
        about_it = [m for m in refresher_messages(log_events) if f"mp:oul:{BAD}" in m]
        assert len(about_it) == 1, about_it  # once, with the key, over two refreshes
        assert "WRONGTYPE" in about_it[0]
        assert not any("from Redis" in m for m in refresher_messages(log_events))

        zadd(redis_server, BAD, 4)
        await refresher.refresh()
        assert online(policy) == {"10.7.0.1": 7, BAD: 4, "10.7.0.3": 2}
        assert refresher.unreadable == {}
        assert any("readable again" in m for m in refresher_messages(log_events))
    finally:
        refresher.stopService()


@pytest.mark.integration
@pytest_twisted.ensureDeferred
async def test_cluster_counts_come_in_one_pipeline_per_master_and_follow_a_moved_slot(
    redis_cluster: RedisCluster, make_service: Any,
) -> None:
    ips = [f"10.8.0.{i}" for i in range(60)]
    bad = ips[2]
    for i, ip in enumerate(ips):
        key = f"mp:oul:{ip}"
        if ip == bad:
            redis_cluster.node_for_key(key).call("SET", key, "garbage")
        elif i % 4:
            redis_cluster.node_for_key(key).call("ZADD", key, *[x for u in range(i % 4)
                                                               for x in (0, f"u{u}")])
    service = make_service("cluster", [redis_cluster.seeds[0]], probe_interval=60)
    await service.read_online_counts(ips[:1])  # the slot map is loaded

    moved = f"mp:oul:{ips[5]}"
    source = redis_cluster.node_for_key(moved)
    target = next(n for n in redis_cluster.nodes if n is not source)
    redis_cluster.migrate_slot(key_slot(moved), target)  # the service's map is stale
    zcards = {n.port: _zcard_calls(n) for n in redis_cluster.nodes}
    reads = {n.port: _reads(n) for n in redis_cluster.nodes}
    read = await service.read_online_counts(ips)
    reads = {n.port: _reads(n) - reads[n.port] for n in redis_cluster.nodes}

    assert read.counts == {ip: i % 4 for i, ip in enumerate(ips) if ip != bad}
    assert list(read.unreadable) == [bad] and "WRONGTYPE" in read.unreadable[bad]
    assert service.router.node_for_slot(key_slot(moved)) == target.address
    # Each key read once, where it lives; each master in one round trip, not
    # one per key (~20): at most the pipeline, the moved key again, the slot
    # map reload a MOVED asks for, and the INFO that measures.
    assert sum(_zcard_calls(n) - zcards[n.port] for n in redis_cluster.nodes) == len(ips)
    assert max(reads.values()) <= 4, reads


def _reads(node: RedisServer) -> int:
    return int(node.info("stats")["total_reads_processed"])


def _zcard_calls(node: RedisServer) -> int:
    stats = parse_info(node.call("INFO", "commandstats"))
    entry = stats.get("cmdstat_zcard", "calls=0")
    return int(entry.split(",")[0].split("=")[1])


@pytest.mark.integration
@pytest_twisted.ensureDeferred
async def test_a_frozen_redis_fails_a_pipelined_read_within_the_reply_timeout(
    fresh_redis_server: RedisServer, make_service: Any,
) -> None:
    service = make_service("single", [fresh_redis_server.address], probe_interval=60)
    zadd(fresh_redis_server, "10.9.0.1", 2)
    assert (await service.read_online_counts(["10.9.0.1"])).counts == {"10.9.0.1": 2}
    fresh_redis_server.freeze()
    try:
        error, took = await failure_of(service.read_online_counts(["10.9.0.1", "10.9.0.2"]))
    finally:
        fresh_redis_server.thaw()
    assert isinstance(error, RedisUnavailable)
    assert "no reply" in str(error) and took < BOUND + SLACK
    # The connection that timed out is not reused: the next read is right.
    read = await service.read_online_counts(["10.9.0.1", "10.9.0.2"])
    assert read.counts == {"10.9.0.1": 2, "10.9.0.2": 0}


# ------------------------------------------------------------ batches, on fakes


def test_counts_are_read_in_batches_with_the_reactor_free_between_them() -> None:
    clock = Clock()
    ips = [f"10.6.0.{i}" for i in range(1, 6)]
    cache = Cache()
    cache.manual = True
    policy = BalancePolicy()
    refresher = Refresher(policy, View(*(Node(ip, ip) for ip in ips)), cache,
                          schedule=RefreshSchedule(interval=60, batch=2), reactor=clock)
    refresher.startService()
    try:
        for n, batch in enumerate((ips[:2], ips[2:4], ips[4:]), 1):
            # One round trip per batch, the next one asked only on a later turn.
            assert cache.calls[-1] == batch and len(cache.calls) == n
            cache.pending[-1].callback(OnlineCounts({ip: ips.index(ip) for ip in batch}, {}))
            assert len(cache.calls) == n
            clock.advance(0)
        assert len(cache.calls) == 3 and refresher.last_success == 0.0
        assert online(policy) == {ip: i for i, ip in enumerate(ips)}
    finally:
        refresher.stopService()


def test_stopping_between_two_batches_reads_no_more() -> None:
    clock = Clock()
    ips = [f"10.6.1.{i}" for i in range(1, 6)]
    cache = Cache(dict.fromkeys(ips, 1))
    refresher = Refresher(BalancePolicy(), View(*(Node(ip, ip) for ip in ips)), cache,
                          schedule=RefreshSchedule(interval=60, batch=2), reactor=clock)
    refresher.startService()
    refresher.stopService()
    clock.advance(0)
    assert cache.calls == [ips[:2]]
    assert refresher.failures == 0 and refresher.last_success is None
    assert not clock.getDelayedCalls()


def test_unreadable_keys_are_logged_once_each_and_at_most_ten_a_refresh(
    log_events: list[dict[str, Any]],
) -> None:
    ips = [f"10.6.2.{i}" for i in range(1, 31)]
    cache = Cache(dict.fromkeys(ips, 1))
    cache.unreadable = {ip: "WRONGTYPE Operation against a key" for ip in ips[:25]}
    clock = Clock()
    refresher = Refresher(BalancePolicy(), View(*(Node(ip, ip) for ip in ips)), cache,
                          schedule=RefreshSchedule(interval=60), reactor=clock)
    refresher.startService()
    clock.advance(60)
    refresher.stopService()
    messages = refresher_messages(log_events)
    assert len([m for m in messages if "mp:oul:10.6.2." in m]) == 10
    assert any("15 more" in m for m in messages)
    assert len(refresher.unreadable) == 25 and refresher.failures == 0


def test_a_server_whose_count_is_unreadable_keeps_its_count_and_handouts() -> None:
    policy = BalancePolicy()
    policy.set_servers([Candidate("10.5.0.1:3000", "10.5.0.1"),
                        Candidate("10.5.0.2:3000", "10.5.0.2")])
    policy.apply_counts(policy.begin_refresh(), {"10.5.0.1": 4, "10.5.0.2": 6})
    for _ in range(3):
        policy.allocate()  # all to 10.5.0.1 (4 -> 7)
    token = policy.begin_refresh()
    policy.apply_counts(token, {"10.5.0.2": 1}, unreadable={"10.5.0.1"})
    rows = {s.ip: (s.online, s.handed) for s in policy.describe()}
    assert rows == {"10.5.0.1": (4, 3), "10.5.0.2": (1, 0)}


# ------------------------------------------------------------ /metrics and the view, at scale


def test_per_server_series_are_bounded_to_the_head_of_the_list() -> None:
    policy = BalancePolicy()
    ips = [f"10.4.{i // 250}.{i % 250}" for i in range(SERVER_SERIES_LIMIT + 500)]
    policy.set_servers([Candidate(f"{ip}:3000", ip) for ip in ips])
    policy.apply_counts(policy.begin_refresh(), {ip: i for i, ip in enumerate(ips)})
    found = scrape(Metrics(StateCollector(Status(policy=policy))))
    for name in ("mpush_alloc_allocations_total", "mpush_alloc_server_online"):
        series = labelled(found, name, "server")
        # The least loaded first: the servers GET / hands out now.
        assert set(series) == {f"{ip}:3000" for ip in ips[:SERVER_SERIES_LIMIT]}
    assert labelled(found, "mpush_alloc_server_online", "server")["10.4.0.7:3000"] == 7
    assert found[("mpush_alloc_server_series_omitted", ())] == 500
    assert found[("mpush_alloc_servers", ())] == SERVER_SERIES_LIMIT + 500


class CountingPolicy(BalancePolicy):
    def __init__(self) -> None:
        super().__init__()
        self.sets = 0

    def set_servers(self, candidates: Any) -> None:
        self.sets += 1
        super().set_servers(candidates)


def test_an_unchanged_view_is_not_given_to_the_policy_again() -> None:
    clock = Clock()
    nodes = [Node(f"n{i}", f"10.3.0.{i}") for i in range(1, 4)]
    view = View(*nodes)
    policy = CountingPolicy()
    refresher = Refresher(policy, view, Cache(missing=0),
                          schedule=RefreshSchedule(interval=1), reactor=clock)
    refresher.startService()
    try:
        clock.advance(1)
        clock.advance(1)
        assert policy.sets == 1 and refresher.refreshes == 3
        view.nodes["n9"] = Node("n9", "10.3.0.9")  # a change, even without an event
        clock.advance(1)
        assert policy.sets == 2
        assert {c.ip for c in policy.servers} == {"10.3.0.1", "10.3.0.2", "10.3.0.3", "10.3.0.9"}
    finally:
        refresher.stopService()


def test_a_large_metrics_text_is_made_at_most_once_per_period() -> None:
    clock = Clock()
    policy = BalancePolicy()
    ips = [f"10.2.{i // 250}.{i % 250}" for i in range(SERVER_SERIES_LIMIT)]
    policy.set_servers([Candidate(f"{ip}:3000", ip) for ip in ips])
    metrics = Metrics(StateCollector(Status(policy=policy)), clock=clock)
    first = metrics.exposition()
    assert len(first) >= metrics.reuse_from
    policy.allocate()  # a change the next text would show
    clock.advance(metrics.reuse_for / 2)
    assert metrics.exposition() is first  # scrapers in a loop: one rendering
    clock.advance(metrics.reuse_for / 2)
    again = metrics.exposition()
    assert again != first
    assert labelled(samples(again.decode()), "mpush_alloc_allocations_total",
                    "server")[f"{ips[0]}:3000"] == 1


def test_a_small_metrics_text_is_always_made_anew() -> None:
    clock = Clock()
    policy = BalancePolicy()
    policy.set_servers([Candidate("10.2.9.1:3000", "10.2.9.1")])
    metrics = Metrics(StateCollector(Status(policy=policy)), clock=clock)
    first = metrics.exposition()
    policy.allocate()
    assert metrics.exposition() != first  # same instant, and yet fresh
