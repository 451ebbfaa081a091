"""``POST /push`` end to end: the daemon's service tree (built by makeService
from a config file), real ZooKeeper and Redis, and fake mpush nodes speaking
the real gateway protocol over real TCP."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import ensureDeferred

from mpush.wire import CMD_GATEWAY_PUSH, FLAG_AUTO_ACK
from tests.harness.fakenode import UNKNOWN_CODE, location_json
from tests.harness.redis import RedisServer
from tests.harness.stack import Stack, running_stack
from tests.harness.web import request, until
from tests.harness.zookeeper import ZooKeeperServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def summary(answer: dict[str, Any]) -> dict[str, int]:
    return answer["summary"]


def only(answer: dict[str, Any]) -> dict[str, Any]:
    assert len(answer["results"]) == 1, answer
    return answer["results"][0]


def why(row: dict[str, Any]) -> tuple[str, str | None, int | None]:
    """A row's result, reason and code."""
    return row["result"], row["reason"], row["code"]


@pytest_twisted.ensureDeferred
async def test_success_reaches_the_gateway_with_java_bytes(stack: Stack) -> None:
    node = await stack.node()
    node.add_user("alice")
    status, answer = await stack.push({"userId": "alice", "content": "hi", "ackModel": "auto"})
    assert status == 200, answer
    result = only(answer)
    assert result["userId"] == "alice" and result["clientType"] == 1
    assert result["result"] == "success" and result["gateway"] == node.address
    assert result["ms"] >= 0
    assert why(result) == ("success", None, None)
    assert summary(answer) == {"success": 1, "failure": 0, "offline": 0, "timeout": 0}
    got = node.received[-1]
    assert got.push.user_id == "alice" and got.push.client_type == 1
    assert got.push.content == b"hi"
    assert got.push.timeout == 2500  # the default 3000 ms less the server's 500
    assert got.flags == FLAG_AUTO_ACK
    assert got.raw[4] == CMD_GATEWAY_PUSH


@pytest_twisted.ensureDeferred
async def test_offline_three_ways(stack: Stack) -> None:
    node = await stack.node()
    node.add_user("gone", online=False)           # route without connId
    node.add_user("says-offline", behaviour="offline")
    status, answer = await stack.push(
        {"userIds": ["nobody", "gone", "says-offline"], "content": "hi"})
    assert status == 200
    by_user = {r["userId"]: r for r in answer["results"]}
    assert by_user["nobody"]["result"] == "offline" and by_user["nobody"]["gateway"] is None
    assert by_user["gone"]["result"] == "offline" and by_user["gone"]["gateway"] is None
    assert by_user["says-offline"]["result"] == "offline"
    assert by_user["says-offline"]["gateway"] == node.address
    assert why(by_user["nobody"]) == ("offline", "no_route", None)
    assert why(by_user["gone"]) == ("offline", "no_connection", None)
    assert why(by_user["says-offline"]) == ("offline", "not_online", 1)
    assert summary(answer)["offline"] == 3
    # Only the user the gateway itself called offline was sent to it.
    assert [r.push.user_id for r in node.received] == ["says-offline"]


@pytest_twisted.ensureDeferred
async def test_failure_and_timeout(stack: Stack) -> None:
    node = await stack.node()
    node.add_user("broken", behaviour="client_failure")
    node.add_user("mute", behaviour="silent")
    node.add_user("odd", behaviour="unknown_code")
    started = time.monotonic()
    status, answer = await stack.push(
        {"userIds": ["broken", "mute", "odd"], "content": "hi", "timeout": 1000})
    took = time.monotonic() - started
    assert status == 200
    by_user = {r["userId"]: why(r) for r in answer["results"]}
    assert by_user == {"broken": ("failure", "gateway_error", 2),
                       "mute": ("timeout", "timed_out", None),
                       "odd": ("failure", "gateway_error", UNKNOWN_CODE)}
    assert 0.9 < took < 3.0
    assert summary(answer) == {"success": 0, "failure": 2, "offline": 0, "timeout": 1}


@pytest_twisted.ensureDeferred
async def test_route_change_resends_to_the_new_gateway(stack: Stack) -> None:
    old = await stack.node()
    new = await stack.node()
    old.add_user("mover")
    status, answer = await stack.push({"userId": "mover", "content": "one"})
    assert only(answer)["gateway"] == old.address  # the route is now cached
    new.add_user("mover")                          # the user moved: Redis says new
    old.set_behaviour("mover", "route_change")     # the old gateway says so
    status, answer = await stack.push({"userId": "mover", "content": "two"})
    assert status == 200
    result = only(answer)
    assert result["result"] == "success" and result["gateway"] == new.address
    assert [r.push.content for r in old.received] == [b"one", b"two"]
    assert [r.push.content for r in new.received] == [b"two"]


@pytest_twisted.ensureDeferred
async def test_user_with_two_client_types(stack: Stack) -> None:
    node = await stack.node()
    node.add_user("multi", os_name="android")
    node.add_user("multi", os_name="Windows 10")
    status, answer = await stack.push({"userId": "multi", "content": "hi"})
    assert status == 200
    assert sorted((r["clientType"], r["result"]) for r in answer["results"]) == [
        (1, "success"), (2, "success")]
    assert sorted(r.push.client_type for r in node.received) == [1, 2]


@pytest_twisted.ensureDeferred
async def test_broadcast_reaches_every_gateway_with_tags_and_condition(stack: Stack) -> None:
    first = await stack.node()
    second = await stack.node()
    condition = "tags.indexOf('a')>=0"
    status, answer = await stack.push({"broadcast": True, "content": "to all",
                                       "tags": ["a", "b"], "condition": condition})
    assert status == 200, answer
    assert sorted(r["gateway"] for r in answer["results"]) == sorted(
        [first.address, second.address])
    assert all(r["userId"] is None and r["result"] == "success" for r in answer["results"])
    for node in (first, second):
        got = node.received[-1]
        assert got.push.user_id is None and got.push.client_type == 0
        assert got.push.tags == '["a","b"]' and got.push.condition == condition
        # On the wire: the tags JSON and the condition as UTF-8 strings.
        assert b'\x00\t["a","b"]' in got.raw and condition.encode() in got.raw


@pytest_twisted.ensureDeferred
async def test_the_java_pages_own_request(stack: Stack) -> None:
    node = await stack.node()
    node.add_user("javauser")
    # As the Java alloc's page sends it: misspelt header, so text/plain.
    body = json.dumps({"userId": "javauser", "hello": "hi there", "broadcast": False,
                       "condition": ""}).encode()
    status, _, data = await request("POST", stack.url + "/push", body,
                                    {"context-type": "application/json",
                                     "Content-Type": "text/plain;charset=UTF-8"})
    assert status == 200, data
    assert only(json.loads(data))["result"] == "success"
    content = json.loads(node.received[-1].push.content)
    assert content["msgType"] == 3 and content["msgId"].startswith("msg_")
    notification = json.loads(content["content"])
    assert notification["content"] == "MPush开源推送，hi there"
    assert notification["title"] == "MPUSH推送"


@pytest_twisted.ensureDeferred
async def test_gateway_killed_fails_pending_at_once_and_recovers(stack: Stack) -> None:
    node = await stack.node()
    node.add_user("waiting", behaviour="silent")
    pending = ensureDeferred(stack.push({"userId": "waiting", "content": "hi",
                                         "timeout": 10000}))
    await until(lambda: node.received_total == 1, what="the push to reach the gateway")
    started = time.monotonic()
    await node.kill()
    status, answer = await pending
    took = time.monotonic() - started
    assert status == 200
    assert why(only(answer)) == ("failure", "connection_lost", None)
    assert took < 2.0, "pending pushes must fail at once, not at their 10 s timeout"
    # While it is down (still listed in ZooKeeper): nothing to send it on.
    pool = stack.daemon.getServiceNamed("gateways")
    await until(lambda: not pool.is_connected(node.address), what="the pool to see it down")
    status, answer = await stack.push({"userId": "waiting", "content": "meanwhile"})
    assert why(only(answer)) == ("failure", "gateway_unreachable", None)
    assert only(answer)["gateway"] == node.address
    # The gateway comes back on the same port: pushes work again, no restart.
    node.listen()
    node.set_behaviour("waiting", "deliver")
    await until(lambda: pool.is_connected(node.address), timeout=15, what="reconnect")
    status, answer = await stack.push({"userId": "waiting", "content": "again"})
    assert only(answer)["result"] == "success"


@pytest_twisted.ensureDeferred
async def test_garbage_from_a_gateway_closes_only_that_connection(stack: Stack) -> None:
    bad = await stack.node()
    good = await stack.node()
    bad.add_user("garbled", behaviour="garbage")
    good.add_user("fine")
    status, answer = await stack.push({"userIds": ["garbled", "fine"], "content": "x"})
    assert status == 200
    by_user = {r["userId"]: why(r) for r in answer["results"]}
    assert by_user == {"garbled": ("failure", "connection_lost", None),
                       "fine": ("success", None, None)}
    # The daemon keeps serving, and the bad gateway is reconnected.
    pool = stack.daemon.getServiceNamed("gateways")
    await until(lambda: pool.is_connected(bad.address), timeout=15, what="reconnect")
    bad.set_behaviour("garbled", "deliver")
    status, answer = await stack.push({"userId": "garbled", "content": "x"})
    assert only(answer)["result"] == "success"


@pytest_twisted.ensureDeferred
async def test_bad_input_gets_clear_answers_and_the_daemon_keeps_serving(stack: Stack) -> None:
    node = await stack.node()
    node.add_user("u1")
    status, _, data = await request("POST", stack.url + "/push", b"{not json",
                                    {"Content-Type": "application/json"})
    assert status == 400 and json.loads(data)["field"] == "body"
    status, answer = await stack.push({"userId": 5, "content": "x"})
    assert status == 400 and answer["field"] == "userId"
    status, answer = await stack.push({"userId": "   ", "content": "x"})
    assert status == 400 and answer["field"] == "userId"
    status, answer = await stack.push({"userId": "u1", "content": "x" * 20000})
    assert status == 413 and answer["field"] == "content"
    status, _, data = await request("POST", stack.url + "/push", b"x" * 100000,
                                    {"Content-Type": "application/json"})
    assert status == 413
    status, answer = await stack.push({"userId": "u1", "content": "still here"})
    assert status == 200 and only(answer)["result"] == "success"
    status, _, body = await request("GET", stack.url + "/index.html")
    assert status == 200 and b"<form" in body


@pytest_twisted.ensureDeferred
async def test_numbers_no_push_can_carry_are_400_naming_their_field(stack: Stack) -> None:
    node = await stack.node()
    node.add_user("u1")
    digits = b'{"userId": "u1", "content": {"n": ' + b"9" * 5000 + b"}}"
    for body, field in ((digits, "content"),
                        (b'{"userId": "u1", "content": {"a": 1e999}}', "content"),
                        (b'{"userId": "u1", "hello": "x", "timeout": -Infinity}', "timeout")):
        status, headers, data = await request("POST", stack.url + "/push", body,
                                              {"Content-Type": "application/json"})
        assert status == 400, data
        assert headers.getRawHeaders("content-type") == ["application/json"]
        assert json.loads(data)["field"] == field
    assert not node.received  # nothing reached the gateway, Infinity least of all
    status, answer = await stack.push({"userId": "u1", "content": "still here"})
    assert status == 200 and only(answer)["result"] == "success"


@pytest_twisted.ensureDeferred
async def test_an_unusable_route_value_is_offline_no_route(
        stack: Stack, redis_server: RedisServer) -> None:
    # Nested past the JSON parser's depth, nested just short of it, and a
    # port of 5,000 digits: entries no push can use, so the user has no route.
    located = '{"osName":"android","connId":"c1","host":"127.0.0.1","port":%s}'
    values = ("[" * 100_000, located % ("[" * 990 + "]" * 990), located % ("9" * 5000))
    for user, value in enumerate(values):
        redis_server.call("HSET", f"mp:ur:odd{user}", "1", value)
        status, answer = await stack.push({"userId": f"odd{user}", "content": "hi"})
        assert status == 200
        assert why(only(answer)) == ("offline", "no_route", None)


@pytest_twisted.ensureDeferred
async def test_a_route_to_a_gateway_zookeeper_does_not_list_is_unknown_gateway(
        stack: Stack, redis_server: RedisServer) -> None:
    node = await stack.node()
    node.add_user("stray")
    # A second client type routed to a gateway that never registered (port 1).
    redis_server.call("HSET", "mp:ur:stray", "2", location_json(
        "127.0.0.1", 1, device_id="pc", os_name="Windows 10", client_version="1.0.0",
        conn_id="c0ffee00"))
    status, answer = await stack.push({"userId": "stray", "content": "hi"})
    assert status == 200
    rows = {r["clientType"]: (r["gateway"], *why(r)) for r in answer["results"]}
    assert rows == {1: (node.address, "success", None, None),
                    2: ("127.0.0.1:1", "failure", "unknown_gateway", None)}


@pytest_twisted.ensureDeferred
async def test_redis_down_is_redis_unavailable(
        tmp_path: Path, zk_server: ZooKeeperServer, zk_namespace: str,
        fresh_redis_server: RedisServer) -> None:
    async with running_stack(tmp_path, zk_server.connect_string, zk_namespace,
                             fresh_redis_server.port) as stack:
        node = await stack.node()
        node.add_user("cached")
        node.add_user("unread")
        status, answer = await stack.push({"userId": "cached", "content": "warm-up"})
        assert status == 200 and why(only(answer)) == ("success", None, None)
        fresh_redis_server.stop()
        status, answer = await stack.push({"userIds": ["unread", "cached"], "content": "hi"})
        assert status == 200
        by_user = {r["userId"]: (r["clientType"], r["gateway"], *why(r))
                   for r in answer["results"]}
        # The cached route still serves; the other cannot be looked up.
        assert by_user == {"unread": (None, None, "failure", "redis_unavailable", None),
                           "cached": (1, node.address, "success", None, None)}


@pytest_twisted.ensureDeferred
async def test_a_push_still_waiting_when_the_daemon_stops_is_shutdown(
        tmp_path: Path, zk_server: ZooKeeperServer, zk_namespace: str,
        redis_server: RedisServer) -> None:
    async with running_stack(tmp_path, zk_server.connect_string, zk_namespace,
                             redis_server.port, alloc_extra="shutdown-grace = 300ms") as stack:
        node = await stack.node()
        node.add_user("mute", behaviour="silent")
        node.add_user("quick")
        pending = ensureDeferred(stack.push({"userIds": ["mute", "quick"], "content": "hi",
                                             "timeout": 10000}))
        await until(lambda: node.received_total == 2, what="both pushes at the gateway")
        started = time.monotonic()
        await stack.daemon.drain.run()  # what SIGTERM does first
        status, answer = await pending
        assert status == 200
        assert time.monotonic() - started < 5.0, "ended by the grace, not the 10 s timeout"
        by_user = {r["userId"]: why(r) for r in answer["results"]}
        assert by_user == {"mute": ("timeout", "shutdown", None),
                           "quick": ("success", None, None)}
