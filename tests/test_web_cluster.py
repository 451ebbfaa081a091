"""``GET /cluster``: unit tests on the status fakes and a real balance policy through a
real Site (StringTransport), and end-to-end tests with the daemon's service tree, real
ZooKeeper and Redis, and fake mpush nodes."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.address import IPv4Address

from mpush.balance import BalancePolicy, Candidate
from mpush.web.cluster import ClusterResource, timestamp
from mpush.web.push_access import PushAccess
from mpush.web.root import RootResource
from mpush.web.site import AllocSite
from tests.fakes import TOKEN, Fakes, Node
from tests.harness.redis import RedisServer
from tests.harness.stack import Stack, running_stack
from tests.harness.web import request, sleep
from tests.harness.zookeeper import ZooKeeperServer
from tests.http_exchange import connect, split

LOOPBACK = ("127.0.0.1/32", "::1/128")


def balanced_fakes() -> Fakes:
    """The status fakes with a real policy: 10.0.0.6 (2 online) before 10.0.0.5 (10, weight 2)."""
    fakes = Fakes()
    policy = BalancePolicy()
    policy.set_servers([Candidate("10.0.0.5:3000", "10.0.0.5", 2.0),
                        Candidate("10.0.0.6:3000", "10.0.0.6")])
    policy.apply_counts(policy.begin_refresh(), {"10.0.0.5": 10, "10.0.0.6": 2})
    fakes.policy = policy  # type: ignore[assignment]
    # GET /ws: one WebSocket server on 10.0.0.5, the same count key as its connection server.
    ws_policy = BalancePolicy()
    ws_policy.set_servers([Candidate("10.0.0.5:8080", "10.0.0.5")])
    ws_policy.apply_counts(ws_policy.begin_refresh(), {"10.0.0.5": 10})
    fakes.ws_policy = ws_policy  # type: ignore[assignment]
    fakes.zk.cs = {"cs1": Node("cs1", "10.0.0.5", since=50.0),
                   "cs2": Node("cs2", "10.0.0.6", since=60.25)}
    return fakes


def cluster_site(fakes: Fakes, *, token: str | None = None,
                 allow: tuple[str, ...] = LOOPBACK) -> AllocSite:
    root = RootResource(fakes.policy)
    root.putChild(b"cluster", ClusterResource(fakes.status(), PushAccess(token=token, allow=allow)))
    return AllocSite(root)


def get(site: AllocSite, path: bytes = b"/cluster", method: bytes = b"GET",
        peer: str = "127.0.0.1", **headers: str) -> tuple[int, dict[str, str], Any]:
    exchange = connect(site, IPv4Address("TCP", peer, 40000))
    lines = [method + b" " + path + b" HTTP/1.1", b"Host: 127.0.0.1:9999"]
    lines += [f"{k}: {v}".encode() for k, v in headers.items()]
    exchange.feed(b"\r\n".join(lines) + b"\r\n\r\n")
    status, head, body = split(exchange.raw)
    is_json = head.get("content-type") == "application/json" and body
    return status, head, json.loads(body) if is_json else body


# -- unit -------------------------------------------------------------------------------


def test_the_document_renders_the_snapshot_in_full() -> None:
    fakes = balanced_fakes()
    fakes.zk.last_error = None
    fakes.gateways.servers["10.0.0.6:3001"]["last_error"] = "connection lost: reset"
    # Held after a mass drop, its hold ending at 112.5 (the status clock reads 100).
    fakes.refresher.held = {"10.0.0.5:3000": 112.5}
    site = cluster_site(fakes)
    assert get(site, b"/")[1]["content-type"] == "text/plain; charset=utf-8"  # one handout
    status, headers, doc = get(site)
    assert status == 200
    assert (headers["content-type"], headers["cache-control"]) == ("application/json", "no-store")
    assert doc == {
        "draining": False,
        "serving": True,
        "connectionServers": [
            {"position": 1, "address": "10.0.0.6:3000", "publicIp": "10.0.0.6", "weight": 1.0,
             "online": 2.0, "handedOut": 1, "load": 3.0, "allocated": 1, "sharedHandedOut": 0,
             "registeredAddress": "10.0.0.6:3000", "zkNodes": ["cs2"],
             "knownSince": "1970-01-01T00:01:00.250Z", "held": False, "heldSecondsLeft": None},
            {"position": 2, "address": "10.0.0.5:3000", "publicIp": "10.0.0.5", "weight": 2.0,
             "online": 10.0, "handedOut": 0, "load": 5.0, "allocated": 0, "sharedHandedOut": 0,
             "registeredAddress": "10.0.0.5:3000", "zkNodes": ["cs1"],
             "knownSince": "1970-01-01T00:00:50.000Z", "held": True, "heldSecondsLeft": 12.5},
        ],
        "websocket": {
            "servers": [
                {"position": 1, "address": "10.0.0.5:8080", "publicIp": "10.0.0.5",
                 "weight": 1.0, "online": 10.0, "handedOut": 0, "load": 10.0, "allocated": 0,
                 "sharedHandedOut": 0, "registeredAddress": "10.0.0.5:8080", "zkNodes": ["ws1"],
                 "knownSince": "1970-01-01T00:01:10.000Z", "held": False,
                 "heldSecondsLeft": None},
            ],
            "serving": True,
            "lastRefresh": {"at": "1970-01-01T00:01:30.000Z", "ok": True, "ageSeconds": 10.0,
                            "error": None, "stale": False, "refreshes": 7, "failures": 0},
        },
        "gatewayServers": [
            {"address": "10.0.0.5:3001", "connections": 2, "configuredConnections": 2,
             "pending": 3, "unanswering": 0, "lastError": None},
            {"address": "10.0.0.6:3001", "connections": 2, "configuredConnections": 2,
             "pending": 1, "unanswering": 0, "lastError": "connection lost: reset"},
        ],
        "zookeeper": {"state": "connected", "sessionId": "0x1000abc", "initialized": True,
                      "connectionServers": 2, "gatewayServers": 1, "websocketServers": 1,
                      "lastError": None},
        "redis": {"mode": "single", "reachable": True, "lastError": None},
        "lastRefresh": {"at": "1970-01-01T00:01:30.000Z", "ok": True, "ageSeconds": 10.0,
                        "error": None, "stale": False, "refreshes": 7, "failures": 0},
    }


def test_the_order_follows_get_root_and_outages_show() -> None:
    fakes = balanced_fakes()
    site = cluster_site(fakes)
    for _ in range(3):  # 10.0.0.6 reaches load 5 and moves behind 10.0.0.5 (tie: by address)
        assert split(connect_request(site, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"))[0] == 200
    _, _, doc = get(site)
    # What the next GET / answers.
    assert fakes.policy.body == b"10.0.0.5:3000,10.0.0.6:3000"
    assert [(s["position"], s["address"], s["load"], s["handedOut"])
            for s in doc["connectionServers"]] == [(1, "10.0.0.5:3000", 5.0, 0),
                                                   (2, "10.0.0.6:3000", 5.0, 3)]
    fakes.zk.state, fakes.zk.session_id = "connecting", None
    fakes.zk.last_error = "cannot connect to 127.0.0.1:2999: Connection refused"
    fakes.cache.healthy, fakes.cache.last_error = False, "redis 127.0.0.1:6379: down"
    fakes.refresher.last_error = "no answer within 1 s"
    fakes.refresher.last_success = None
    _, _, doc = get(site)
    assert doc["zookeeper"]["lastError"] == fakes.zk.last_error
    assert doc["zookeeper"]["sessionId"] is None
    assert doc["redis"] == {"mode": "single", "reachable": False,
                            "lastError": "redis 127.0.0.1:6379: down"}
    assert doc["lastRefresh"] == {"at": None, "ok": False, "ageSeconds": None,
                                  "error": "no answer within 1 s", "stale": False,
                                  "refreshes": 7, "failures": 0}
    assert fakes.cache.io_calls == 0, "in-memory only"


def connect_request(site: AllocSite, raw: bytes) -> bytes:
    exchange = connect(site)
    exchange.feed(raw)
    return exchange.raw


def test_a_policy_without_loads_lists_no_server() -> None:
    status, _, doc = get(cluster_site(Fakes()))
    assert status == 200 and doc["connectionServers"] == [] and doc["serving"] is True


def test_access_is_the_push_rule() -> None:
    fakes = balanced_fakes()
    # Without a token: the allow-list, and browsers from our own origin only.
    site = cluster_site(fakes)
    status, _, doc = get(site, peer="127.0.0.2")
    assert status == 403 and doc == {
        "error": "127.0.0.2 may not query: not in mp.alloc.push-allow and no push token"
                 " configured", "status": 403}
    status, _, doc = get(site, Origin="http://evil.example")
    assert (status, doc["error"]) == (403, "cross-origin query refused (Origin"
                                           " http://evil.example)")
    assert get(site, Origin="http://127.0.0.1:9999")[0] == 200
    # With one: the token alone decides, from anywhere.
    site = cluster_site(fakes, token=TOKEN)
    status, headers, doc = get(site)
    assert status == 401 and headers["www-authenticate"] == 'Bearer realm="mpush-alloc"'
    assert doc["error"] == "a push token is required: Authorization: Bearer <token>"
    assert get(site, Authorization="Bearer wrong")[0] == 401
    assert get(site, peer="10.9.9.9", Authorization=f"Bearer {TOKEN}")[0] == 200
    assert get(site, method=b"HEAD", Authorization=f"Bearer {TOKEN}")[0] == 200


@pytest.mark.parametrize("method", [b"POST", b"PUT", b"DELETE"])
def test_other_methods_and_paths(method: bytes) -> None:
    site = cluster_site(balanced_fakes())
    status, headers, doc = get(site, method=method)
    assert (status, headers["allow"], doc["allow"]) == (405, "GET, HEAD", ["GET", "HEAD"])
    assert get(site, b"/cluster/x")[0] == 404


def test_a_status_missing_a_part_is_refused() -> None:
    fakes = Fakes()
    status = fakes.status()
    status.redis = None
    with pytest.raises(ValueError, match="redis"):
        ClusterResource(status, PushAccess(token=None, allow=LOOPBACK))


def test_timestamps_are_utc_iso_to_the_millisecond() -> None:
    assert timestamp(None) is None
    assert timestamp(1700000000.1234) == "2023-11-14T22:13:20.123Z"


# -- end to end -------------------------------------------------------------------------


async def cluster(stack: Stack, **headers: str) -> tuple[int, Any]:
    status, _, body = await request("GET", stack.url + "/cluster", headers=headers)
    return status, json.loads(body)


async def poll_cluster(stack: Stack, check: Any, timeout: float, what: str) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status, doc = await cluster(stack)
        assert status == 200, doc
        if check(doc):
            return doc
        assert time.monotonic() < deadline, f"timed out waiting for {what}; last: {doc}"
        await sleep(0.05)


def servers(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["address"]: s for s in doc["connectionServers"]}


@pytest.mark.integration
@pytest.mark.timeout(90)
@pytest_twisted.ensureDeferred
async def test_cluster_follows_zookeeper_redis_and_the_allocations(
        tmp_path: Path, zk_server: ZooKeeperServer, zk_namespace: str,
        redis_server: RedisServer) -> None:
    async with running_stack(tmp_path, zk_server.connect_string, zk_namespace,
                             redis_server.port) as stack:
        started = time.time()
        a = await stack.node(host="127.0.0.2")
        b = await stack.node(host="127.0.0.3")
        a.add_users(5)
        b.add_users(1, prefix="v")
        doc = await poll_cluster(
            stack, lambda d: {k: s["online"] for k, s in servers(d).items()}
            == {a.cs_address: 5.0, b.cs_address: 1.0}, 15, "both servers with their counts")

        # The GET / order is the positions' order, the handout counted on the first.
        _, _, body = await request("GET", stack.url + "/")
        status, doc = await cluster(stack)
        assert status == 200
        rows = doc["connectionServers"]
        assert ",".join(r["address"] for r in rows).encode() == body
        assert [r["position"] for r in rows] == [1, 2]
        first = servers(doc)[b.cs_address]
        assert (first["position"], first["handedOut"], first["allocated"]) == (1, 1, 1)
        assert first["load"] == 2.0 and first["weight"] == 1.0
        assert first["publicIp"] == "127.0.0.3" and first["registeredAddress"] == b.cs_address
        assert len(first["zkNodes"]) == 1
        since = datetime.fromisoformat(first["knownSince"]).timestamp()
        assert started - 1 <= since <= time.time()

        # Gateways: one connection each (mp.net.gateway-client-num), all well.
        assert {g["address"]: (g["connections"], g["configuredConnections"], g["lastError"])
                for g in doc["gatewayServers"]} == {a.address: (1, 1, None),
                                                    b.address: (1, 1, None)}
        assert doc["zookeeper"]["state"] == "connected" and doc["zookeeper"]["lastError"] is None
        assert doc["zookeeper"]["connectionServers"] == 2
        assert doc["redis"]["reachable"] is True
        assert doc["lastRefresh"]["ok"] is True and doc["lastRefresh"]["ageSeconds"] < 5

        # A server registering shows within a few seconds (change-delay 100 ms here).
        registered = time.monotonic()
        c = stack.make_node(host="127.0.0.4")
        doc = await poll_cluster(stack, lambda d: c.cs_address in servers(d), 5, "a new server")
        assert time.monotonic() - registered < 5
        assert servers(doc)[c.cs_address]["online"] == 0.0
        assert servers(doc)[c.cs_address]["position"] == 1  # empty: the least loaded

        # The gateway's connection errors show on its row.
        await c.kill()
        await poll_cluster(stack, lambda d: any(
            g["address"] == c.address and g["connections"] == 0 and g["lastError"]
            for g in d["gatewayServers"]), 10, "the killed gateway's error")


@pytest.mark.integration
@pytest.mark.timeout(90)
@pytest_twisted.ensureDeferred
async def test_cluster_access_is_refused_as_push_is(
        tmp_path: Path, zk_server: ZooKeeperServer, zk_namespace: str,
        redis_server: RedisServer) -> None:
    async with running_stack(tmp_path / "open", zk_server.connect_string,
                             zk_namespace + "-open", redis_server.port) as stack:
        # mp.alloc.push-allow is loopback 127.0.0.1 only: 127.0.0.2 is outside.
        for path in ("/cluster", "/push"):
            status, _, body = await request("GET", stack.url + path, bind="127.0.0.2")
            if path == "/push":
                assert status == 405  # GET /push: not a push at all
                continue
            assert status == 403 and "127.0.0.2 may not query" in json.loads(body)["error"]
        assert (await cluster(stack))[0] == 200
    async with running_stack(tmp_path / "token", zk_server.connect_string,
                             zk_namespace + "-token", redis_server.port,
                             alloc_extra=f'push-token = "{TOKEN}"') as stack:
        status, doc = await cluster(stack)
        assert status == 401 and "push token is required" in doc["error"]
        status, doc = await cluster(stack, Authorization=f"Bearer {TOKEN}")
        assert status == 200 and doc["zookeeper"]["state"] in ("connecting", "connected")
