"""``GET /users/{userId}``: unit tests with the in-memory Redis hashes of tests/fakes.py
through a real Site (StringTransport), and an end-to-end test with the daemon's service
tree, real ZooKeeper, a real Redis that is stopped, and a fake mpush node."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from mpush.services.user_routes import UserRouteReader
from mpush.web.push_access import PushAccess
from mpush.web.root import RootResource
from mpush.web.site import AllocSite
from mpush.web.users import UsersResource
from tests.fakes import SECRET, TOKEN, FakeCache, FakeZk, FixedAllocator, Node, loc
from tests.harness.redis import RedisServer
from tests.harness.stack import running_stack
from tests.harness.web import request, sleep
from tests.harness.zookeeper import ZooKeeperServer
from tests.http_exchange import Exchange, connect, split

GATEWAY = "10.0.0.5:3001"
LIMIT = 64  # max_user_id of these sites


class Setup:
    """A site with /users over FakeCache hashes and a ZooKeeper view of two servers."""

    def __init__(self, *, token: str | None = None) -> None:
        self.clock = Clock()
        self.cache = FakeCache()
        self.cache.password = SECRET  # type: ignore[attr-defined]
        self.zk = FakeZk(cs={
            "cs1": Node("cs1", "10.0.0.5"),  # the process of gateway 10.0.0.5:3001
            "nat": Node("nat", "10.0.0.6", 3000, {"public_ip": "1.2.3.4"}),
        })
        reader = UserRouteReader(self.cache, self.zk, timeout=4.0, reactor=self.clock)
        root = RootResource(FixedAllocator())
        access = PushAccess(token=token, allow=("127.0.0.1/32",))
        root.putChild(b"users", UsersResource(reader, access, max_user_id=LIMIT))
        self.site = AllocSite(root)

    def send(self, path: str, method: str = "GET", peer: str = "127.0.0.1",
             **headers: str) -> Exchange:
        exchange = connect(self.site, IPv4Address("TCP", peer, 40000))
        head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1:9999",
                *(f"{k}: {v}" for k, v in headers.items())]
        exchange.feed(("\r\n".join(head) + "\r\n\r\n").encode())
        return exchange

    def get(self, path: str, method: str = "GET", peer: str = "127.0.0.1",
            **headers: str) -> tuple[int, dict[str, str], Any]:
        status, head, body = split(self.send(path, method, peer, **headers).raw)
        is_json = head.get("content-type") == "application/json" and body
        return status, head, json.loads(body) if is_json else body


def route_row(field: str, client_type: int, online: bool, os_name: str,
              servers: list[str], conn: str | None) -> dict[str, Any]:
    return {"field": field, "clientType": client_type, "online": online, "gateway": GATEWAY,
            "connectionServers": servers, "osName": os_name, "clientVersion": "1.0",
            "deviceId": "d1", "connId": conn, "malformed": None}


def malformed_row(field: str, reason: str, value: str) -> dict[str, Any]:
    return {"field": field, "clientType": None, "online": False, "gateway": None,
            "connectionServers": [], "osName": None, "clientVersion": None, "deviceId": None,
            "connId": None, "malformed": {"reason": reason, "value": value}}


# -- unit -------------------------------------------------------------------------------


def test_routes_per_client_type_online_offline_and_malformed() -> None:
    s = Setup()
    s.cache.hashes["mp:ur:u1"] = {
        "1": loc(GATEWAY, "android", "c1"),
        "2": loc(GATEWAY, "Windows 10", None),  # offline on PC: no connId
        "3": "{not json",
        "4": json.dumps({"host": "10.0.0.5", "port": 0, "osName": "web", "connId": "x"}),
        "5": "[" * 100_000,  # nested past the parser's depth: still just malformed
    }
    status, headers, doc = s.get("/users/u1")
    assert status == 200 and headers["cache-control"] == "no-store"
    assert s.cache.calls == ["mp:ur:u1"]
    assert doc == {"userId": "u1", "online": True, "routes": [
        route_row("1", 1, True, "android", ["10.0.0.5:3000"], "c1"),
        route_row("2", 2, False, "Windows 10", ["10.0.0.5:3000"], None),
        malformed_row("3", "not JSON", "{not json"),
        malformed_row("4", "bad gateway address host='10.0.0.5' port=0",
                      '{"host": "10.0.0.5", "port": 0, "osName": "web", "connId": "x"}'),
        malformed_row("5", "not JSON", "[" * 200 + "..."),
    ]}


def test_the_gateway_host_finds_the_server_by_its_registered_or_public_address() -> None:
    s = Setup()
    s.cache.hashes["mp:ur:u"] = {"1": loc("10.0.0.6:3001"), "2": loc("1.2.3.4:3001", "mac")}
    _, _, doc = s.get("/users/u")
    assert [(r["gateway"], r["connectionServers"]) for r in doc["routes"]] == [
        ("10.0.0.6:3001", ["1.2.3.4:3000"]), ("1.2.3.4:3001", ["1.2.3.4:3000"])]
    s.cache.hashes["mp:ur:u"] = {"1": loc("10.9.9.9:3001")}  # no server known on that host
    assert s.get("/users/u")[2]["routes"][0]["connectionServers"] == []


def test_a_user_without_routes_is_404() -> None:
    s = Setup()
    status, _, doc = s.get("/users/nobody")
    assert status == 404 and doc["status"] == 404
    assert "'nobody' has no route" in doc["error"]
    s.cache.hashes["mp:ur:off"] = {"1": loc(conn=None)}
    status, _, doc = s.get("/users/off")
    assert (status, doc["online"]) == (200, False)


def test_the_user_id_is_url_decoded_and_checked() -> None:
    s = Setup()
    s.cache.hashes["mp:ur:a/b c"] = {"1": loc()}
    s.cache.hashes["mp:ur:用户"] = {"1": loc()}
    assert s.get("/users/a%2Fb%20c")[2]["userId"] == "a/b c"
    assert s.get("/users/%E7%94%A8%E6%88%B7")[2]["userId"] == "用户"
    for path, message in [
        ("/users/%20%20", "userId is empty"),
        ("/users/", "userId is empty"),
        ("/users/%FFx", "userId is not valid UTF-8 once URL-decoded (byte 0)"),
        ("/users/" + "x" * (LIMIT + 1), f"userId is {LIMIT + 1} bytes long, over the limit"),
    ]:
        status, _, doc = s.get(path)
        assert (status, doc["field"]) == (400, "userId"), path
        assert doc["error"].startswith(message), (path, doc)
    assert s.get("/users/" + "x" * LIMIT)[0] == 404  # at the limit: looked up
    assert s.cache.calls == ["mp:ur:a/b c", "mp:ur:用户", "mp:ur:" + "x" * LIMIT]


def test_redis_down_is_503_with_the_reason_never_the_password() -> None:
    s = Setup()
    s.cache.error = ConnectionError(f"redis 127.0.0.1:6379: AUTH {SECRET}: connection refused")
    status, _, doc = s.get("/users/u1")
    assert status == 503
    assert doc["error"] == ("cannot read the routes from Redis: redis 127.0.0.1:6379:"
                            " AUTH ***: connection refused")


def test_no_answer_from_redis_is_503_after_the_timeout() -> None:
    s = Setup()
    s.cache.manual = True
    exchange = s.send("/users/u1")
    assert exchange.raw == b""  # waiting for Redis
    s.clock.advance(3.9)
    assert exchange.raw == b""
    s.clock.advance(0.1)
    status, _, body = split(exchange.raw)
    assert status == 503
    assert json.loads(body)["error"] == ("cannot read the routes from Redis: no answer from"
                                         " Redis within 4 s")


def test_a_bug_while_reading_is_still_an_answer() -> None:
    s = Setup()
    s.cache.hashes["mp:ur:u1"] = None  # type: ignore[assignment]  # dict(None): TypeError
    status, _, doc = s.get("/users/u1")
    assert status == 503 and doc["error"].startswith("cannot read the routes from Redis: ")


def test_a_client_gone_before_the_answer_gets_nothing_written() -> None:
    s = Setup()
    s.cache.manual = True
    s.cache.hashes["mp:ur:u1"] = {"1": loc()}
    exchange = s.send("/users/u1")
    exchange.channel.connectionLost(Failure(ConnectionDone()))
    s.cache.release()  # no error: the answer is dropped
    assert exchange.raw == b""


def test_paths_methods_and_head() -> None:
    s = Setup()
    s.cache.hashes["mp:ur:u1"] = {"1": loc()}
    for path in ("/users", "/users/a/b", "/users/u1/"):
        assert s.get(path)[0] == 404, path
    status, headers, _ = s.get("/users/u1", "POST")
    assert (status, headers["allow"]) == (405, "GET, HEAD")
    status, headers, body = s.get("/users/u1", "HEAD")
    assert (status, body) == (200, b"") and int(headers["content-length"]) > 100


def test_access_is_the_push_rule() -> None:
    s = Setup()
    status, _, doc = s.get("/users/u1", peer="127.0.0.2")
    assert status == 403 and doc["error"].startswith("127.0.0.2 may not query")
    assert s.cache.calls == []
    s = Setup(token=TOKEN)
    assert s.get("/users/u1")[0] == 401
    assert s.get("/users/u1", Authorization=f"Bearer {TOKEN}", peer="10.1.1.1")[0] == 404


# -- end to end -------------------------------------------------------------------------


async def user(url: str, user_id: str) -> tuple[int, Any]:
    status, _, body = await request("GET", f"{url}/users/{user_id}")
    return status, json.loads(body)


@pytest.mark.integration
@pytest.mark.timeout(90)
@pytest_twisted.ensureDeferred
async def test_routes_from_real_redis_then_503_while_it_is_down(
        tmp_path: Path, zk_server: ZooKeeperServer, zk_namespace: str,
        fresh_redis_server: RedisServer) -> None:
    redis = fresh_redis_server
    async with running_stack(tmp_path, zk_server.connect_string, zk_namespace,
                             redis.port) as stack:
        node = await stack.node(host="127.0.0.2")
        node.add_user("alice")
        node.add_user("alice", os_name="windows", online=False)
        redis.call("HSET", "mp:ur:alice", "3", '{"host": 5')
        status, doc = await user(stack.url, "alice")
        assert status == 200 and doc["userId"] == "alice" and doc["online"] is True
        mobile, pc, bad = doc["routes"]
        assert (mobile["field"], mobile["clientType"], mobile["online"]) == ("1", 1, True)
        assert mobile["gateway"] == node.address
        assert mobile["connectionServers"] == [node.cs_address]
        assert (mobile["osName"], mobile["clientVersion"]) == ("android", "1.0.0")
        assert mobile["connId"] and mobile["malformed"] is None
        assert (pc["field"], pc["clientType"], pc["online"], pc["osName"]) == (
            "2", 2, False, "windows")
        assert pc["connId"] is None and pc["gateway"] == node.address
        assert bad == malformed_row("3", "not JSON", '{"host": 5')

        status, doc = await user(stack.url, "nobody")
        assert status == 404

        redis.stop()
        try:
            started = time.monotonic()
            status, doc = await user(stack.url, "alice")
            assert status == 503 and doc["status"] == 503
            assert doc["error"].startswith("cannot read the routes from Redis: ")
            assert time.monotonic() - started < 5.0  # the connect + reply timeouts at most
            # /cluster, in memory, still answers.
            status, _, _ = await request("GET", stack.url + "/cluster")
            assert status == 200
        finally:
            redis.start()
        deadline = time.monotonic() + 15
        while (answer := await user(stack.url, "alice"))[0] != 200:
            assert time.monotonic() < deadline, f"still {answer} with Redis back"
            await sleep(0.1)
        assert len(answer[1]["routes"]) == 3
