"""``GET /ws``: the WebSocket servers of ``/cluster/ws``, least loaded first.

Unit tests (fake view, in-memory HTTP) of the resource, the refresher of
kind ``ws`` and what ``/health`` and ``/metrics`` show of it; then the whole
daemon against real ZooKeeper and Redis, with nodes registered the Java way.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted

from mpush.balance import BalancePolicy
from mpush.daemon.metrics import Metrics, StateCollector
from mpush.services.refresher import Refresher, RefreshSchedule
from mpush.web.root import RootResource, WebsocketResource
from mpush.web.site import AllocSite
from tests.fakes import Cache, Fakes, FixedAllocator, Node, View
from tests.harness.redis import RedisServer
from tests.harness.registry import NodeRegistrar
from tests.harness.stack import Stack, running_stack
from tests.harness.web import request, sleep
from tests.harness.zookeeper import ZooKeeperServer
from tests.http_exchange import request as exchange
from tests.http_exchange import split
from tests.log_capture import log_lines
from tests.metrics_samples import scrape

# -- the resource -------------------------------------------------------------------


def ws_site(ws: FixedAllocator, root: FixedAllocator | None = None,
            retry_after: int = 5) -> AllocSite:
    """Mounted as makeService mounts it: ``/ws`` under the allocation root."""
    top = RootResource(root or FixedAllocator(b"10.0.0.1:3000"))
    top.putChild(b"ws", WebsocketResource(ws, retry_after=retry_after))
    return AllocSite(top)


def ask(site: AllocSite, method: bytes, path: bytes) -> tuple[int, dict[str, str], bytes]:
    return split(exchange(site, method + b" " + path + b" HTTP/1.1\r\nHost: x\r\n"
                          b"Content-Length: 0\r\n\r\n"))


def test_get_ws_answers_its_own_policy_and_counts_there_only() -> None:
    ws, cs = FixedAllocator(b"10.0.0.1:8080,10.0.0.2:8080"), FixedAllocator(b"10.0.0.1:3000")
    site = ws_site(ws, cs)
    status, headers, body = ask(site, b"GET", b"/ws")
    assert (status, body) == (200, b"10.0.0.1:8080,10.0.0.2:8080")
    assert headers["content-type"] == "text/plain; charset=utf-8"
    assert headers["content-length"] == str(len(body))
    assert (ws.allocations, cs.allocations) == (1, 0)
    assert ask(site, b"GET", b"/")[2] == b"10.0.0.1:3000"
    assert (ws.allocations, cs.allocations) == (1, 1)


def test_head_ws_counts_nothing_and_sends_no_body() -> None:
    ws = FixedAllocator(b"10.0.0.1:8080")
    status, headers, body = ask(ws_site(ws), b"HEAD", b"/ws")
    assert (status, headers["content-length"], body) == (200, "13", b"")
    assert ws.allocations == 0


def test_no_websocket_server_known_is_503_with_retry_after() -> None:
    for method in (b"GET", b"HEAD"):
        status, headers, body = ask(ws_site(FixedAllocator(None), retry_after=7), method, b"/ws")
        assert status == 503, method
        assert headers["retry-after"] == "7" and headers["content-type"] == "application/json"
        if method == b"GET":
            assert json.loads(body) == {"error": "no WebSocket server known yet", "status": 503}


def test_ws_is_an_end_point_and_takes_get_and_head_only() -> None:
    ws = FixedAllocator(b"10.0.0.1:8080")
    site = ws_site(ws)
    for path in (b"/ws/", b"/ws/x", b"/ws//"):
        status, headers, _ = ask(site, b"GET", path)
        assert status == 404 and headers["content-type"] == "application/json", path
    for method in (b"POST", b"PUT", b"DELETE", b"OPTIONS"):
        status, headers, _ = ask(site, method, b"/ws")
        assert (status, headers["allow"]) == (405, "GET, HEAD"), method
    assert ws.allocations == 0
    assert site.requests[(b"/ws", 405)] == 4  # counted under its own path in /metrics


# -- the refresher of kind ws ------------------------------------------------------------


def ws_refresher(view: View, cache: Cache, hold: float = 0.0
                 ) -> tuple[Refresher, BalancePolicy, Any]:
    """A started ws refresher on a Clock; ``hold``: its mass-drop hold (0: none)."""
    from twisted.internet.task import Clock

    clock, policy = Clock(), BalancePolicy()
    schedule = RefreshSchedule(interval=30.0, change_delay=1.0, mass_drop_hold=hold)
    refresher = Refresher(policy, view, cache, schedule=schedule, reactor=clock, kind="ws")
    refresher.startService()
    return refresher, policy, clock


def test_a_ws_refresher_serves_the_websocket_servers_by_their_ips_count() -> None:
    view = View(Node("cs1", "10.0.0.1"), Node("cs2", "10.0.0.2"))
    view.ws_nodes = {"ws1": Node("ws1", "10.0.0.1", 8080), "ws2": Node("ws2", "10.0.0.2", 8080)}
    # One mp:oul:<ip> per server process: its TCP and its websocket users together.
    cache = Cache({"10.0.0.1": 9, "10.0.0.2": 4})
    _, policy, _ = ws_refresher(view, cache)
    assert policy.body == b"10.0.0.2:8080,10.0.0.1:8080"
    assert cache.calls == [["10.0.0.1", "10.0.0.2"]]


def test_a_ws_refresher_follows_ws_changes_only() -> None:
    view = View(Node("cs1", "10.0.0.1"))
    cache = Cache({"10.0.0.1": 1, "10.0.0.3": 0})
    refresher, policy, clock = ws_refresher(view, cache)
    assert policy.body is None  # no WebSocket server yet: 503
    view.set(Node("cs1", "10.0.0.1"), Node("cs3", "10.0.0.3"))  # a /cluster/cs change
    clock.advance(1.0)
    assert policy.body is None and len(cache.calls) == 0
    view.set_ws(Node("ws1", "10.0.0.1", 8080), Node("ws3", "10.0.0.3", 8080))
    clock.advance(1.0)
    assert policy.body == b"10.0.0.3:8080,10.0.0.1:8080"
    view.set_ws(Node("ws1", "10.0.0.1", 8080))
    clock.advance(1.0)
    assert policy.body == b"10.0.0.1:8080"
    view.set_ws()  # all gone: the last list stays (as GET /), flagged stale
    clock.advance(1.0)
    assert policy.body == b"10.0.0.1:8080" and refresher.stale


def test_a_ws_refresher_holds_a_mass_drop_of_websocket_servers() -> None:
    view = View()
    view.set_ws(*(Node(f"ws{n}", f"10.0.0.{n}", 8080) for n in (1, 2, 3)))
    cache = Cache({"10.0.0.1": 1, "10.0.0.2": 2, "10.0.0.3": 3})
    with log_lines("mpush.services.mass_drop") as lines:
        refresher, policy, clock = ws_refresher(view, cache, hold=30.0)
        clock.advance(1.0)
        everyone = b"10.0.0.1:8080,10.0.0.2:8080,10.0.0.3:8080"
        assert policy.body == everyone
        clock.advance(5.0)  # past the burst window: the next change stands alone
        view.set_ws(Node("ws1", "10.0.0.1", 8080))  # two of three gone at once
        clock.advance(1.0)
        assert policy.body == everyone and len(refresher.held) == 2
        clock.advance(30.0)
        assert policy.body == b"10.0.0.1:8080" and not refresher.held
    assert len(lines) == 2 and "2 of 3 WebSocket servers" in lines[0], lines


def test_a_ws_refreshers_redis_lines_say_which_list() -> None:
    view = View()
    view.ws_nodes = {"ws1": Node("ws1", "10.0.0.1", 8080)}
    cache = Cache()
    cache.error = RuntimeError("connection refused")
    with log_lines("mpush.services.refresher") as lines:
        refresher, _, _ = ws_refresher(view, cache)
        cache.error = None
        refresher.refresh()
    assert lines == ["cannot read online counts from Redis for GET /ws (connection refused);"
                     " keeping the last known order and counting handouts",
                     "online counts from Redis are back for GET /ws"]


def test_a_refresher_refuses_a_kind_it_cannot_serve() -> None:
    with pytest.raises(ValueError, match="kind must be one of"):
        Refresher(BalancePolicy(), View(), Cache(), kind="gs")


# -- /health and /metrics ------------------------------------------------------------------


def test_no_websocket_server_is_fine_a_stale_list_is_degraded() -> None:
    fakes = Fakes()
    fakes.ws_policy.addresses = ()
    fakes.zk.ws = {}
    _, health = fakes.site()
    report = health.report()
    assert report["status"] == "ok" and report["websocket"]["serving"] is False
    assert report["websocket"]["servers"] == 0 and report["zookeeper"]["websocketServers"] == 0
    fakes.ws_refresher.stale = True
    report = health.report()
    assert (report["status"], report["reasons"]) == ("degraded", ["WebSocket server list stale"])


def test_metrics_show_the_websocket_servers() -> None:
    fakes = Fakes()
    fakes.zk.rejected = {"ws": 2}
    fakes.ws_refresher.stale = True
    found = scrape(Metrics(StateCollector(fakes.status())))
    assert found[("mpush_alloc_websocket_servers", ())] == 1
    assert found[("mpush_alloc_zookeeper_websocket_servers", ())] == 1
    assert found[("mpush_alloc_zookeeper_rejected_websocket_servers", ())] == 2
    assert found[("mpush_alloc_websocket_refreshes_total", ())] == 7
    assert found[("mpush_alloc_websocket_refresh_failures_total", ())] == 0
    assert found[("mpush_alloc_websocket_servers_stale", ())] == 1
    assert found[("mpush_alloc_websocket_servers_held", ())] == 0


def test_metrics_show_websocket_servers_held_after_a_mass_drop() -> None:
    # /health says so (degraded); /metrics must too, as for GET /'s servers.
    fakes = Fakes()
    fakes.ws_refresher.held = {"10.0.0.1:8080": 30.0, "10.0.0.2:8080": 30.0}
    fakes.ws_refresher.holds_started = 1
    found = scrape(Metrics(StateCollector(fakes.status())))
    assert found[("mpush_alloc_websocket_servers_held", ())] == 2
    assert found[("mpush_alloc_websocket_mass_drop_holds_total", ())] == 1


# -- the daemon, real ZooKeeper and Redis ------------------------------------------------------


def zadd(server: RedisServer, ip: str, users: int) -> None:
    """``mp:oul:<ip>`` as the Java UserManager writes it (score 0 per user)."""
    server.call("DEL", f"mp:oul:{ip}")
    server.call("ZADD", f"mp:oul:{ip}", *[x for u in range(users) for x in (0, f"u{u}")])


async def cluster(stack: Stack) -> dict[str, Any]:
    status, _, body = await request("GET", stack.url + "/cluster")
    assert status == 200
    return json.loads(body)  # type: ignore[no-any-return]


async def poll_cluster(stack: Stack, predicate: Callable[[dict[str, Any]], bool],
                       what: str, timeout: float = 15.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        doc = await cluster(stack)
        if predicate(doc):
            return doc
        assert time.monotonic() < deadline, f"/cluster never showed {what}: {doc}"
        await sleep(0.05)


def ws_online(doc: dict[str, Any]) -> dict[str, float]:
    return {s["address"]: s["online"] for s in doc["websocket"]["servers"]}


@pytest.mark.integration
@pytest.mark.timeout(90)
@pytest_twisted.ensureDeferred
async def test_get_ws_follows_zookeeper_and_the_online_counts(
        tmp_path: Path, zk_server: ZooKeeperServer, zk_namespace: str,
        redis_server: RedisServer, make_registrar: Callable[..., NodeRegistrar]) -> None:
    counts = {"127.0.0.2": 5, "127.0.0.3": 1, "127.0.0.4": 3}
    for ip, users in counts.items():
        zadd(redis_server, ip, users)
    # Removals apply at once here: holding mass drops is tested in test_mass_drop.py.
    async with running_stack(tmp_path, zk_server.connect_string, zk_namespace,
                             redis_server.port, alloc_extra="mass-drop-hold = 0") as stack:
        registrar = make_registrar(zk_server.connect_string, namespace=zk_namespace)
        registrar.register("cs", "127.0.0.3", 3000)
        await poll_cluster(stack, lambda d: d["serving"], "the connection server")
        # A connection server but no WebSocket server: / serves, /ws is 503.
        status, headers, body = await request("GET", stack.url + "/ws")
        assert status == 503 and headers.getRawHeaders("retry-after") == ["5"]
        assert json.loads(body)["error"] == "no WebSocket server known yet"
        assert (await request("GET", stack.url + "/"))[2] == b"127.0.0.3:3000"

        paths = {ip: registrar.register("ws", ip, 8080) for ip in counts}
        doc = await poll_cluster(stack, lambda d: ws_online(d) == {
            f"{ip}:8080": float(n) for ip, n in counts.items()}, "the websocket counts")
        # The WebSocket server of 127.0.0.3 reads the same mp:oul set as its connection server.
        assert doc["connectionServers"][0]["online"] == 1.0
        assert doc["zookeeper"]["websocketServers"] == 3

        for _ in range(5):
            status, headers, body = await request("HEAD", stack.url + "/ws")
            assert (status, body) == (200, b"")
            assert headers.getRawHeaders("content-length") == ["44"]
        status, headers, body = await request("GET", stack.url + "/ws")
        assert status == 200 and body == b"127.0.0.3:8080,127.0.0.4:8080,127.0.0.2:8080"
        assert headers.getRawHeaders("content-type") == ["text/plain; charset=utf-8"]
        for _ in range(2):
            assert (await request("GET", stack.url + "/ws"))[0] == 200
        doc = await cluster(stack)
        # Three GETs counted on the websocket list, none from the HEADs, none on GET /'s.
        assert sum(s["allocated"] for s in doc["websocket"]["servers"]) == 3
        assert [s["allocated"] for s in doc["connectionServers"]] == [1]

        # A WebSocket server leaves ZooKeeper: it leaves the answer.
        registrar.unregister(paths["127.0.0.3"])
        await poll_cluster(stack, lambda d: len(ws_online(d)) == 2, "the removal")
        assert (await request("GET", stack.url + "/ws"))[2] == b"127.0.0.4:8080,127.0.0.2:8080"

        # All gone: the last list stays (never from servers to none), flagged stale.
        for ip in ("127.0.0.2", "127.0.0.4"):
            registrar.unregister(paths[ip])
        await poll_cluster(stack, lambda d: d["websocket"]["lastRefresh"]["stale"], "stale")
        assert (await request("GET", stack.url + "/ws"))[2] == b"127.0.0.4:8080,127.0.0.2:8080"
        _, _, body = await request("GET", stack.url + "/health")
        assert "WebSocket server list stale" in json.loads(body)["reasons"]
