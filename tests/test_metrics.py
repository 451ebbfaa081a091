"""``GET /metrics``: the collector on fakes, the counting Site, the config key,
and the daemon (``makeService``, real ZooKeeper, Redis and fake nodes over
TCP) scraped after real traffic, on its main port and on an admin port."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from mpush.balance import BalancePolicy, Candidate
from mpush.config import ConfigError, load_settings
from mpush.daemon.metrics import Metrics, StateCollector
from mpush.interfaces import OnlineCounts
from mpush.services.refresher import Refresher, RefreshSchedule
from mpush.services.status import Status
from mpush.web.metrics import MetricsResource
from mpush.web.root import RootResource
from mpush.web.site import AllocSite
from tests.fakes import FakeZk
from tests.fakes import Node as ZkNode
from tests.harness.redis import RedisServer
from tests.harness.stack import Stack, running_stack
from tests.harness.web import post_json, request, sleep
from tests.harness.zookeeper import ZooKeeperServer
from tests.metrics_samples import Samples, labelled, samples, scrape

# -------------------------------------------------------------------- fakes


@dataclass
class FakeSite:
    requests: dict[tuple[bytes, int], int] = field(default_factory=dict)
    head_timeouts: int = 0
    body_timeouts: int = 0
    body_refusals: int = 0
    stalled_clients: int = 0
    channels: set[object] = field(default_factory=set)


@dataclass
class FakeGateways:
    servers: dict[str, dict[str, int]] = field(default_factory=dict)

    def status(self) -> Mapping[str, Mapping[str, int]]:
        return self.servers


@dataclass
class FakeRedis:
    healthy: bool = True
    mode: str = "single"
    last_error: str | None = None
    password: str | None = None


@dataclass
class FakeDrain:
    draining: bool = False


@dataclass
class FakePush:
    outcomes: dict[str, int] = field(
        default_factory=lambda: {"success": 0, "failure": 0, "offline": 0, "timeout": 0})
    inflight: int = 0


def policy_of(*addresses: str) -> BalancePolicy:
    policy = BalancePolicy()
    policy.set_servers([Candidate(a, a.split(":")[0]) for a in addresses])
    return policy


# ------------------------------------------------------------ the collector


def test_collector_reads_the_state_at_scrape_time() -> None:
    policy = policy_of("10.0.0.1:3000", "10.0.0.2:3000")
    gateways = FakeGateways({"10.0.0.1:3001": {"connected": 2, "configured": 2, "pending": 3},
                             "10.0.0.2:3001": {"connected": 0, "configured": 2, "pending": 0}})
    zk = FakeZk(state="suspended", cs={"a": ZkNode("a", "10.0.0.1"), "b": ZkNode("b", "10.0.0.2")},
                gs={"g": ZkNode("g", "10.0.0.1", 3001)})
    redis = FakeRedis(healthy=False)
    push = FakePush(inflight=4)
    push.outcomes["offline"] = 7
    site = FakeSite(requests={(b"/", 200): 5, (b"other", 404): 2}, head_timeouts=1,
                    body_timeouts=4, stalled_clients=3)
    drain = FakeDrain()
    status = Status(zk=zk, redis=redis, gateways=gateways, policy=policy, drain=drain)
    metrics = Metrics(StateCollector(status, site=site, push=push))
    for _ in range(3):
        policy.allocate()

    found = scrape(metrics)
    assert found[("mpush_alloc_servers", ())] == 2
    allocations = labelled(found, "mpush_alloc_allocations_total", "server")
    assert sorted(allocations.values()) == [0, 3] or sorted(allocations.values()) == [1, 2]
    assert sum(allocations.values()) == 3 and set(allocations) == {"10.0.0.1:3000",
                                                                    "10.0.0.2:3000"}
    assert labelled(found, "mpush_alloc_gateway_connections", "gateway") == {
        "10.0.0.1:3001": 2, "10.0.0.2:3001": 0}
    assert labelled(found, "mpush_alloc_gateway_pending_requests", "gateway")[
        "10.0.0.1:3001"] == 3
    assert found[("mpush_alloc_gateways_known", ())] == 2
    assert found[("mpush_alloc_gateways_connected", ())] == 1
    assert found[("mpush_alloc_gateways_connections", ())] == 2
    assert found[("mpush_alloc_gateways_pending_requests", ())] == 3
    assert labelled(found, "mpush_alloc_zookeeper_state", "state") == {
        "connected": 0, "suspended": 1, "lost": 0, "stopped": 0}
    assert found[("mpush_alloc_zookeeper_connection_servers", ())] == 2
    assert found[("mpush_alloc_redis_up", ())] == 0
    assert found[("mpush_alloc_draining", ())] == 0
    assert labelled(found, "mpush_alloc_push_outcomes_total", "result") == {
        "success": 0, "failure": 0, "offline": 7, "timeout": 0}
    assert found[("mpush_alloc_push_inflight", ())] == 4
    assert found[("mpush_alloc_http_requests_total", (("path", "/"), ("status", "200")))] == 5
    assert found[("mpush_alloc_http_requests_total",
                  (("path", "other"), ("status", "404")))] == 2
    assert labelled(found, "mpush_alloc_http_refused_total", "reason") == {
        "head_timeout": 1, "body_timeout": 4, "body_too_large": 0}
    assert found[("mpush_alloc_http_stalled_clients_total", ())] == 3

    # The same collector, later: it reads, it keeps nothing.
    zk.state, redis.healthy, drain.draining = "connected", True, True
    policy.allocate()
    found = scrape(metrics)
    assert labelled(found, "mpush_alloc_zookeeper_state", "state")["connected"] == 1
    assert found[("mpush_alloc_redis_up", ())] == 1
    assert found[("mpush_alloc_draining", ())] == 1
    assert sum(labelled(found, "mpush_alloc_allocations_total", "server").values()) == 4


def test_a_server_or_gateway_that_leaves_has_no_series_left() -> None:
    policy = policy_of("10.0.0.1:3000", "10.0.0.2:3000")
    gateways = FakeGateways({"10.0.0.1:3001": {"connected": 1, "configured": 1, "pending": 0},
                             "10.0.0.2:3001": {"connected": 1, "configured": 1, "pending": 0}})
    metrics = Metrics(StateCollector(Status(policy=policy, gateways=gateways)))
    policy.allocate()
    text = metrics.exposition().decode()
    assert "10.0.0.2:3000" in text and "10.0.0.2:3001" in text

    # Churn: many servers come and go; the output is as large as the present.
    for i in range(3, 200):
        policy.set_servers([Candidate("10.0.0.1:3000", "10.0.0.1"),
                            Candidate(f"10.0.1.{i % 250}:3000", f"10.0.1.{i % 250}")])
        policy.allocate()
    policy.set_servers([Candidate("10.0.0.1:3000", "10.0.0.1")])
    del gateways.servers["10.0.0.2:3001"]
    text = metrics.exposition().decode()
    found = samples(text)
    assert set(labelled(found, "mpush_alloc_allocations_total", "server")) == {"10.0.0.1:3000"}
    assert set(labelled(found, "mpush_alloc_server_online", "server")) == {"10.0.0.1:3000"}
    assert set(labelled(found, "mpush_alloc_gateway_connections", "gateway")) == {
        "10.0.0.1:3001"}
    assert "10.0.0.2" not in text and "10.0.1." not in text
    assert found[("mpush_alloc_servers", ())] == 1


def test_a_zookeeper_state_not_known_in_advance_still_shows() -> None:
    metrics = Metrics(StateCollector(Status(zk=FakeZk(state="connecting"))))
    states = labelled(scrape(metrics), "mpush_alloc_zookeeper_state", "state")
    assert states["connecting"] == 1 and sum(states.values()) == 1


def test_nodes_left_out_of_the_zookeeper_view_are_counted_by_kind() -> None:
    zk = FakeZk(rejected={"cs": 3, "gs": 1})
    found = scrape(Metrics(StateCollector(Status(zk=zk))))
    assert found[("mpush_alloc_zookeeper_rejected_connection_servers", ())] == 3
    assert found[("mpush_alloc_zookeeper_rejected_gateway_servers", ())] == 1
    assert found[("mpush_alloc_zookeeper_connection_servers", ())] == 2  # the usable ones


def test_allocations_only_grow_across_refreshes() -> None:
    policy = policy_of("10.0.0.1:3000")
    for _ in range(5):
        policy.allocate()
    token = policy.begin_refresh()
    policy.allocate()
    policy.apply_counts(token, {"10.0.0.1": 100})  # the 5 are inside the count now
    (status,) = policy.describe()
    assert status.handed == 1 and status.allocated == 6
    policy.allocate()
    assert policy.describe()[0].allocated == 7


def test_two_daemons_do_not_share_a_registry() -> None:
    a, b = Metrics(), Metrics()
    a.root_latency.observe(0.001)
    assert scrape(a)[("mpush_alloc_root_request_duration_seconds_count", ())] == 1
    assert scrape(b)[("mpush_alloc_root_request_duration_seconds_count", ())] == 0


# ------------------------------------------------- the refresher's hooks


@dataclass
class Node:
    name: str
    host: str
    port: int = 3000
    weight: float = 1.0

    @property
    def public_host(self) -> str:
        return self.host


@dataclass
class View:
    nodes: dict[str, Node]
    initialized: bool = True
    state: str = "connected"

    def connection_servers(self) -> Mapping[str, Node]:
        return self.nodes

    def add_listener(self, cb: Callable[[str, str, Any], None]) -> None:
        pass

    def remove_listener(self, cb: Callable[[str, str, Any], None]) -> None:
        pass


@dataclass
class Cache:
    broken: bool = False

    def read_online_counts(self, ips: Iterable[str]) -> Deferred[OnlineCounts]:
        if self.broken:
            return fail(ConnectionError("redis down"))
        return succeed(OnlineCounts(dict.fromkeys(ips, 1), {}))


def test_refresh_duration_and_failures_are_recorded() -> None:
    clock = Clock()
    cache = Cache()
    refresher = Refresher(BalancePolicy(), View({"n1": Node("n1", "10.0.0.1")}), cache,
                          schedule=RefreshSchedule(interval=10), reactor=clock)
    metrics = Metrics()
    metrics.attach(refresher=refresher)
    refresher.startService()  # refreshes now
    try:
        found = scrape(metrics)
        assert found[("mpush_alloc_refresh_duration_seconds_count", ())] == 1
        assert found[("mpush_alloc_refresh_failures_total", ())] == 0
        assert found[("mpush_alloc_refreshes_total", ())] == 1
        cache.broken = True
        clock.advance(10)
        clock.advance(10)
        found = scrape(metrics)
        assert found[("mpush_alloc_refresh_duration_seconds_count", ())] == 3
        assert found[("mpush_alloc_refresh_failures_total", ())] == 2
        assert found[("mpush_alloc_servers_stale", ())] == 0
    finally:
        refresher.stopService()


# ------------------------------------------------------- the counting Site


def site_with_metrics() -> tuple[AllocSite, Metrics, StringTransport, Any]:
    policy = policy_of("10.0.0.1:3000")
    root = RootResource(policy)
    site = AllocSite(root)
    metrics = Metrics(StateCollector(Status(policy=policy)))
    metrics.attach(site=site)
    root.putChild(b"metrics", MetricsResource(metrics))
    channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
    transport = StringTransport()
    channel.makeConnection(transport)
    return site, metrics, transport, channel


def test_the_site_counts_requests_by_path_and_status_and_times_get_root() -> None:
    site, metrics, _transport, channel = site_with_metrics()
    for raw in (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
                b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
                b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n",
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
                b"GET /x%00/y HTTP/1.1\r\nHost: x\r\n\r\n",
                b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n",
                # Every user id is one label (not mounted here: 404).
                b"GET /users/u1 HTTP/1.1\r\nHost: x\r\n\r\n",
                b"GET /users/u2 HTTP/1.1\r\nHost: x\r\n\r\n",
                b"GET /cluster HTTP/1.1\r\nHost: x\r\n\r\n",
                b"GET /config HTTP/1.1\r\nHost: x\r\n\r\n"):
        channel.dataReceived(raw)
    assert site.requests == {(b"/", 200): 3, (b"/", 405): 1, (b"other", 404): 2,
                             (b"/users", 404): 2, (b"/cluster", 404): 1,
                             (b"/config", 404): 1}
    found = scrape(metrics)
    # HEAD and POST are not timed: only GET / is.
    assert found[("mpush_alloc_root_request_duration_seconds_count", ())] == 2
    assert 0 < found[("mpush_alloc_root_request_duration_seconds_sum", ())] < 1
    assert found[("mpush_alloc_http_requests_total", (("path", "/"), ("status", "200")))] == 3


def test_metrics_resource_get_head_and_other_methods() -> None:
    site, _metrics, transport, channel = site_with_metrics()
    channel.dataReceived(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    answer = transport.value()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"Content-Type: text/plain; version=0.0.4; charset=utf-8" in head
    assert b"mpush_alloc_servers 1.0" in body
    transport.clear()
    channel.dataReceived(b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    head = transport.value()
    assert head.startswith(b"HTTP/1.1 200 ") and head.endswith(b"\r\n\r\n")
    assert b"Content-Length: " in head
    transport.clear()
    channel.dataReceived(b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    assert transport.value().startswith(b"HTTP/1.1 405 ")
    assert b"Allow: GET, HEAD" in transport.value()
    transport.clear()
    channel.dataReceived(b"GET /metrics/x HTTP/1.1\r\nHost: x\r\n\r\n")
    assert transport.value().startswith(b"HTTP/1.1 404 ")
    assert site.requests[(b"/metrics", 200)] == 2
    assert site.requests[(b"other", 404)] == 1  # /metrics/x is not /metrics


# ---------------------------------------------------------------- config


def test_admin_port_config(tmp_path: Path) -> None:
    def load(text: str) -> Any:
        path = tmp_path / "m.conf"
        path.write_text(text)
        return load_settings(str(path))

    assert load("").alloc.admin_port is None
    assert load("mp.alloc.admin-port = 9998\n").alloc.admin_port == 9998
    for bad in ("0", "70000", '"x"', "9999"):  # 9999: the main port's default
        with pytest.raises(ConfigError, match=r"mp\.alloc\.admin-port"):
            load(f"mp.alloc.admin-port = {bad}\n")
    with pytest.raises(ConfigError, match="must differ"):
        load("mp.net.alloc-server-port = 8000\nmp.alloc.admin-port = 8000\n")


# ------------------------------------------------------------ the daemon


def stack_fixture(admin: bool) -> Any:
    @pytest_twisted.async_yield_fixture
    async def fixture(tmp_path: Path, zk_server: ZooKeeperServer, zk_namespace: str,
                      redis_server: RedisServer) -> AsyncIterator[Stack]:
        async with running_stack(tmp_path, zk_server.connect_string, zk_namespace,
                                 redis_server.port, admin=admin) as running:
            yield running

    return fixture


stack = stack_fixture(admin=False)
admin_stack = stack_fixture(admin=True)


async def traffic_then_scrape(stack: Stack, metrics_url: str) -> tuple[Samples, Samples]:
    """Scrape, GET / thrice, push once, scrape again: (before, after)."""
    node = await stack.node()
    node.add_user("alice")
    for _ in range(500):  # until the refresh lists the node (HEAD counts no allocation)
        if (await request("HEAD", stack.url + "/"))[0] == 200:
            break
        await sleep(0.01)
    status, headers, body = await request("GET", metrics_url)
    assert status == 200
    assert headers.getRawHeaders(b"content-type") == [b"text/plain; version=0.0.4; charset=utf-8"]
    before = samples(body.decode())
    for _ in range(3):
        assert (await request("GET", stack.url + "/"))[0] == 200
    status, answer = await post_json(stack.url + "/push", {"userId": "alice", "content": "hi"})
    assert status == 200 and answer["summary"]["success"] == 1
    status, _, body = await request("GET", metrics_url)
    assert status == 200
    return before, samples(body.decode())


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


def check_traffic_counted(stack: Stack, before: Samples, after: Samples) -> None:
    assert delta(before, after, "mpush_alloc_http_requests_total", path="/", status="200") == 3
    assert delta(before, after, "mpush_alloc_http_requests_total",
                 path="/push", status="200") == 1
    assert delta(before, after, "mpush_alloc_root_request_duration_seconds_count") == 3
    assert delta(before, after, "mpush_alloc_push_outcomes_total", result="success") == 1
    assert delta(before, after, "mpush_alloc_push_duration_seconds_count") == 1
    assert sum(labelled(after, "mpush_alloc_allocations_total", "server").values()) - sum(
        labelled(before, "mpush_alloc_allocations_total", "server").values()) == 3
    assert after[("mpush_alloc_servers", ())] == 1
    assert after[("mpush_alloc_gateways_known", ())] == 1
    assert after[("mpush_alloc_gateways_connections", ())] >= 1
    assert labelled(after, "mpush_alloc_zookeeper_state", "state")["connected"] == 1
    assert after[("mpush_alloc_redis_up", ())] == 1
    assert after[("mpush_alloc_refresh_duration_seconds_count", ())] >= 1
    assert after[("mpush_alloc_draining", ())] == 0


@pytest.mark.integration
@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_the_daemon_counts_real_traffic(stack: Stack) -> None:
    before, after = await traffic_then_scrape(stack, stack.url + "/metrics")
    check_traffic_counted(stack, before, after)
    # The first scrape is counted too, once answered.
    assert delta(before, after, "mpush_alloc_http_requests_total",
                 path="/metrics", status="200") == 1


@pytest.mark.integration
@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_metrics_on_the_admin_port_only(admin_stack: Stack) -> None:
    stack = admin_stack
    admin = f"http://127.0.0.1:{stack.admin_port}"
    before, after = await traffic_then_scrape(stack, admin + "/metrics")
    check_traffic_counted(stack, before, after)
    # Not on the main port; nothing else on the admin port.
    assert (await request("GET", stack.url + "/metrics"))[0] == 404
    assert (await request("GET", admin + "/"))[0] == 404
    assert (await request("GET", admin + "/push"))[0] == 404
    assert (await request("POST", admin + "/metrics", b""))[0] == 405
