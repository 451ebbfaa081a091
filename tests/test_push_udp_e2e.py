"""``POST /push`` over UDP gateways end to end (``mp.net.gateway-server-net = udp``).

The daemon's service tree from a config file, real ZooKeeper and Redis, fake
nodes answering on real UDP sockets on 127.0.0.1 (tests/harness/fakenode_udp.py).
"""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import ensureDeferred

from mpush.wire import OkMessage
from tests.harness.daemon import BIN, free_port, write_config
from tests.harness.fakenode import UNKNOWN_CODE, FakeNode, location_json
from tests.harness.redis import RedisServer
from tests.harness.stack import Stack, running_stack
from tests.harness.web import request, until
from tests.harness.zookeeper import ZooKeeperServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

UDP = "net {\n    gateway-server-net = udp\n    gateway-client-port = 0\n  }"


@pytest_twisted.async_yield_fixture
async def udp_stack(tmp_path: Path, zk_server: ZooKeeperServer, zk_namespace: str,
                    redis_server: RedisServer) -> AsyncIterator[Stack]:
    async with running_stack(tmp_path, zk_server.connect_string, zk_namespace,
                             redis_server.port, extra=UDP, admin=True) as running:
        yield running


async def node(stack: Stack, **kw: Any) -> FakeNode:
    return await stack.node(udp=True, **kw)


def why(row: dict[str, Any]) -> tuple[str, str | None, int | None]:
    return row["result"], row["reason"], row["code"]


def gateways(stack: Stack) -> Any:
    return stack.daemon.getServiceNamed("gateways")


@pytest_twisted.ensureDeferred
async def test_every_outcome_over_udp(udp_stack: Stack, redis_server: RedisServer) -> None:
    n = await node(udp_stack)
    assert gateways(udp_stack).transport == "udp" and n.connection_count == 0
    n.add_user("alice")
    n.add_user("gone", online=False)
    n.add_user("says-offline", behaviour="offline")
    n.add_user("broken", behaviour="client_failure")
    n.add_user("odd", behaviour="unknown_code")
    n.add_user("mute", behaviour="silent")
    n.add_user("stray")
    # A second client type of "stray" routed to a gateway ZooKeeper does not list.
    redis_server.call("HSET", "mp:ur:stray", "2", location_json(
        "127.0.0.1", 1, device_id="pc", os_name="Windows 10", client_version="1.0.0",
        conn_id="c0ffee00"))
    users = ["alice", "nobody", "gone", "says-offline", "broken", "odd", "mute", "stray"]
    status, answer = await udp_stack.push({"userIds": users, "content": "hi", "timeout": 1000})
    assert status == 200, answer
    rows = {(r["userId"], r["clientType"]): (r["gateway"], *why(r)) for r in answer["results"]}
    assert rows == {
        ("alice", 1): (n.address, "success", None, None),
        ("nobody", None): (None, "offline", "no_route", None),
        ("gone", 1): (None, "offline", "no_connection", None),
        ("says-offline", 1): (n.address, "offline", "not_online", 1),
        ("broken", 1): (n.address, "failure", "gateway_error", 2),
        ("odd", 1): (n.address, "failure", "gateway_error", UNKNOWN_CODE),
        ("mute", 1): (n.address, "timeout", "timed_out", None),
        ("stray", 1): (n.address, "success", None, None),
        ("stray", 2): ("127.0.0.1:1", "failure", "unknown_gateway", None),
    }
    assert n.stats["datagrams"] == 6 and n.stats["connections"] == 0
    assert sorted(r.push.user_id for r in n.received) == sorted(
        ["alice", "says-offline", "broken", "odd", "mute", "stray"])


@pytest_twisted.ensureDeferred
async def test_a_route_change_resends_to_the_new_gateway(udp_stack: Stack) -> None:
    old, new = await node(udp_stack), await node(udp_stack)
    old.add_user("mover")
    status, answer = await udp_stack.push({"userId": "mover", "content": "one"})
    assert answer["results"][0]["gateway"] == old.address
    new.add_user("mover")
    old.set_behaviour("mover", "route_change")
    status, answer = await udp_stack.push({"userId": "mover", "content": "two"})
    assert status == 200
    assert [(r["gateway"], r["result"]) for r in answer["results"]] == [(new.address, "success")]
    assert [r.push.content for r in old.received] == [b"one", b"two"]
    assert [r.push.content for r in new.received] == [b"two"]


@pytest_twisted.ensureDeferred
async def test_a_lost_datagram_ends_as_timeout_and_nothing_else_is_lost(udp_stack: Stack) -> None:
    n = await node(udp_stack, drop_every=2)
    n.add_user("lossy")
    results = []
    for i in range(4):
        status, answer = await udp_stack.push(
            {"userId": "lossy", "content": f"m{i}", "timeout": 1000})
        assert status == 200
        results += [r["result"] for r in answer["results"]]
    assert results == ["success", "timeout", "success", "timeout"]
    assert (n.stats["datagrams"], n.stats["dropped"], n.stats["ok"]) == (4, 2, 2)
    assert gateways(udp_stack).counts.dropped == {}


@pytest_twisted.ensureDeferred
async def test_a_spoofed_answer_from_an_unknown_port_is_ignored_and_counted(
        udp_stack: Stack) -> None:
    n = await node(udp_stack)
    n.add_user("mute", behaviour="silent")
    pool = gateways(udp_stack)
    pushed = ensureDeferred(udp_stack.push({"userId": "mute", "content": "x", "timeout": 1000}))
    await until(lambda: n.received_total == 1, timeout=5, what="the push at the gateway")
    sid = n.received[-1].session_id
    forged = OkMessage(16, 0, None).to_packet(sid).encode()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as spoofer:
        spoofer.bind(("127.0.0.1", 0))
        spoofer.sendto(forged, ("127.0.0.1", pool.bound_port))
        await until(lambda: pool.counts.dropped["unknown_sender"] == 1, timeout=5,
                    what="the spoofed answer counted")
    status, answer = await pushed
    assert status == 200
    assert [why(r) for r in answer["results"]] == [("timeout", "timed_out", None)]


@pytest_twisted.ensureDeferred
async def test_a_late_answer_after_the_timeout_is_dropped_and_counted(udp_stack: Stack) -> None:
    n = await node(udp_stack)
    n.add_user("slow", behaviour="delay:1500")
    status, answer = await udp_stack.push({"userId": "slow", "content": "x", "timeout": 1000})
    assert status == 200
    assert [why(r) for r in answer["results"]] == [("timeout", "timed_out", None)]
    pool = gateways(udp_stack)
    await until(lambda: pool.counts.dropped["unmatched"] == 1, timeout=5,
                what="the late answer counted")
    assert n.stats["ok"] == 1  # it did answer, late


@pytest_twisted.ensureDeferred
async def test_oversize_is_refused_before_sending(udp_stack: Stack) -> None:
    n = await node(udp_stack)
    n.add_user("alice")
    status, answer = await udp_stack.push({"userId": "alice", "content": "x" * 20_000})
    assert status == 413 and answer["field"] == "content", answer
    assert n.stats["datagrams"] == 0 and gateways(udp_stack).counts.sent == 0


@pytest_twisted.ensureDeferred
async def test_broadcast_is_one_datagram_and_one_row_per_gateway(udp_stack: Stack) -> None:
    first, second = await node(udp_stack), await node(udp_stack)
    status, answer = await udp_stack.push({"broadcast": True, "content": "news"})
    assert status == 200, answer
    assert sorted((r["gateway"], r["result"]) for r in answer["results"]) == sorted(
        [(first.address, "success"), (second.address, "success")])
    assert first.stats["broadcasts"] == second.stats["broadcasts"] == 1


@pytest_twisted.ensureDeferred
async def test_health_and_metrics_show_the_transport_and_datagrams(udp_stack: Stack) -> None:
    n = await node(udp_stack)
    n.add_user("alice")
    await udp_stack.push({"userId": "alice", "content": "hi"})
    # 503 until the first refresh lists a connection server: the body is the same.
    status, _, body = await request("GET", udp_stack.url + "/health")
    assert status in (200, 503)
    section = json.loads(body)["gateways"]
    assert section["transport"] == "udp"
    assert section["datagrams"]["sent"] == 1 and section["datagrams"]["received"] == 1
    assert section["servers"][n.address] == {"connected": 1, "configured": 1, "pending": 0}
    _, _, metrics = await request("GET", f"http://127.0.0.1:{udp_stack.admin_port}/metrics")
    text = metrics.decode()
    assert 'mpush_alloc_gateway_transport{transport="udp"} 1.0' in text
    assert "mpush_alloc_gateway_datagrams_sent_total 1.0" in text
    assert 'mpush_alloc_gateway_datagrams_dropped_total{reason="unknown_sender"} 0.0' in text
    _, _, cluster = await request("GET", udp_stack.url + "/cluster")
    [row] = json.loads(cluster)["gatewayServers"]
    assert (row["address"], row["connections"], row["pending"]) == (n.address, 1, 0)


@pytest_twisted.ensureDeferred
async def test_socket_buffers_are_applied(tmp_path: Path, zk_server: ZooKeeperServer,
                                          zk_namespace: str, redis_server: RedisServer) -> None:
    extra = UDP.replace("}", "  snd_buf { gateway-client = 16k }\n"
                             "    rcv_buf { gateway-client = 24k }\n  }")
    async with running_stack(tmp_path, zk_server.connect_string, zk_namespace,
                             redis_server.port, extra=extra) as stack:
        sock = gateways(stack)._port.socket
        # Linux doubles what is set (its bookkeeping); other systems keep it.
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) in (16384, 32768)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) in (24576, 49152)


def test_a_taken_udp_port_fails_the_start_in_one_line_naming_the_key(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as held:
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        config = write_config(tmp_path / "mpush.conf", port=free_port(), zk="127.0.0.1:1",
                              redis_nodes=["127.0.0.1:1"],
                              extra=UDP.replace("= 0", f"= {port}"))
        result = subprocess.run(
            [str(BIN / "twistd"), "-n", "--pidfile", str(tmp_path / "p.pid"), "--logfile",
             str(tmp_path / "t.log"), "mpush-alloc", "--config", str(config)],
            capture_output=True, text=True, timeout=60, cwd=tmp_path, stdin=subprocess.DEVNULL)
    assert result.returncode == 1
    assert result.stderr == (f"mpush-alloc could not start: gateways: mp.net.gateway-client-port:"
                             f" cannot bind UDP 127.0.0.1:{port}: Address already in use\n")
